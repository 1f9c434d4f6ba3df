import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { formatSh, renderEnv, shellQuote } from "../../src/agent/env-command.ts";
import { fixedProbe } from "../../src/env/probe.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");
const agent = join(root, "bin/trainer-agent.js");
const probe = fixedProbe({ gpus: 0, cpus: 2 });

/** `trainer-agent env ...` as a real process with exactly `env` (plus PATH). */
async function cli(args: string[], env: Record<string, string>) {
  try {
    const r = await run(process.execPath, [agent, "env", ...args], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
      cwd: root,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("renderEnv", () => {
  it("prints the plain-python variables plus DATASET_DIR, CHECKPOINT_DIR, TRACE_ID", async () => {
    const { vars } = await renderEnv({
      env: { PET_NNODES: "2", PET_NODE_RANK: "1", PET_MASTER_ADDR: "j-node-0-0.j", TRACE_ID: "t-1", DATASET_DIR: "/d" },
      cwd: root,
      probe,
    });
    expect(vars).toMatchObject({
      RANK: "1",
      WORLD_SIZE: "2",
      NODE_RANK: "1",
      MASTER_ADDR: "j-node-0-0.j",
      MASTER_PORT: "29500",
      DATASET_DIR: "/d",
      CHECKPOINT_DIR: "/workspace/checkpoints",
      TRACE_ID: "t-1",
    });
  });

  it("takes the trace id from TRACEPARENT, else generates one", async () => {
    const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    expect((await renderEnv({ env: { TRACEPARENT: parent }, cwd: root, probe })).vars.TRACE_ID).toBe(
      "4bf92f3577b34da6a3ce929d0e0e4736",
    );
    const random = (bytes: number) => Buffer.alloc(bytes, 0xab);
    expect((await renderEnv({ env: {}, cwd: root, probe, random })).vars.TRACE_ID).toBe("ab".repeat(16));
  });

  it("--nproc-per-node overrides PET_NPROC_PER_NODE and is validated like it", async () => {
    const { vars } = await renderEnv({ framework: "pytorch", nprocPerNode: "4", env: {}, cwd: root, probe });
    expect(vars.PET_NPROC_PER_NODE).toBe("4");
    expect(vars).not.toHaveProperty("RANK");
    await expect(renderEnv({ nprocPerNode: "0", env: {}, cwd: root, probe })).rejects.toThrow(
      'PET_NPROC_PER_NODE must be a positive integer or auto, cpu, gpu, got "0"',
    );
  });

  it("shows an existing TF_CONFIG as the child gets it", async () => {
    const tf = '{"cluster":{"worker":["a:1","b:1"]},"task":{"type":"worker","index":1}}';
    const { vars } = await renderEnv({ framework: "tensorflow", env: { TF_CONFIG: tf, PET_NNODES: "2" }, cwd: root });
    expect(vars.TF_CONFIG).toBe(tf);
  });

  it("never prints a secret, even one a plugin returns", async () => {
    const { text } = await renderEnv({
      format: "json",
      env: { CALLBACK_TOKEN: "tok-123", S3_SECRET_ACCESS_KEY: "sk-456", AWS_ACCESS_KEY_ID: "AKIA789" },
      cwd: root,
      probe,
    });
    for (const v of ["tok-123", "sk-456", "AKIA789"]) expect(text).not.toContain(v);
  });

  it("rejects an unknown format", async () => {
    await expect(renderEnv({ format: "yaml", env: {}, cwd: root })).rejects.toMatchObject({ code: "USAGE" });
  });

  it.each([
    ["plain", "'plain'"],
    ["", "''"],
    ["it's", `'it'\\''s'`],
    ['{"a":"$HOME `id`"}', `'{"a":"$HOME \`id\`"}'`],
    ["line\nbreak", "'line\nbreak'"],
  ])("shellQuote(%j)", (value, quoted) => {
    expect(shellQuote(value)).toBe(quoted);
  });

  it("formatSh writes one export per variable", () => {
    expect(formatSh({ A: "1", B_2: "x y" })).toBe("export A='1'\nexport B_2='x y'\n");
  });
});

describe("trainer-agent env (CLI)", () => {
  it("sh output evaluates in a real shell to the same values, quotes and all", async () => {
    const tfEnv = {
      PET_NNODES: "2",
      PET_NODE_RANK: "1",
      PET_MASTER_ADDR: "it-s-node-0-0.it-s",
      DATASET_DIR: "/data/it's $x",
    };
    const out = await cli(["--framework", "tensorflow", "--format", "sh"], tfEnv);
    expect(out.code).toBe(0);
    const script = `${out.stdout}\nprintf '%s\\n' "$TF_CONFIG" "$DATASET_DIR"`;
    const { stdout } = await run("/bin/sh", ["-c", script]);
    const [tf, dataset] = stdout.split("\n");
    expect(JSON.parse(tf!)).toEqual({
      cluster: { worker: ["it-s-node-0-0.it-s:2222", "it-s-node-0-1.it-s:2222"] },
      task: { type: "worker", index: 1 },
    });
    expect(dataset).toBe("/data/it's $x");
  });

  it("json output for a pytorch pod", async () => {
    const out = await cli(["--framework", "pytorch", "--format", "json"], {
      PET_NNODES: "3",
      PET_NODE_RANK: "2",
      PET_NPROC_PER_NODE: "1",
      PET_MASTER_ADDR: "p-node-0-0.p",
    });
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ RANK: "2", WORLD_SIZE: "3", MASTER_ADDR: "p-node-0-0.p" });
  });

  it.each<[string, Record<string, string>, string[], string]>([
    [
      "bad nnodes",
      { PET_NNODES: "2:4" },
      [],
      'PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "2:4"',
    ],
    [
      "node rank too high",
      { PET_NNODES: "2", PET_NODE_RANK: "5" },
      [],
      'PET_NODE_RANK must be less than PET_NNODES (2), got "5"',
    ],
    ["bad port", { PET_MASTER_PORT: "99999" }, [], 'PET_MASTER_PORT must be a port from 1 to 65535, got "99999"'],
    [
      "bad TF_CONFIG",
      { TF_CONFIG: "{nope" },
      ["--framework", "tensorflow"],
      'TF_CONFIG must be a JSON object, got "{nope"',
    ],
    [
      "gpu without GPUs",
      { PET_NPROC_PER_NODE: "gpu", CUDA_VISIBLE_DEVICES: "" },
      [],
      'PET_NPROC_PER_NODE must be a positive integer, auto or cpu when no GPU is visible, got "gpu"',
    ],
    ["unknown framework", {}, ["--framework", "jax"], 'framework "jax" is not a built-in'],
  ])("bad env: %s -> one line naming the variable, exit 78", async (_name, env, args, message) => {
    const out = await cli(args, { ...env, CALLBACK_TOKEN: "secret-tok-1" });
    expect(out.code).toBe(78);
    expect(out.stdout).toBe("");
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
    expect(out.stderr).toContain(message);
    expect(out.stderr).not.toContain("secret-tok-1");
  });

  it("--plugin loads a plugin file relative to the current directory; its variables are printed, its secrets not", async () => {
    const dir = await mkdtemp(join(tmpdir(), "env-plugin-"));
    try {
      await writeFile(
        join(dir, "my-plugin.mjs"),
        `export default { name: "mine", env: (ctx) => ({ MINE: "rank " + ctx.env.RANK, MY_API_TOKEN: "leak-me" }) };`,
      );
      const r = await run(process.execPath, [agent, "env", "--plugin", "./my-plugin.mjs", "--format", "json"], {
        env: { PATH: process.env.PATH ?? "", PET_NNODES: "2", PET_NODE_RANK: "1" },
        cwd: dir,
      });
      const vars = JSON.parse(r.stdout) as Record<string, string>;
      expect(vars).toMatchObject({ MINE: "rank 1", RANK: "1", WORLD_SIZE: "2" });
      expect(r.stdout).not.toContain("leak-me");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("--help shows the formats and examples", async () => {
    const out = await cli(["--help"], {});
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("--format <format>");
    expect(out.stdout).toContain('eval "$vars"');
  });
});
