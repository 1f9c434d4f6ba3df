/**
 * The installed-package form: `npm run build:lib` (run by prepack) gives JavaScript an installed package can run
 * (Node strips no types under node_modules) and declarations with `.js` specifiers.
 */
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../..");
const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as {
  exports: Record<string, { types: string; default: string } | string>;
  files: string[];
};

describe("build:lib", () => {
  beforeAll(() => {
    execFileSync(process.execPath, [join(root, "scripts/build-lib.ts")], { cwd: root, stdio: "pipe" });
  }, 120_000);

  it("every export of package.json exists, as JavaScript and as declarations", async () => {
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target === "string") continue;
      const mod = (await import(pathToFileURL(join(root, target.default)).href)) as Record<string, unknown>;
      expect(Object.keys(mod).length, subpath).toBeGreaterThan(0);
      const types = await readFile(join(root, target.types), "utf8");
      expect(types, subpath).not.toMatch(/from\s+["']\.{1,2}\/[^"']*\.ts["']/);
    }
  });

  it("the built test kit runs a plugin defined with the built definePlugin", async () => {
    const lib = (await import(
      pathToFileURL(join(root, "dist/lib/index.js")).href
    )) as typeof import("../../src/index.ts");
    const kit = (await import(
      pathToFileURL(join(root, "dist/lib/testkit.js")).href
    )) as typeof import("../../src/plugins/testkit.ts");
    const plugin = lib.definePlugin({
      name: "steps",
      parseLine: (line) => {
        const m = /^step (\d+) loss=([\d.]+)$/.exec(line);
        return m ? [{ kind: "epoch", epoch: Number(m[1]), metrics: { loss: Number(m[2]) } }] : undefined;
      },
    });
    const reports = await kit.runPluginOnOutput(plugin, "step 1 loss=0.5\nnoise\nstep 2 loss=0.25\n");
    expect(reports).toEqual([
      { kind: "epoch", epoch: 1, metrics: { loss: 0.5 } },
      { kind: "epoch", epoch: 2, metrics: { loss: 0.25 } },
    ]);
  });

  it("the built CLI finds the package's own files (the Python helper) from dist/lib", () => {
    const out = execFileSync(process.execPath, [join(root, "dist/lib/cli/trainer-agent.js"), "helper", "--print"], {
      encoding: "utf8",
    });
    expect(out).toContain("def report(");
  });

  it("the published files include what the built code reads at run time", () => {
    for (const needed of ["dist/lib/", "python/", "backend-stub/public/", "examples/", "bin/"])
      expect(pkg.files).toContain(needed);
  });
});
