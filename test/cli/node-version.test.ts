/**
 * An unsupported Node.js gets one line naming what is needed, not a stack trace about ".ts" files. Run with the
 * system's Node.js when it is older than 22 (Debian's 20 here); the version logic itself is checked directly.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../..");
const systemNode = "/usr/bin/node";
const systemMajor = Number(
  spawnSync(systemNode, ["-p", "process.versions.node.split('.')[0]"], { encoding: "utf8" }).stdout?.trim() || NaN,
);

describe.each(["trainer-agent", "trainjob"])("%s on an old Node.js", (program) => {
  it.skipIf(!(systemMajor < 22))(`${systemNode} (Node.js ${systemMajor}): one line, exit 78`, () => {
    const r = spawnSync(systemNode, [join(root, "bin", `${program}.js`), "--help"], { encoding: "utf8" });
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      new RegExp(`^${program}: NODE_UNSUPPORTED: Node.js 22\\.18 or newer is needed, this is v${systemMajor}\\.\\S+; `),
    );
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.status).toBe(78);
  });
});

describe("requireNode", () => {
  // A child per case: requireNode exits the process it runs in.
  const check = (version: string, installed: boolean) =>
    spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `Object.defineProperty(process.versions, "node", { value: ${JSON.stringify(version)} });
         const { requireNode } = await import(${JSON.stringify(join(root, "bin/node-version.js"))});
         requireNode("trainjob", ${installed});
         process.stdout.write("ok");`,
      ],
      { encoding: "utf8" },
    );

  it.each([
    ["24.1.0", false, 0],
    ["22.18.0", false, 0],
    ["22.17.1", false, 78],
    ["22.0.0", true, 0],
    ["21.7.3", true, 78],
    ["18.20.0", false, 78],
  ])("Node.js %s, installed package %s: exit %i", (version, installed, status) => {
    const r = check(version, installed);
    expect(r.status, r.stderr).toBe(status);
    if (status === 0) expect(r.stdout).toBe("ok");
    else expect(r.stderr).toContain(`is needed, this is`);
  });
});
