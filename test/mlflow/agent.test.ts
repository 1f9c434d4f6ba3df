/**
 * The MLflow mirror in a real agent (`node bin/trainer-agent.js run -- train.sh`, a real child emitting epoch
 * reports), with the test callback backend and the test MLflow server of server.ts on 127.0.0.1. No MLflow server
 * can be installed here: server.ts enforces MLflow's documented REST request shapes (and refuses any other with
 * MLflow's 400 INVALID_PARAMETER_VALUE) in its place.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, startBackend, type TestBackend } from "../callbacks/backend.ts";
import { NEW_EXPERIMENT_RUN, startMlflow, type TestMlflow } from "./server.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const TRAIN_SH = fileURLToPath(new URL("../fixtures/children/train.sh", import.meta.url));
const TOKEN = "eyJhbGciOiJIUzI1NiJ9.mlflow-agent-test.c2ln";
const MLFLOW_TOKEN = "mlflow-secret-token-4711";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  exitedAt: number;
}

function agent(env: Record<string, string>, command: string[] = [TRAIN_SH], started?: (pid: number) => void) {
  const p = spawn(process.execPath, [BIN, "run", "--", ...command], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started?.(p.pid as number);
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise<Run>((resolve) =>
    p.on("close", (code) => resolve({ code, stdout, stderr, exitedAt: Date.now() })),
  );
}

const closers: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c.close();
});
async function backend(): Promise<TestBackend> {
  const b = await startBackend();
  closers.push(b);
  return b;
}
async function mlflow(): Promise<TestMlflow> {
  const s = await startMlflow();
  closers.push(s);
  return s;
}
const cb = (b: TestBackend) => ({ BACKEND_BASE_URL: b.url, JOB_ID: "job-7", CALLBACK_TOKEN: TOKEN, EPOCHS: "3" });

/** What the backend saw of the training: done's outcome and the heartbeats' epochs and metrics. */
function training(b: TestBackend) {
  const done = b.of("done").map((r) => r.body);
  return {
    done: done.map(({ status, exit_code, final_metrics, checkpoints, reason }) => ({
      status,
      exit_code,
      final_metrics,
      checkpoints,
      reason,
    })),
    heartbeats: b.of("heartbeat").map((r) => ({ epoch: r.body.epoch, metrics: r.body.metrics })),
  };
}
const warnings = (run: Run) =>
  run.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { level: string; msg: string; component?: string })
    .filter((l) => l.level === "warn" && l.component === "mlflow")
    .map((l) => l.msg);

describe("trainer-agent run with MLFLOW_TRACKING_URI", () => {
  it("mirrors the run: experiment, run, params, each epoch's metrics, end tags, FINISHED", async () => {
    const [b, s] = [await backend(), await mlflow()];
    const run = await agent({
      ...cb(b),
      MLFLOW_TRACKING_URI: s.url,
      MLFLOW_EXPERIMENT_NAME: "mnist",
      MLFLOW_TRACKING_TOKEN: MLFLOW_TOKEN,
    });
    expect(run.code).toBe(0);
    expect(warnings(run)).toEqual([]);

    const seq = s.sequence();
    expect(seq.slice(0, 4)).toEqual(NEW_EXPERIMENT_RUN);
    expect(seq.at(-1)).toBe("POST runs/update");
    expect(seq.slice(4, -1).every((x) => x === "POST runs/log-batch")).toBe(true);
    for (const r of s.requests) {
      expect(r.status === 200 || (r.endpoint === "experiments/get-by-name" && r.status === 404)).toBe(true);
      expect(r.headers.authorization).toBe(`Bearer ${MLFLOW_TOKEN}`);
    }
    const batches = s.requests.filter((r) => r.endpoint === "runs/log-batch").map((r) => r.body);
    expect(batches[0]).toMatchObject({ params: expect.any(Array) });
    expect(batches[0]?.metrics).toBeUndefined();
    expect(batches.at(-1)).toMatchObject({ tags: expect.any(Array) });
    expect(batches.at(-1)?.metrics).toBeUndefined();

    const [mrun] = [...s.runs.values()];
    expect(mrun?.runName).toBe("job-job-7");
    expect(mrun?.status).toBe("FINISHED");
    expect(mrun?.endTime).toBeGreaterThanOrEqual(mrun?.startTime ?? Infinity);
    expect(Object.fromEntries(mrun?.params ?? [])).toEqual({
      job_id: "job-7",
      framework: "python",
      nnodes: "1",
      nproc_per_node: "1",
    });
    expect(Object.fromEntries(mrun?.tags ?? [])).toMatchObject({
      "mlflow.runName": "job-job-7",
      "astrago.job_id": "job-7",
      "astrago.node_rank": "0",
      "astrago.status": "succeeded",
      "astrago.exit_code": "0",
    });
    expect(mrun?.metrics.map((m) => [m.key, m.value, m.step])).toEqual([
      ["loss", 0.1, 1],
      ["loss", 0.2, 2],
      ["loss", 0.3, 3],
    ]);
    // The token is a secret: never in the agent's own output.
    expect(run.stderr).not.toContain(MLFLOW_TOKEN);
    expect(run.stdout).not.toContain(MLFLOW_TOKEN);
  });

  it("ends the MLflow run FAILED with the exit code when the training fails", async () => {
    const [b, s] = [await backend(), await mlflow()];
    const run = await agent({ ...cb(b), MLFLOW_TRACKING_URI: s.url, EXIT_CODE: "3" });
    expect(run.code).toBe(3);
    const [mrun] = [...s.runs.values()];
    expect(mrun?.status).toBe("FAILED");
    expect(mrun?.tags.get("astrago.exit_code")).toBe("3");
    expect(mrun?.metrics).toHaveLength(3);
  });

  it("ends the MLflow run KILLED when the agent is told to stop", async () => {
    const [b, s] = [await backend(), await mlflow()];
    // One epoch, then wait for SIGTERM and leave as a training script that saves would.
    const child = [
      "/bin/sh",
      "-c",
      `echo '::trainer::{"epoch":1,"metrics":{"loss":0.5}}'; trap 'exit 0' TERM; while :; do sleep 0.05; done`,
    ];
    let pid = 0;
    const running = agent({ ...cb(b), MLFLOW_TRACKING_URI: s.url }, child, (p) => (pid = p));
    await s.waitFor((rs) => rs.some((r) => r.endpoint === "runs/log-batch" && Array.isArray(r.body.metrics)));
    process.kill(pid, "SIGTERM");
    const run = await running;
    expect(b.of("done")[0]?.body).toMatchObject({ status: "cancelled" });
    const [mrun] = [...s.runs.values()];
    expect(mrun?.status).toBe("KILLED");
    expect(mrun?.tags.get("astrago.status")).toBe("cancelled");
    expect(mrun?.tags.get("astrago.exit_code")).toBe(String(run.code));
    expect(mrun?.metrics.map((m) => [m.key, m.value, m.step])).toEqual([["loss", 0.5, 1]]);
  });

  it("MLflow down (refused, 503, hanging) changes nothing for the training, and the exit waits at most the flush", async () => {
    const baselineBackend = await backend();
    const baseline = await agent(cb(baselineBackend));
    expect(baseline.code).toBe(0);
    const expected = training(baselineBackend);
    expect(expected.heartbeats.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(expected.done).toHaveLength(1);

    const FLUSH_SECONDS = 1;
    for (const mode of ["refused", "503", "hang"] as const) {
      const b = await backend();
      let url: string;
      if (mode === "refused") url = `http://127.0.0.1:${await freePort()}`;
      else {
        const s = await mlflow();
        s.setFault(() => (mode === "hang" ? "hang" : { status: 503, errorCode: "TEMPORARILY_UNAVAILABLE" }));
        url = s.url;
      }
      const run = await agent({ ...cb(b), MLFLOW_TRACKING_URI: url, MLFLOW_FLUSH_SECONDS: String(FLUSH_SECONDS) });
      expect(run.code, mode).toBe(0);
      expect(training(b), mode).toEqual(expected);
      expect(run.stdout, mode).toBe(baseline.stdout.replace(/trace=\S+/, /trace=\S+/.exec(run.stdout)?.[0] ?? ""));
      // Retrying is warned at most once, however many failures (a hanging request may not fail before the end);
      // giving up at the flush deadline once, last.
      const w = warnings(run);
      expect(w.at(-1), mode).toBe(
        "MLflow did not take the end of the run within MLFLOW_FLUSH_SECONDS; the rest is abandoned",
      );
      expect(w.slice(0, -1), mode).toEqual(
        w.length > 1 ? ["MLflow request failed; retrying in the background (training goes on)"] : [],
      );
      // `done` and the MLflow flush start together: the exit comes at most about FLUSH_SECONDS after done (the
      // margin is for a loaded machine; an unbounded flush would hang here until the test's timeout).
      const doneAt = b.of("done")[0]?.at ?? 0;
      expect(run.exitedAt - doneAt, mode).toBeLessThan(FLUSH_SECONDS * 1000 + 9_000);
    }
  });
});
