import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAgentConfig, type Env } from "../../src/config/index.ts";
import { fixedProbe } from "../../src/env/probe.ts";
import { isAgentError, type ErrorCode } from "../../src/errors/index.ts";
import { resolvePlugin } from "../../src/plugins/index.ts";
import type { PluginContext } from "../../src/plugins/types.ts";

const defineUrl = pathToFileURL(join(import.meta.dirname, "../../src/plugins/define.ts")).href;
const probe = fixedProbe({ gpus: 0, cpus: 2 }, { torchrun: "/usr/bin/torchrun" });
const ctx = (env: Env = {}): PluginContext => {
  const config = loadAgentConfig(env);
  return { config, env: {}, nodeRank: config.distributed.nodeRank };
};

let dir: string;
const files: Record<string, string> = {
  "keras.ts": `import { definePlugin } from ${JSON.stringify(defineUrl)};
export default definePlugin({
  name: "keras",
  version: "1.0.0",
  env: (ctx) => ({ KERAS_BACKEND: "tensorflow", SEEN_RANK: ctx.env.RANK ?? "none" }),
  parseLine(line) {
    const m = /^Epoch (\\d+)\\/(\\d+)/.exec(line);
    return m ? [{ kind: "epoch", epoch: Number(m[1]), totalEpochs: Number(m[2]), metrics: {} }] : undefined;
  },
});`,
  "factory.mjs": `export default async ({ framework }) => ({ name: "made", env: () => ({ MADE_FOR: String(framework) }) });`,
  "wrapper.mjs": `export default { name: "wrapper", command: (argv) => ({ argv: ["/usr/bin/env", ...argv] }) };`,
  "bad-name.mjs": `export default { name: "Bad Name" };`,
  "bad-hook.mjs": `export default { name: "badhook", env: "not a function" };`,
  "old-checkpoints.mjs": `export default { name: "oldckpt", checkpoints: () => ["/tmp/out"] };`,
  "no-default.mjs": `export const x = 1;`,
  "syntax.mjs": `export default {`,
  "throws-factory.mjs": `export default () => { throw new Error("factory boom"); };`,
  "throws-env.mjs": `export default { name: "throwsenv", env: () => { throw new Error("env boom"); } };`,
  "bad-env.mjs": `export default { name: "badenv", env: () => ({ "NOT-A-NAME": "x" }) };`,
  "bad-env-value.mjs": `export default { name: "badval", env: () => ({ PORT: 8080 }) };`,
  "bad-command.mjs": `export default { name: "badcmd", command: () => ({ argv: [] }) };`,
  "bad-parse.mjs": `export default { name: "badparse", parseLine: () => "epoch 1" };`,
  "throws-parse.mjs": `export default { name: "throwsparse", parseLine: () => { throw new TypeError("parse boom"); } };`,
  "node_modules/trainer-plugin-esm/package.json": JSON.stringify({
    name: "trainer-plugin-esm",
    type: "module",
    exports: { ".": { import: "./main.js" } },
  }),
  "node_modules/trainer-plugin-esm/main.js": `export default { name: "esm-pkg", env: () => ({ FROM: "esm-pkg" }) };`,
  "node_modules/trainer-plugin-cjs/package.json": JSON.stringify({ name: "trainer-plugin-cjs", main: "index.cjs" }),
  "node_modules/trainer-plugin-cjs/index.cjs": `module.exports = { name: "cjs-pkg", env: () => ({ FROM: "cjs-pkg" }) };`,
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "resolve-plugin-"));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), text);
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<{ code: ErrorCode; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (isAgentError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error("expected a failure");
}

describe("resolvePlugin: built-ins", () => {
  it.each(["pytorch", "tensorflow", "python"])("%s by name", async (name) => {
    expect((await resolvePlugin({ framework: name, cwd: dir, probe })).name).toBe(name);
  });

  it("matches built-in names case-insensitively", async () => {
    expect((await resolvePlugin({ framework: "PyTorch", cwd: dir, probe })).name).toBe("pytorch");
  });

  it("resolves the bundled example plugins by bare name, as --plugin or as --framework", async () => {
    const asPlugin = await resolvePlugin({ framework: "pytorch", plugin: "ultralytics", cwd: dir, probe });
    expect(asPlugin.name).toBe("ultralytics");
    expect(asPlugin.parseLine).toBeTypeOf("function");
    const asFramework = await resolvePlugin({ framework: "keras", cwd: dir, probe });
    expect(asFramework.name).toBe("keras");
    const reports = asFramework.parseLine?.("Epoch 3/10", { stream: "stdout" });
    expect(reports ?? []).toEqual([]); // the epoch header alone is not a report: the metrics line completes it
    const env = await asFramework.env?.(ctx({ PET_NNODES: "2", PET_NODE_RANK: "1" }));
    expect(env).toMatchObject({ RANK: "1", WORLD_SIZE: "2" }); // falls back to the python built-in
  });

  it("defaults to python", async () => {
    const p = await resolvePlugin({ cwd: dir, probe });
    expect(p.name).toBe("python");
    expect(await p.env!(ctx({ PET_NNODES: "2", PET_NODE_RANK: "1" }))).toMatchObject({ RANK: "1", WORLD_SIZE: "2" });
  });

  it("an unknown framework without --plugin is PLUGIN_NOT_FOUND listing the built-ins", async () => {
    expect(await failure(resolvePlugin({ framework: "jax", cwd: dir }))).toEqual({
      code: "PLUGIN_NOT_FOUND",
      message: expect.stringContaining('framework "jax" is not a built-in (pytorch, tensorflow, python)'),
    });
  });

  it("keeps ENV_INVALID from a built-in hook as it is", async () => {
    const p = await resolvePlugin({ framework: "pytorch", cwd: dir, probe });
    expect((await failure(Promise.resolve().then(() => p.env!(ctx({ PET_NPROC_PER_NODE: "gpu" }))))).code).toBe(
      "ENV_INVALID",
    );
  });
});

describe("resolvePlugin: external plugins", () => {
  it("loads a TypeScript file relative to cwd; its env runs after the built-in's and sees it", async () => {
    const p = await resolvePlugin({ framework: "keras", plugin: "./keras.ts", cwd: dir, probe });
    expect(p.name).toBe("keras");
    expect(p.version).toBe("1.0.0");
    const env = await p.env!(ctx({ PET_NNODES: "2", PET_NODE_RANK: "1" }));
    // python fallback (framework names the plugin) + the plugin's own variables on top
    expect(env).toMatchObject({ RANK: "1", WORLD_SIZE: "2", KERAS_BACKEND: "tensorflow", SEEN_RANK: "1" });
    expect(p.parseLine!("Epoch 3/10", { stream: "stdout" })).toEqual([
      { kind: "epoch", epoch: 3, totalEpochs: 10, metrics: {} },
    ]);
    expect(p.parseLine!("loss: 0.2", { stream: "stdout" })).toBeUndefined();
  });

  it("falls back to the built-in named by --framework for missing hooks", async () => {
    const p = await resolvePlugin({ framework: "pytorch", plugin: join(dir, "keras.ts"), cwd: "/", probe });
    const c = ctx({ PET_NPROC_PER_NODE: "2" });
    expect(await p.env!(c)).toMatchObject({ PET_NPROC_PER_NODE: "2", KERAS_BACKEND: "tensorflow" });
    expect((await p.command!(["python3", "train.py"], c)).argv.slice(0, 2)).toEqual(["torchrun", "--nnodes=1"]);
  });

  it("tensorflow fallback gives TF_CONFIG under the plugin's own variables", async () => {
    const p = await resolvePlugin({ framework: "tensorflow", plugin: "./keras.ts", cwd: dir, probe });
    const env = await p.env!(ctx({ PET_NNODES: "2", PET_MASTER_ADDR: "k-node-0-0.k" }));
    expect(JSON.parse(env.TF_CONFIG!).cluster.worker).toEqual(["k-node-0-0.k:2222", "k-node-0-1.k:2222"]);
    expect(env.SEEN_RANK).toBe("none");
  });

  it("an external command hook replaces the built-in's", async () => {
    const p = await resolvePlugin({ framework: "pytorch", plugin: "./wrapper.mjs", cwd: dir, probe });
    expect((await p.command!(["python", "t.py"], ctx({ PET_NPROC_PER_NODE: "4" }))).argv).toEqual([
      "/usr/bin/env",
      "python",
      "t.py",
    ]);
  });

  it("calls a factory default export with the framework", async () => {
    const p = await resolvePlugin({ plugin: "./factory.mjs", cwd: dir, probe });
    expect(p.name).toBe("made");
    expect(await p.env!(ctx())).toMatchObject({ MADE_FOR: "undefined", RANK: "0" });
  });

  it.each([
    ["an ESM-only package (exports.import)", "trainer-plugin-esm", "esm-pkg"],
    ["a CommonJS package", "trainer-plugin-cjs", "cjs-pkg"],
  ])("loads %s from node_modules above cwd", async (_name, spec, pluginName) => {
    await mkdir(join(dir, "sub", "deeper"), { recursive: true });
    const p = await resolvePlugin({ plugin: spec, cwd: join(dir, "sub", "deeper"), probe });
    expect(p.name).toBe(pluginName);
    expect((await p.env!(ctx())).FROM).toBe(pluginName);
  });

  it.each<[string, { framework?: string; plugin: string }, ErrorCode, RegExp]>([
    [
      "missing file",
      { plugin: "./nope.ts" },
      "PLUGIN_NOT_FOUND",
      /plugin file "\.\/nope\.ts" not found \(looked at .*nope\.ts\)/,
    ],
    [
      "missing package",
      { plugin: "no-such-trainer-plugin" },
      "PLUGIN_NOT_FOUND",
      /plugin package "no-such-trainer-plugin" is not installed/,
    ],
    [
      "framework neither built-in nor the plugin",
      { framework: "jax", plugin: "./keras.ts" },
      "PLUGIN_NOT_FOUND",
      /framework "jax" is neither a built-in .*\(named "keras"\)/,
    ],
    [
      "bad name",
      { plugin: "./bad-name.mjs" },
      "PLUGIN_INVALID",
      /plugin "Bad Name": name must match .*loaded from "\.\/bad-name\.mjs"/,
    ],
    [
      "hook not a function",
      { plugin: "./bad-hook.mjs" },
      "PLUGIN_INVALID",
      /plugin "badhook": hook env must be a function, got string/,
    ],
    [
      "the retired checkpoints hook",
      { plugin: "./old-checkpoints.mjs" },
      "PLUGIN_INVALID",
      /plugin "oldckpt": hook checkpoints is not supported: .*CHECKPOINT_DIR.*loaded from "\.\/old-checkpoints\.mjs"/,
    ],
    [
      "no default export",
      { plugin: "./no-default.mjs" },
      "PLUGIN_INVALID",
      /plugin "\.\/no-default\.mjs" has no default export/,
    ],
    ["syntax error", { plugin: "./syntax.mjs" }, "PLUGIN_INVALID", /plugin "\.\/syntax\.mjs" could not be loaded: /],
    [
      "factory throws",
      { plugin: "./throws-factory.mjs" },
      "PLUGIN_INVALID",
      /plugin "\.\/throws-factory\.mjs": its factory threw: factory boom/,
    ],
  ])("load failure: %s", async (_name, opts, code, message) => {
    const f = await failure(resolvePlugin({ ...opts, cwd: dir, probe }));
    expect(f.code).toBe(code);
    expect(f.message).toMatch(message);
    expect(f.message).not.toContain("\n");
  });

  it.each<[string, string, (p: Awaited<ReturnType<typeof resolvePlugin>>) => unknown, RegExp]>([
    ["env throws", "./throws-env.mjs", (p) => p.env!(ctx()), /plugin "throwsenv": hook env failed: env boom/],
    [
      "env bad name",
      "./bad-env.mjs",
      (p) => p.env!(ctx()),
      /plugin "badenv": hook env returned an invalid variable name "NOT-A-NAME"/,
    ],
    [
      "env non-string",
      "./bad-env-value.mjs",
      (p) => p.env!(ctx()),
      /plugin "badval": hook env returned a non-string value for PORT \(number\)/,
    ],
    [
      "command empty argv",
      "./bad-command.mjs",
      (p) => p.command!(["x"], ctx()),
      /plugin "badcmd": hook command must return \{ argv/,
    ],
    [
      "parseLine non-array",
      "./bad-parse.mjs",
      (p) => p.parseLine!("x", { stream: "stdout" }),
      /plugin "badparse": hook parseLine must return an array of reports or undefined, got "epoch 1"/,
    ],
    [
      "parseLine throws",
      "./throws-parse.mjs",
      (p) => p.parseLine!("x", { stream: "stderr" }),
      /plugin "throwsparse": hook parseLine failed: parse boom/,
    ],
  ])("hook failure: %s is PLUGIN_HOOK_FAILED naming plugin and hook", async (_name, file, call, message) => {
    const p = await resolvePlugin({ plugin: file, cwd: dir, probe });
    const f = await failure(Promise.resolve().then(() => call(p)));
    expect(f.code).toBe("PLUGIN_HOOK_FAILED");
    expect(f.message).toMatch(message);
  });
});
