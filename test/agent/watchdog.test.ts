/**
 * The hung-rank watchdog with a real agent process, a real child that stops printing, the real backend stub over
 * HTTP and a real S3 server (fauxqs) on 127.0.0.1: the `stalled` event once per stall, `recovered` when output
 * resumes, and with STALL_ACTION=terminate the checkpoints on disk stored before the child is ended, exit 75.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { CallbackClient } from "../../src/callbacks/client.ts";
import type { Supervised } from "../../src/process/supervise.ts";
import { loadAgentConfig } from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import pino from "pino";
import {
  createWatchdog,
  STALL_EPOCH_FACTOR,
  STALL_FIRST_EPOCH_SECONDS,
  STALL_FLOOR_SECONDS,
  stallLimitSeconds,
} from "../../src/agent/watchdog.ts";
import { startStub, type Running } from "../backend-stub/helpers.ts";
import { until } from "../faults/harness.ts";
import { createBucket, startFauxqs, storedCheckpoints, type TestServer } from "../storage/helpers.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const CHILD = fileURLToPath(new URL("../fixtures/children/go-quiet.mjs", import.meta.url));

let stub: Running;
let s3: TestServer;
let dir: string;
beforeAll(async () => {
  [stub, s3, dir] = await Promise.all([startStub(), startFauxqs(), mkdtemp(join(tmpdir(), "watchdog-"))]);
  await createBucket(s3.endpoint, "ck");
});
afterAll(async () => {
  await Promise.all([stub?.stop(), s3?.stop(), dir && rm(dir, { recursive: true, force: true })]);
});

async function agent(name: string, env: Record<string, string>) {
  const job = await stub.stub.createJob({ name });
  const ck = join(dir, name, "ck");
  await mkdir(ck, { recursive: true });
  // The loop prints until the child is up and kills it (see the fixture).
  const beat = `(while :; do echo starting; sleep 0.2; done) & BEAT_PID=$! exec "${process.execPath}" "${CHILD}"`;
  const p = spawn(process.execPath, [BIN, "run", "--", "sh", "-c", beat], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      BACKEND_BASE_URL: stub.url,
      JOB_ID: job.id,
      CALLBACK_TOKEN: job.token,
      CHECKPOINT_DIR: ck,
      DATASET_DIR: join(dir, name, "ds"),
      QUIET_GATE: join(dir, name, "gate"),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => p.on("close", resolve));
  const events = async (type: string) =>
    ((await stub.stub.getJob(job.id))?.events ?? []).filter((e) => e.type === type);
  // What the training printed, without the start-up loop's lines.
  const output = () => stdout.replace(/^starting\n/gm, "");
  return { job, exited, events, stdout: output, stderr: () => stderr, gate: join(dir, name, "gate") };
}

describe("the stall limit", () => {
  it("is STALL_SECONDS when given, else derived from the longest epoch with a floor and a start-up value", () => {
    expect(stallLimitSeconds(7, 1000)).toBe(7);
    expect(stallLimitSeconds("auto", undefined)).toBe(STALL_FIRST_EPOCH_SECONDS);
    expect(stallLimitSeconds("auto", 10)).toBe(STALL_FLOOR_SECONDS);
    expect(stallLimitSeconds("auto", 600)).toBe(STALL_EPOCH_FACTOR * 600);
  });

  it("STALL_SECONDS and STALL_ACTION are validated, naming the variable, the form and the value", () => {
    const problem = (env: Record<string, string>) => {
      try {
        loadAgentConfig(env);
      } catch (error) {
        if (isAgentError(error, "CONFIG_INVALID")) return error.message;
        throw error;
      }
      return undefined;
    };
    expect(problem({ STALL_SECONDS: "soon" })).toContain(
      'STALL_SECONDS must be a number of seconds from 1 to 604800, auto, or off (0), got "soon"',
    );
    expect(problem({ STALL_SECONDS: "0.5" })).toContain('got "0.5"');
    expect(problem({ STALL_ACTION: "kill" })).toContain('STALL_ACTION must be one of report, terminate, got "kill"');
    expect(loadAgentConfig({}).stall).toEqual({ seconds: "auto", action: "report" });
    expect(loadAgentConfig({ STALL_SECONDS: "off" }).stall.seconds).toBe("off");
    expect(loadAgentConfig({ STALL_SECONDS: "0" }).stall.seconds).toBe("off");
    expect(loadAgentConfig({ STALL_SECONDS: "90", STALL_ACTION: "Terminate" }).stall).toEqual({
      seconds: 90,
      action: "terminate",
    });
  });

  it("auto watches node 0 only (the other ranks of a typical script print nothing); off watches none", () => {
    const watchdog = (env: Record<string, string>) =>
      createWatchdog({
        config: loadAgentConfig(env),
        log: pino({ level: "silent" }),
        callbacks: undefined,
        keepWork: undefined,
        cancelled: () => false,
      });
    expect(watchdog({ PET_NNODES: "2", PET_NODE_RANK: "0" })).toBeDefined();
    expect(watchdog({ PET_NNODES: "2", PET_NODE_RANK: "1" })).toBeUndefined();
    expect(watchdog({ PET_NNODES: "2", PET_NODE_RANK: "1", STALL_SECONDS: "60" })).toBeDefined();
    expect(watchdog({ STALL_SECONDS: "off" })).toBeUndefined();
  });

  it("a bad STALL_SECONDS stops the agent with exit 78 before the command runs", async () => {
    const run = await agent("bad-config", { STALL_SECONDS: "-3" });
    expect(await run.exited).toBe(78);
    expect(run.stdout()).toBe("");
    expect(run.stderr()).toMatch(/^trainer-agent: CONFIG_INVALID: .*STALL_SECONDS must be .*, got "-3"$/m);
  });
});

describe("the derived limit over time (auto; a controlled clock)", () => {
  // Minutes of quiet cannot be waited for: vitest's fake timers drive the clock. The events are recorded by the
  // one CallbackClient method the watchdog uses; the child is a stand-in whose terminate is never called here.
  afterEach(() => {
    vi.useRealTimers();
  });

  function watched() {
    vi.useFakeTimers({ now: 0 });
    const events: { type: string; data: Record<string, unknown> }[] = [];
    const callbacks = {
      event: (type: string, _message: string | undefined, data: Record<string, unknown>) => events.push({ type, data }),
    } as unknown as CallbackClient;
    const w = createWatchdog({
      config: loadAgentConfig({}),
      log: pino({ level: "silent" }),
      callbacks,
      keepWork: undefined,
      cancelled: () => false,
      now: () => Date.now(),
    })!;
    w.watch({ terminate: () => expect.unreachable("report mode never terminates") } as unknown as Supervised);
    const stalls = () => events.filter((e) => e.type === "stalled").map((e) => e.data.stall_seconds);
    return { w, events, stalls };
  }

  it("before the first epoch the start-up limit holds; after it, 3 x the longest epoch with the floor", () => {
    const { w, events, stalls } = watched();
    vi.advanceTimersByTime((STALL_FIRST_EPOCH_SECONDS - 1) * 1000);
    expect(stalls()).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(stalls()).toEqual([STALL_FIRST_EPOCH_SECONDS]);

    // Output resumes and epoch 1 ends (it counts from the start: 1800 s), then epoch 2 after 100 s: the limit is
    // 3 x 1800 s. A shorter later epoch does not shorten it.
    w.activity();
    expect(events.at(-1)).toMatchObject({ type: "recovered", data: { quiet_seconds: STALL_FIRST_EPOCH_SECONDS } });
    w.epoch(1);
    vi.advanceTimersByTime(100_000);
    w.activity();
    w.epoch(2);
    w.epoch(2); // a step report within epoch 2 is not a new epoch
    const limit = STALL_EPOCH_FACTOR * STALL_FIRST_EPOCH_SECONDS;
    vi.advanceTimersByTime((limit - 1) * 1000);
    expect(stalls()).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(stalls()).toEqual([STALL_FIRST_EPOCH_SECONDS, limit]);
    w.stop();
  });

  it("a relay paused for a slow reader of the agent's stdout holds the clock; after it, a full limit again", () => {
    const { w, stalls } = watched();
    vi.advanceTimersByTime(10_000);
    w.activity();
    w.epoch(1);
    vi.advanceTimersByTime((STALL_FLOOR_SECONDS - 10) * 1000);
    // The child blocks writing to a pipe nobody drains: the reader's quiet, hours of it, is no stall.
    w.relayPaused(true);
    vi.advanceTimersByTime(10 * STALL_FLOOR_SECONDS * 1000);
    expect(stalls()).toEqual([]);
    w.relayPaused(false);
    vi.advanceTimersByTime((STALL_FLOOR_SECONDS - 1) * 1000);
    expect(stalls()).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(stalls()).toEqual([STALL_FLOOR_SECONDS]);
    w.stop();
  });

  it("the first epoch report moves the pending start-up check to the new, shorter limit", () => {
    const { w, stalls } = watched();
    vi.advanceTimersByTime(10_000);
    w.activity();
    w.epoch(1);
    vi.advanceTimersByTime((STALL_FLOOR_SECONDS - 1) * 1000);
    expect(stalls()).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(stalls()).toEqual([STALL_FLOOR_SECONDS]);
    w.stop();
  });

  it("short epochs: the floor; output within the limit keeps the clock at zero", () => {
    const { w, stalls } = watched();
    vi.advanceTimersByTime(10_000);
    w.activity();
    w.epoch(1); // 10 s: 3 x 10 s is under the floor
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime((STALL_FLOOR_SECONDS - 1) * 1000);
      w.activity();
    }
    expect(stalls()).toEqual([]);
    vi.advanceTimersByTime(STALL_FLOOR_SECONDS * 1000);
    expect(stalls()).toEqual([STALL_FLOOR_SECONDS]);
    // Once per stall: more quiet is the same stall.
    vi.advanceTimersByTime(10 * STALL_FLOOR_SECONDS * 1000);
    expect(stalls()).toHaveLength(1);
    w.stop();
  });
});

describe("a command that stops printing (real process)", () => {
  it("reports `stalled` once, `recovered` when output resumes, and the run ends as the command does", async () => {
    const run = await agent("report", { STALL_SECONDS: "1" });
    // The stall under test is the one after epoch 2 (on a loaded machine an earlier quiet may be one too).
    const afterTraining = async (type: string) => (await run.events(type)).filter((e) => e.data?.last_epoch === 2);
    await until("the stalled event", async () => (await afterTraining("stalled")).length > 0, 60_000);
    // The quiet goes on for more than two limits: a watchdog that re-armed would report it again.
    await new Promise((r) => setTimeout(r, 2_500));
    await writeFile(run.gate, "");
    expect(await run.exited, run.stderr()).toBe(0);
    expect(run.stdout()).toBe("epoch 1\nepoch 2\nwaiting on the collective\ncollective done\n");

    const stalled = await afterTraining("stalled");
    expect(stalled).toHaveLength(1);
    expect(stalled[0]?.data).toMatchObject({
      node_rank: 0,
      stall_seconds: 1,
      limit: "STALL_SECONDS",
      action: "report",
      last_epoch: 2,
    });
    expect(stalled[0]?.data?.quiet_seconds).toBeGreaterThanOrEqual(1);
    // Each recovery closes its stall: as many of one as of the other.
    expect((await run.events("recovered")).length).toBe((await run.events("stalled")).length);
    expect(stalled[0]?.message).toMatch(/^no output or report from node 0's command for [\d.]+ s \(stall limit 1 s\)$/);
    const recovered = await afterTraining("recovered");
    expect(recovered).toHaveLength(1);
    // The whole quiet time: at least the 2.5 s held after the stall was seen.
    expect(recovered[0]?.data?.quiet_seconds).toBeGreaterThanOrEqual(2.5);
    const view = await stub.stub.getJob(run.job.id);
    expect(view?.done).toMatchObject({ status: "succeeded", exit_code: 0 });
  }, 90_000);

  it("STALL_ACTION=terminate: the checkpoints on disk are stored, the command ended, exit 75 with the reason", async () => {
    const run = await agent("terminate", {
      STALL_SECONDS: "1",
      STALL_ACTION: "terminate",
      // A child blocked in a collective runs no SIGTERM handler: it is killed after the grace period.
      IGNORE_TERM: "1",
      TERMINATION_GRACE_SECONDS: "1",
      // Unreported checkpoints: only the agent's own sync of what is on disk can store them.
      REPORT_CHECKPOINTS: "0",
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: "ck",
      S3_ACCESS_KEY_ID: "S3RVER",
      S3_SECRET_ACCESS_KEY: "S3RVER",
    });
    const code = await run.exited;
    expect(code, run.stderr()).toBe(75);
    expect(run.stderr()).toMatch(
      /^trainer-agent: STALLED: no output or report from node 0's command for [\d.]+ s \(stall limit 1 s\)$/m,
    );
    const view = await stub.stub.getJob(run.job.id);
    expect(view?.done).toMatchObject({ status: "failed", exit_code: 75 });
    expect(view?.done?.reason).toMatch(
      /^killed: did not exit within the 1 s grace period after STALL_ACTION=terminate; STALLED: /,
    );
    const keys = (view?.done?.checkpoints ?? []).map((c) => c.key);
    expect(keys).toEqual(
      expect.arrayContaining([`checkpoints/job-${run.job.id}/epoch-1.pt`, `checkpoints/job-${run.job.id}/epoch-2.pt`]),
    );
    expect((await run.events("stalled"))[0]?.data).toMatchObject({ action: "terminate", last_epoch: 2 });
    // Stored before the command was ended, not only by the final sync after it: the agent's log says so in order.
    const log = run.stderr();
    const ending = log.indexOf("ending the stalled command");
    expect(ending).toBeGreaterThan(0);
    expect(log.lastIndexOf('"checkpoint uploaded"', ending)).toBeGreaterThan(0);
    expect(log.slice(0, ending)).toContain("epoch-2.pt");
    expect(await run.events("recovered")).toEqual([]);

    // In the bucket: the file, and a manifest naming it (what a restarted pod restores from).
    const stored = await storedCheckpoints(s3.endpoint, "ck", `checkpoints/job-${run.job.id}/`);
    expect(stored.objects).toContain(`checkpoints/job-${run.job.id}/epoch-2.pt`);
    expect(stored.manifestNames).toContain("epoch-2.pt");
  }, 90_000);

  it("a fixed STALL_SECONDS watches every node: node 1's stall names node 1", async () => {
    const fixed = await agent("node1-fixed", { PET_NNODES: "2", PET_NODE_RANK: "1", STALL_SECONDS: "1" });
    await until("node 1's stalled event", async () => (await fixed.events("stalled")).length > 0, 60_000);
    expect((await fixed.events("stalled"))[0]?.data).toMatchObject({ node_rank: 1 });
    expect((await fixed.events("stalled"))[0]?.message).toContain("node 1's command");
    await writeFile(fixed.gate, "");
    expect(await fixed.exited).toBe(0);
  }, 90_000);
});
