/**
 * The Python helper (python/trainer_agent.py) run by real interpreters: plain python and torchrun workers sharing
 * one pipe. Exact bytes of the lines, one os.write per report, and the no-op outside the agent.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const PYTHON = "/usr/bin/python3";
const TORCHRUN = "/usr/bin/torchrun";
const HELPER_DIR = fileURLToPath(new URL("../../python/", import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[], env: Record<string, string | undefined>, cwd: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const base: Record<string, string> = {};
    for (const k of ["PATH", "HOME", "LANG", "TMPDIR"]) if (process.env[k] !== undefined) base[k] = process.env[k];
    const merged: Record<string, string> = { ...base, PYTHONPATH: HELPER_DIR };
    for (const [k, v] of Object.entries(env)) if (v !== undefined) merged[k] = v;
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: merged, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }),
    );
  });
}

let dir: string;
const AGENT = { ASTRAGO_AGENT: "1" };

async function py(source: string, env: Record<string, string | undefined> = AGENT): Promise<Result> {
  const file = join(dir, `s${Math.random().toString(36).slice(2)}.py`);
  await writeFile(file, source);
  return run([PYTHON, file], env, dir);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trainer-py-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("trainer_agent.py from plain python", () => {
  it("writes the exact protocol lines, with rank only when RANK is set", async () => {
    const src = `
import trainer_agent as ta
ta.report(epoch=3, total_epochs=10, loss=0.21, acc=0.93)
ta.report(epoch=4, step=120, loss=1)
ta.checkpoint("/ckpt/epoch-3.pt")
ta.event("warning", "lr reduced", lr=0.0001)
ta.event("custom")
`;
    const plain = await py(src);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(
      [
        '::trainer::{"epoch":3,"total_epochs":10,"metrics":{"loss":0.21,"acc":0.93}}',
        '::trainer::{"epoch":4,"step":120,"metrics":{"loss":1}}',
        '::trainer::{"checkpoint":"/ckpt/epoch-3.pt"}',
        '::trainer::{"event":"warning","message":"lr reduced","data":{"lr":0.0001}}',
        '::trainer::{"event":"custom"}',
        "",
      ].join("\n"),
    );
    const ranked = await py(src, { ...AGENT, RANK: "3" });
    expect(ranked.stdout.split("\n")[0]).toBe(
      '::trainer::{"epoch":3,"total_epochs":10,"metrics":{"loss":0.21,"acc":0.93},"rank":3}',
    );
    expect(ranked.stdout.split("\n")[2]).toBe('::trainer::{"checkpoint":"/ckpt/epoch-3.pt","rank":3}');
  });

  it("emits each report in exactly one os.write of the full line, after text printed before it", async () => {
    // Wraps os.write to record every call the helper makes, then checks the calls against the lines.
    const res = await py(`
import os, sys
calls = []
real = os.write
def spy(fd, data):
    calls.append(bytes(data))
    return real(fd, data)
os.write = spy
import trainer_agent as ta
print("before", end="")
for i in range(50):
    ta.report(epoch=i, total_epochs=50, loss=1.0 / (i + 1), name_with_unicode_\u00e9=2)
ta.checkpoint("ck\u00e9.pt")
reports = [c for c in calls if b"::trainer::" in c]
sys.stderr.write("calls=%d reports=%d whole=%d\\n" % (
    len(calls), len(reports), sum(1 for c in reports if c.startswith(b"::trainer::") and c.endswith(b"\\n") and c.count(b"\\n") == 1)))
`);
    expect(res.code).toBe(0);
    expect(res.stderr).toContain("calls=51 reports=51 whole=51");
    expect(res.stdout.startsWith("before::trainer::")).toBe(true);
    // Non-ASCII names and paths are escaped, so the bytes on the pipe are ASCII.
    expect(res.stdout).toContain('"name_with_unicode_\\u00e9":2');
    expect(res.stdout).toContain(
      `"checkpoint":${JSON.stringify(join(dir, "ck\u00e9.pt")).replace("\u00e9", "\\u00e9")}`,
    );
  });

  it("leaves out NaN, infinities and non-numbers with one warning per metric name", async () => {
    const res = await py(`
import trainer_agent as ta
for e in range(3):
    ta.report(epoch=e, loss=float("nan"), acc=0.5, lr=float("inf"), tag="x", flag=True, big=10**400)
`);
    expect(res.code).toBe(0);
    const lines = res.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0]!.slice("::trainer::".length))).toEqual({ epoch: 0, metrics: { acc: 0.5, flag: 1 } });
    expect(res.stderr.match(/metric 'loss' is nan/g)).toHaveLength(1);
    expect(res.stderr.match(/metric 'lr' is inf/g)).toHaveLength(1);
    expect(res.stderr.match(/metric 'tag' is not a number/g)).toHaveLength(1);
    expect(res.stderr.match(/metric 'big'/g)).toHaveLength(1);
  });

  it("accepts integral floats and rejects bad epochs with a clear error", async () => {
    const res = await py(`
import trainer_agent as ta
ta.report(epoch=2.0, total_epochs=5)
for bad in [dict(), dict(epoch=-1), dict(epoch=1.5), dict(epoch="3"), dict(epoch=True), dict(epoch=1, step=-2)]:
    try:
        ta.report(**bad)
        print("accepted", bad)
    except (TypeError, ValueError) as e:
        print("rejected:", e)
`);
    expect(res.code).toBe(0);
    const lines = res.stdout.trim().split("\n");
    expect(lines[0]).toBe('::trainer::{"epoch":2,"total_epochs":5,"metrics":{}}');
    expect(lines.slice(1)).toEqual([
      "rejected: trainer_agent.report(): epoch is required",
      "rejected: trainer_agent.report(): epoch must be a non-negative integer, got -1",
      "rejected: trainer_agent.report(): epoch must be a non-negative integer, got 1.5",
      "rejected: trainer_agent.report(): epoch must be a non-negative integer, got '3'",
      "rejected: trainer_agent.report(): epoch must be a non-negative integer, got True",
      "rejected: trainer_agent.report(): step must be a non-negative integer, got -2",
    ]);
  });

  it("is a no-op with one warning outside the agent, and on with TRACE_ID + CHECKPOINT_DIR", async () => {
    const src = `
import trainer_agent as ta
print(ta.enabled(), ta.report(epoch=1, loss=0.1), ta.checkpoint("x"), ta.event("warning", "m"))
`;
    const outside = await py(src, {});
    expect(outside.code).toBe(0);
    expect(outside.stdout).toBe("False None None None\n");
    expect(outside.stderr.match(/not running under trainer-agent/g)).toHaveLength(1);

    const forcedOff = await py(src, { ASTRAGO_AGENT: "0", TRACE_ID: "t", CHECKPOINT_DIR: dir });
    expect(forcedOff.stdout).toBe("False None None None\n");

    const inside = await py(src, { TRACE_ID: "t-1", CHECKPOINT_DIR: dir });
    expect(inside.stdout).toMatch(/^::trainer::\{"epoch":1,"metrics":\{"loss":0.1\}\}\n/);
    expect(inside.stderr).not.toContain("not running under trainer-agent");
  });

  it("still writes one line when sys.stdout has no file descriptor", async () => {
    const res = await py(`
import io, sys
import trainer_agent as ta
buf = io.StringIO()
real, sys.stdout = sys.stdout, buf
ta.report(epoch=1, loss=0.5)
sys.stdout = real
print(repr(buf.getvalue()))
`);
    expect(res.stdout).toBe(`'::trainer::{"epoch":1,"metrics":{"loss":0.5}}\\n'\n`);
  });

  it("never crashes the training when stdout is gone: one warning, then silence", async () => {
    const res = await py(`
import sys
import trainer_agent as ta
sys.stdout = None
results = [ta.report(epoch=i, loss=1.0) for i in range(3)]
sys.stderr.write("results=%r\\n" % results)
`);
    expect(res.code).toBe(0);
    expect(res.stderr.match(/could not write a report/g)).toHaveLength(1);
    expect(res.stderr).toContain("results=[None, None, None]");
  });
});

const haveTorch = existsSync(TORCHRUN);

describe.skipIf(!haveTorch)("trainer_agent.py from torchrun workers", () => {
  it("keeps every report whole while 2 workers write reports and print() noise into one pipe", async () => {
    const script = join(dir, "worker.py");
    await writeFile(
      script,
      `
import os
import trainer_agent as ta
rank = int(os.environ["RANK"])
for i in range(300):
    print("noise from rank", rank, "step", i)
    ta.report(epoch=i, total_epochs=300, loss=i * 0.001, rank_metric=rank)
`,
    );
    const res = await run(
      [TORCHRUN, "--standalone", "--nnodes=1", "--nproc_per_node=2", script],
      { ...AGENT, PET_REDIRECTS: "9:1", PET_TEE: "9:1", OMP_NUM_THREADS: "1" },
      dir,
    );
    expect(res.code, res.stderr).toBe(0);
    // A report may follow another worker's unterminated print on the same line, but is itself never split.
    const found = [...res.stdout.matchAll(/::trainer::(\{[^\n]*?\})(?=\n|$)/g)].map(
      (m) => JSON.parse(m[1]!) as { epoch: number; rank: number; metrics: { rank_metric: number } },
    );
    expect(res.stdout.split("::trainer::").length - 1).toBe(600);
    expect(found).toHaveLength(600);
    for (const rank of [0, 1]) {
      const mine = found.filter((r) => r.rank === rank);
      expect(mine.map((r) => r.epoch)).toEqual(Array.from({ length: 300 }, (_, i) => i));
      expect(mine.every((r) => r.metrics.rank_metric === rank)).toBe(true);
    }
  }, 60_000);
});
