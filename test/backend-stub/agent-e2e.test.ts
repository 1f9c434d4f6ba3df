/**
 * The real agent (`node bin/trainer-agent.js run -- ...`, a real child) against the real backend stub over HTTP:
 * the job ends SUCCEEDED or FAILED with the agent's heartbeats, events and done; the stub's refusals (401 for a
 * token of another job, 409 for a cancelled job) never change the training's exit code.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStub, type Running } from "./helpers.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const TRAIN = fileURLToPath(new URL("../fixtures/children/train.sh", import.meta.url));

function runAgent(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, "run", "--", TRAIN], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      HEARTBEAT_INTERVAL_SECONDS: "60",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

let s: Running;
beforeAll(async () => {
  s = await startStub();
});
afterAll(async () => {
  await s.stop();
});

describe("trainer-agent run -> backend stub", () => {
  it("a successful run ends SUCCEEDED with its heartbeats, metric series, events and done", async () => {
    const job = await s.stub.createJob({ name: "agent e2e" });
    const run = await runAgent({
      BACKEND_BASE_URL: s.url,
      JOB_ID: job.id,
      CALLBACK_TOKEN: job.token,
      EPOCHS: "4",
      EPOCH_SLEEP: "0.05",
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout + run.stderr).not.toContain(job.token);
    const view = (await s.stub.getJob(job.id))!;
    expect(view.state).toBe("SUCCEEDED");
    expect(view.transitions.map((t) => t.to)).toEqual(["PENDING", "RUNNING", "SUCCEEDED"]);
    expect(view.heartbeats.length).toBeGreaterThan(0);
    expect(view.heartbeats.at(-1)).toMatchObject({ epoch: 4, total_epochs: 4, metrics: { loss: 0.4 } });
    expect(view.metric_series.x.at(-1)).toBe(4);
    expect(view.metric_series.series.loss?.at(-1)).toBe(0.4);
    expect(view.events.map((e) => e.type)).toEqual(expect.arrayContaining(["started", "warning"]));
    expect(view.done).toMatchObject({ status: "succeeded", exit_code: 0 });
    expect(view.trace_id).toBe(view.done?.trace_id);
  });

  it("a failing run ends FAILED with the child's exit code", async () => {
    const job = await s.stub.createJob();
    const run = await runAgent({
      BACKEND_BASE_URL: s.url,
      JOB_ID: job.id,
      CALLBACK_TOKEN: job.token,
      EPOCHS: "1",
      EXIT_CODE: "3",
    });
    expect(run.code).toBe(3);
    const view = (await s.stub.getJob(job.id))!;
    expect(view.state).toBe("FAILED");
    expect(view.done).toMatchObject({ status: "failed", exit_code: 3 });
  });

  it("a token of another job is refused (401) and training still succeeds", async () => {
    const job = await s.stub.createJob();
    const other = await s.stub.createJob();
    const run = await runAgent({ BACKEND_BASE_URL: s.url, JOB_ID: job.id, CALLBACK_TOKEN: other.token, EPOCHS: "2" });
    expect(run.code).toBe(0);
    for (const id of [job.id, other.id]) {
      const view = (await s.stub.getJob(id))!;
      expect(view.state).toBe("PENDING");
      expect(view.heartbeats).toHaveLength(0);
      expect(view.events).toHaveLength(0);
    }
  });

  it("a job cancelled on the backend refuses the reports (409); training exits with its own code", async () => {
    const job = await s.stub.createJob();
    await s.stub.cancelJob(job.id, "user cancelled");
    const run = await runAgent({ BACKEND_BASE_URL: s.url, JOB_ID: job.id, CALLBACK_TOKEN: job.token, EPOCHS: "2" });
    expect(run.code).toBe(0);
    const view = (await s.stub.getJob(job.id))!;
    expect(view.state).toBe("CANCELLED");
    expect(view.heartbeats).toHaveLength(0);
    expect(view.done).toBeNull();
  });
});
