/**
 * The agent as a real process (`node bin/trainer-agent.js run -- ...`) with real children and a real callback
 * backend on 127.0.0.1.
 */
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, startBackend, type TestBackend } from "../callbacks/backend.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/children/${name}`, import.meta.url));
const TOKEN = "eyJhbGciOiJIUzI1NiJ9.agent-test-secret-token.c2ln";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  exitedAt: number;
}

function agent(
  args: string[],
  env: Record<string, string>,
  onStdout?: (text: string, kill: (s: NodeJS.Signals) => void) => void,
) {
  const p = spawn(process.execPath, [BIN, "run", ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
    onStdout?.(stdout, (s) => p.kill(s));
  });
  p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise<Run>((resolve) =>
    p.on("close", (code) => resolve({ code, stdout, stderr, exitedAt: Date.now() })),
  );
}

const backends: TestBackend[] = [];
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
});
async function backend(...args: Parameters<typeof startBackend>) {
  const b = await startBackend(...args);
  backends.push(b);
  return b;
}
const cb = (b: { url: string }, extra: Record<string, string> = {}) => ({
  BACKEND_BASE_URL: b.url,
  JOB_ID: "job-7",
  CALLBACK_TOKEN: TOKEN,
  ...extra,
});

function expectNoToken(run: Run) {
  expect(run.stdout).not.toContain(TOKEN);
  expect(run.stderr).not.toContain(TOKEN);
}

describe("trainer-agent run (real process)", () => {
  it("relays the child's stdout, turns reports into callbacks and posts done", async () => {
    const b = await backend();
    const run = await agent(["--", fixture("train.sh")], cb(b, { HEARTBEAT_INTERVAL_SECONDS: "60" }));
    expect(run.code).toBe(0);
    const trace = /trace=(\S+)/.exec(run.stdout)?.[1];
    expect(run.stdout).toBe(`token=unset agent=1 trace=${trace}\nepoch 1\nepoch 2\nepoch 3\n`);
    expectNoToken(run);

    const events = b.of("event").map((r) => r.body);
    expect(events[0]).toMatchObject({ type: "started", job_id: "job-7", trace_id: trace });
    expect(events.map((e) => e.type)).toContain("warning");
    const beats = b.of("heartbeat").map((r) => r.body);
    expect(beats.at(-1)).toMatchObject({ epoch: 3, total_epochs: 3, progress: 1, metrics: { loss: 0.3 } });
    const done = b.of("done");
    expect(done).toHaveLength(1);
    expect(done[0]?.body).toMatchObject({
      status: "succeeded",
      exit_code: 0,
      final_metrics: { loss: 0.3 },
      checkpoints: [],
      trace_id: trace,
    });
    expect(String(done[0]?.body.log_tail)).toContain("epoch 3");
    expect(String(done[0]?.body.log_tail)).not.toContain("::trainer::");
    for (const r of b.requests) expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
    // Agent logs are JSON lines on stderr with the run's ids.
    const logLine = run.stderr.split("\n").find((l) => l.includes('"agent done"'));
    expect(JSON.parse(logLine ?? "{}")).toMatchObject({ trace_id: trace, job_id: "job-7", node_rank: 0 });
  });

  it("continues a given TRACEPARENT: same trace id in logs, payloads, the header and the child's env", async () => {
    const b = await backend();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const run = await agent(
      ["--", "sh", "-c", 'echo "$TRACE_ID $TRACEPARENT"'],
      cb(b, { TRACEPARENT: `00-${traceId}-00f067aa0ba902b7-01` }),
    );
    expect(run.code).toBe(0);
    const [childTrace, childParent] = run.stdout.trim().split(" ");
    expect(childTrace).toBe(traceId);
    expect(childParent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(childParent).not.toContain("00f067aa0ba902b7"); // the agent is a new span under the caller's
    for (const r of b.requests) {
      expect(r.headers.traceparent).toBe(childParent);
      expect(r.body.trace_id).toBe(traceId);
    }
    expect(run.stderr).toContain(`"trace_id":"${traceId}"`);
  });

  it("sends a liveness heartbeat every HEARTBEAT_INTERVAL_SECONDS while no epoch is reported", async () => {
    const b = await backend();
    // The child runs until the backend has seen two liveness heartbeats (a condition, not a guess at the timing).
    const stop = join(await mkdtemp(join(tmpdir(), "liveness-")), "stop");
    const child = `while [ ! -e ${stop} ]; do sleep 0.05; done`;
    const running = agent(["--", "/bin/sh", "-c", child], cb(b, { HEARTBEAT_INTERVAL_SECONDS: "1" }));
    await b.waitFor(() => b.of("heartbeat").length >= 2, 60_000);
    await writeFile(stop, "");
    const run = await running;
    expect(run.code).toBe(0);
    const beats = b.of("heartbeat");
    expect(beats.length).toBeGreaterThanOrEqual(2);
    expect(beats[0]?.body).toMatchObject({ job_id: "job-7", metrics: {} });
  });

  it("exits with the child's exit code and reports done failed with the reason", async () => {
    const b = await backend();
    const run = await agent(["--", fixture("traceback.sh")], cb(b));
    expect(run.code).toBe(1);
    expect(b.of("done")[0]?.body).toMatchObject({
      status: "failed",
      exit_code: 1,
      reason: "ValueError: learning rate must be positive",
    });
  });

  it("a node of a multi-node job says which node it is in done (the backend ends the job once all succeeded)", async () => {
    const b = await backend();
    const single = await agent(["--", "/bin/sh", "-c", "exit 0"], cb(b));
    expect(single.code).toBe(0);
    expect(b.of("done")[0]?.body).not.toHaveProperty("node_rank");
    const worker = await agent(["--", "/bin/sh", "-c", "exit 4"], cb(b, { PET_NNODES: "2", PET_NODE_RANK: "1" }));
    expect(worker.code).toBe(4);
    expect(b.of("done")[1]?.body).toMatchObject({ status: "failed", exit_code: 4, node_rank: 1, nnodes: 2 });
  });

  it("hands ordinary lines to a --plugin's parseLine and survives a plugin that throws", async () => {
    const b = await backend();
    const run = await agent(
      ["--plugin", fixture("epochs-plugin.mjs"), "--", "sh", "-c", "echo 'Epoch 1/4'; echo boom; echo 'Epoch 2/4'"],
      cb(b),
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("Epoch 1/4\nboom\nEpoch 2/4\n");
    expect(b.of("heartbeat").at(-1)?.body).toMatchObject({ epoch: 2, total_epochs: 4, progress: 0.5 });
    expect(run.stderr).toContain("plugin parseLine failed");
    expect(b.of("done")[0]?.body).toMatchObject({ status: "succeeded" });
  });

  it("keeps relaying and finishes the run after an uncaught error inside the agent", async () => {
    const b = await backend();
    const script = "echo async-boom; sleep 0.3; echo 'Epoch 3/3'; echo after";
    const run = await agent(["--plugin", fixture("epochs-plugin.mjs"), "--", "sh", "-c", script], cb(b));
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("async-boom\nEpoch 3/3\nafter\n");
    expect(run.stderr).toContain("agent internal error; supervising the training goes on");
    expect(run.stderr).toContain("async plugin bug");
    expect(b.of("done")[0]?.body).toMatchObject({ status: "succeeded" });
  });

  it("works with callbacks off and answers 127 for a missing command", async () => {
    const run = await agent(["--", "no-such-command-xyz"], {});
    expect(run.code).toBe(127);
    expect(run.stderr).toContain("command not found: no-such-command-xyz");
  });

  it("on SIGTERM: event terminating, forwards it to the child, done cancelled, child's exit code", async () => {
    const b = await backend();
    let sent = false;
    const run = await agent(["--", fixture("trap-term.sh")], cb(b), (out, kill) => {
      if (!sent && out.includes("ready")) {
        sent = true;
        kill("SIGTERM");
      }
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("got TERM, saving");
    expect(b.of("event").map((r) => r.body.type)).toContain("terminating");
    expect(b.of("done")[0]?.body).toMatchObject({ status: "cancelled", exit_code: 0 });
  });

  it("SIGKILLs a child that ignores SIGTERM after TERMINATION_GRACE_SECONDS: exit 137", async () => {
    const b = await backend();
    let sent = false;
    const run = await agent(
      ["--", fixture("ignore-term.sh")],
      cb(b, { TERMINATION_GRACE_SECONDS: "0.5" }),
      (out, kill) => {
        if (!sent && out.includes("ready")) {
          sent = true;
          kill("SIGTERM");
        }
      },
    );
    expect(run.code).toBe(137);
    expect(b.of("done")[0]?.body).toMatchObject({
      status: "cancelled",
      exit_code: 137,
      reason: "killed: did not exit within the 0.5 s grace period after SIGTERM received",
    });
  });

  it.each([
    ["hangs", () => "hang" as const],
    ["always answers 500", () => ({ status: 500 })],
  ])("a backend that %s does not slow the child; the agent exits by the done deadline", async (_name, rule) => {
    const b = await backend(rule);
    const run = await agent(
      ["--", "sh", "-c", "date +%s%3N; sleep 0.3; echo '::trainer::{\"epoch\":1}'; date +%s%3N"],
      cb(b, { DONE_DEADLINE_SECONDS: "1", CALLBACK_TIMEOUT_SECONDS: "0.5" }),
    );
    expect(run.code).toBe(0);
    const [start, end] = run.stdout.trim().split("\n").map(Number) as [number, number];
    // The child's own wall time: its 0.3 s sleep plus process start-up, whatever the backend does.
    expect(end - start).toBeLessThan(1_500);
    // After the child: at most the done deadline plus a margin for a loaded machine.
    expect(run.exitedAt - end).toBeLessThan(1_000 + 4_000);
    expect(b.requests.length).toBeGreaterThan(0);
    expectNoToken(run);
  });

  it("delivers started and done to a backend that is down for the first 1.5 s", async () => {
    const port = await freePort();
    const late = new Promise<TestBackend>((resolve) => setTimeout(() => resolve(backend(undefined, port)), 1_500));
    const run = await agent(
      ["--", fixture("train.sh")],
      cb({ url: `http://127.0.0.1:${port}` }, { EPOCHS: "6", EPOCH_SLEEP: "0.4", DONE_DEADLINE_SECONDS: "20" }),
    );
    const b = await late;
    expect(run.code).toBe(0);
    expect(b.of("event").map((r) => r.body.type)).toContain("started");
    expect(b.of("done")[0]?.body).toMatchObject({ status: "succeeded" });
    expect(b.of("heartbeat").at(-1)?.body).toMatchObject({ epoch: 6, progress: 1 });
  });

  it("bad configuration: one-line reason, exit 78, done failed when callbacks are readable", async () => {
    const b = await backend();
    const run = await agent(["--", "true"], cb(b, { PET_NNODES: "zero" }));
    expect(run.code).toBe(78);
    expect(run.stderr.trim().split("\n")).toEqual([
      'trainer-agent: CONFIG_INVALID: invalid configuration: PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "zero"',
    ]);
    expect(b.of("done")[0]?.body).toMatchObject({ status: "failed", exit_code: 78 });
    expect(String(b.of("done")[0]?.body.reason)).toContain("PET_NNODES");
  });
});
