/**
 * The MLflow mirror in process, with the real undici transport, against the test tracking server of server.ts
 * (no MLflow server can be installed here: that server enforces MLflow's documented REST request shapes, and
 * answers a wrong one with MLflow's 400 INVALID_PARAMETER_VALUE, which would turn the mirror off and fail these
 * tests).
 */
import { afterEach, describe, expect, it } from "vitest";
import { undiciTransport, type Transport } from "../../src/callbacks/transport.ts";
import { loadAgentConfig, type AgentConfig } from "../../src/config/index.ts";
import type { EpochReport } from "../../src/contract/report.ts";
import { createMlflowClient, createMlflowMirror, LOG_BATCH_LIMITS, logBatchBodies } from "../../src/mlflow/index.ts";
import { openMlflow } from "../../src/mlflow/open.ts";
import { freePort } from "../callbacks/backend.ts";
import { capturingLogger } from "../log/capture.ts";
import { NEW_EXPERIMENT_RUN, startMlflow, type TestMlflow } from "./server.ts";

const servers: TestMlflow[] = [];
const transports: Transport[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const t of transports.splice(0)) await t.close();
});
async function mlflow(): Promise<TestMlflow> {
  const s = await startMlflow();
  servers.push(s);
  return s;
}

const epoch = (n: number, metrics: Record<string, number>, extra: Partial<EpochReport> = {}): EpochReport => ({
  kind: "epoch",
  epoch: n,
  metrics,
  ...extra,
});

function config(env: Record<string, string>): AgentConfig {
  return loadAgentConfig({ JOB_ID: "job-7", ...env });
}

const FAST = { minDelayMs: 5, maxDelayMs: 20 };

async function mirrorOn(url: string, env: Record<string, string> = {}, flushSeconds = 10, maxQueued?: number) {
  const c = config({ MLFLOW_TRACKING_URI: url, ...env });
  const transport = undiciTransport();
  transports.push(transport);
  const { logger, warningLines } = await capturingLogger();
  const mirror = createMlflowMirror({
    client: createMlflowClient({ config: c.mlflow!, transport }),
    logger,
    flushSeconds,
    backoff: FAST,
    ...(maxQueued !== undefined && { maxQueued }),
    run: {
      experimentName: c.mlflow!.experimentName,
      experimentId: c.mlflow!.experimentId,
      runName: "job-7",
      startTime: 1_700_000_000_000,
      params: { framework: "pytorch", nnodes: "2" },
      tags: { "astrago.job_id": "job-7" },
    },
  });
  return { mirror, warnings: warningLines };
}

describe("MLflow request sequence", () => {
  it("creates the experiment when missing, the run, params, metrics per epoch, end tags and the status", async () => {
    const s = await mlflow();
    const { mirror, warnings } = await mirrorOn(s.url, { MLFLOW_EXPERIMENT_NAME: "mnist" });
    mirror.onReport(epoch(1, { loss: 0.5, acc: 0.8 }));
    mirror.onReport(epoch(2, { loss: 0.25 }, { step: 200 }));
    mirror.onReport({ kind: "checkpoint", path: "/ckpt/a" });
    await mirror.finish({ status: "FINISHED", tags: { "astrago.checkpoint_latest": "s3://b/checkpoints/job-7/a" } });

    expect(warnings()).toEqual([]);
    const seq = s.sequence();
    expect(seq.slice(0, 4)).toEqual(NEW_EXPERIMENT_RUN);
    expect(seq.at(-2)).toBe("POST runs/log-batch");
    expect(seq.at(-1)).toBe("POST runs/update");
    expect(s.requests.every((r) => r.status === 200 || r.endpoint === "experiments/get-by-name")).toBe(true);
    expect(s.requests[0]?.query).toEqual({ experiment_name: "mnist" });

    const [run] = [...s.runs.values()];
    expect(run?.experimentId).toBe(s.experiments.get("mnist")?.id);
    expect(run).toMatchObject({ runName: "job-7", startTime: 1_700_000_000_000, status: "FINISHED" });
    expect(run?.endTime).toBeGreaterThanOrEqual(1_700_000_000_000);
    expect(Object.fromEntries(run?.params ?? [])).toEqual({ framework: "pytorch", nnodes: "2" });
    expect(run?.tags.get("astrago.job_id")).toBe("job-7");
    expect(run?.tags.get("astrago.checkpoint_latest")).toBe("s3://b/checkpoints/job-7/a");
    expect(run?.metrics.map(({ key, value, step }) => [key, value, step])).toEqual([
      ["loss", 0.5, 1],
      ["acc", 0.8, 1],
      ["loss", 0.25, 200],
    ]);
    for (const m of run?.metrics ?? []) expect(Number.isInteger(m.timestamp)).toBe(true);
    expect(mirror.runId).toBe(run?.runId);
  });

  it("uses an existing experiment (get-by-name only) and MLFLOW_EXPERIMENT_ID without any lookup", async () => {
    const s = await mlflow();
    s.experiments.set("astrago-trainer", { id: "42", lifecycle: "active" });
    const a = await mirrorOn(s.url);
    await a.mirror.finish({ status: "FAILED", tags: {} });
    expect(s.sequence()).toEqual([
      "GET experiments/get-by-name",
      "POST runs/create",
      "POST runs/log-batch",
      "POST runs/update",
    ]);
    expect(s.requests[0]?.query.experiment_name).toBe("astrago-trainer");
    expect(s.requests[1]?.body.experiment_id).toBe("42");

    s.requests.length = 0;
    const b = await mirrorOn(s.url, { MLFLOW_EXPERIMENT_ID: "42" });
    await b.mirror.finish({ status: "KILLED", tags: {} });
    expect(s.sequence()).toEqual(["POST runs/create", "POST runs/log-batch", "POST runs/update"]);
    expect([...s.runs.values()].map((r) => r.status)).toEqual(["FAILED", "KILLED"]);
  });

  it("mirrors rank 0 only and skips what MLflow would refuse, warning once", async () => {
    const s = await mlflow();
    const { mirror, warnings } = await mirrorOn(s.url);
    mirror.onReport(epoch(1, { loss: 1 }, { rank: 1 }));
    mirror.onReport(epoch(1, { loss: 0.9, "bad name!": 1, "../up": 2 }, { rank: 0 }));
    mirror.onReport(epoch(2, { loss: 0.8, "bad name!": 1 }));
    // A plugin's report with a step MLflow cannot store (not an int64) falls back to the epoch.
    mirror.onReport(epoch(3, { loss: 0.7 }, { step: 2.5 }));
    await mirror.finish({ status: "FINISHED", tags: {} });
    expect([...s.runs.values()][0]?.metrics.map((m) => [m.value, m.step])).toEqual([
      [0.9, 1],
      [0.8, 2],
      [0.7, 3],
    ]);
    expect(warnings().filter((w) => /does not take/.test(w.msg))).toHaveLength(1);
    expect(warnings().find((w) => /not mirrored to MLflow/.test(w.msg))).toMatchObject({ skipped_metrics: 3 });
  });
});

describe("MLflow batching", () => {
  it("splits params, tags and metrics within MLflow's log-batch limits, order kept", () => {
    const metrics = Array.from({ length: 2500 }, (_, i) => ({ key: "m", value: i, timestamp: 1, step: i }));
    const params = Array.from({ length: 150 }, (_, i) => ({ key: `p${i}`, value: String(i) }));
    const tags = Array.from({ length: 120 }, (_, i) => ({ key: `t${i}`, value: String(i) }));
    const bodies = logBatchBodies("r1", { metrics, params, tags });
    for (const b of bodies) {
      const [m, p, t] = [b.metrics?.length ?? 0, b.params?.length ?? 0, b.tags?.length ?? 0];
      expect(m).toBeLessThanOrEqual(LOG_BATCH_LIMITS.metrics);
      expect(p).toBeLessThanOrEqual(LOG_BATCH_LIMITS.params);
      expect(t).toBeLessThanOrEqual(LOG_BATCH_LIMITS.tags);
      expect(m + p + t).toBeLessThanOrEqual(LOG_BATCH_LIMITS.total);
      expect(b.run_id).toBe("r1");
    }
    expect(bodies.flatMap((b) => b.metrics ?? [])).toEqual(metrics);
    expect(bodies.flatMap((b) => b.params ?? [])).toEqual(params);
    expect(bodies.flatMap((b) => b.tags ?? [])).toEqual(tags);
    expect(bodies).toHaveLength(3);
  });

  it("sends many metrics queued while the run is being created in few log-batch requests", async () => {
    const s = await mlflow();
    // runs/create is answered once every report is queued: the metrics pile up as behind a slow server.
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    s.setFault((r) => (r.endpoint === "runs/create" ? { hold } : undefined));
    const { mirror, warnings } = await mirrorOn(s.url);
    await s.waitFor((rs) => rs.some((r) => r.endpoint === "runs/create"));
    for (let e = 1; e <= 25; e++)
      mirror.onReport(epoch(e, Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`m${i}`, e + i / 1000]))));
    release();
    await mirror.finish({ status: "FINISHED", tags: { "astrago.status": "succeeded" } });

    expect(warnings()).toEqual([]);
    const batches = s.requests.filter((r) => r.endpoint === "runs/log-batch");
    // params, 1000 + 1000 + 500 metrics, the end tags.
    expect(
      batches.map((b) =>
        [b.body.params, b.body.metrics, b.body.tags].map((x) => (x as unknown[] | undefined)?.length ?? 0),
      ),
    ).toEqual([
      [2, 0, 0],
      [0, 1000, 0],
      [0, 1000, 0],
      [0, 500, 0],
      [0, 0, 1],
    ]);
    const run = [...s.runs.values()][0];
    expect(run?.metrics).toHaveLength(2500);
    expect(run?.metrics.filter((m) => m.key === "m7").map((m) => m.step)).toEqual(
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
  });

  it("drops metrics beyond the queue's bound, counts them and warns once", async () => {
    const s = await mlflow();
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    s.setFault((r) => (r.endpoint === "runs/create" ? { hold } : undefined));
    const { mirror, warnings } = await mirrorOn(s.url, {}, 10, 5);
    await s.waitFor((rs) => rs.some((r) => r.endpoint === "runs/create"));
    for (let e = 1; e <= 4; e++) mirror.onReport(epoch(e, { a: e, b: e }));
    release();
    await mirror.finish({ status: "FINISHED", tags: {} });
    expect([...s.runs.values()][0]?.metrics.map((m) => [m.key, m.step])).toEqual([
      ["a", 1],
      ["b", 1],
      ["a", 2],
      ["b", 2],
      ["a", 3],
    ]);
    expect(warnings().filter((w) => /not keeping up/.test(w.msg))).toHaveLength(1);
    expect(warnings().find((w) => /not mirrored to MLflow/.test(w.msg))).toMatchObject({ dropped_metrics: 3 });
  });
});

describe("MLflow auth", () => {
  const headersOf = async (env: Record<string, string>) => {
    const s = await mlflow();
    const { mirror } = await mirrorOn(s.url, env);
    await mirror.finish({ status: "FINISHED", tags: {} });
    return s.requests.map((r) => r.headers.authorization);
  };

  it("sends MLFLOW_TRACKING_TOKEN as Bearer, USERNAME/PASSWORD as Basic (preferred), nothing without them", async () => {
    const bearer = await headersOf({ MLFLOW_TRACKING_TOKEN: "mlflow-token-123" });
    expect(bearer.length).toBeGreaterThanOrEqual(4);
    for (const h of bearer) expect(h).toBe("Bearer mlflow-token-123");

    const basic = await headersOf({
      MLFLOW_TRACKING_TOKEN: "mlflow-token-123",
      MLFLOW_TRACKING_USERNAME: "alice",
      MLFLOW_TRACKING_PASSWORD: "pw-secret-77",
    });
    for (const h of basic) expect(h).toBe(`Basic ${Buffer.from("alice:pw-secret-77").toString("base64")}`);

    for (const h of await headersOf({})) expect(h).toBeUndefined();
  });
});

describe("MLflow failures", () => {
  it("a 4xx turns the mirror off with one warning naming MLflow's error_code; nothing more is sent", async () => {
    const s = await mlflow();
    s.setFault((r) => (r.endpoint === "runs/create" ? { status: 403, errorCode: "PERMISSION_DENIED" } : undefined));
    const { mirror, warnings } = await mirrorOn(s.url);
    await s.waitFor((rs) => rs.some((r) => r.endpoint === "runs/create" && r.status === 403));
    mirror.onReport(epoch(1, { loss: 1 }));
    await mirror.finish({ status: "FINISHED", tags: {} });
    expect(s.sequence()).toEqual(["GET experiments/get-by-name", "POST experiments/create", "POST runs/create"]);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ request: "runs/create", status: 403, error_code: "PERMISSION_DENIED" });
    expect(warnings()[0]?.msg).toBe(
      "MLflow refused runs/create (PERMISSION_DENIED); the mirror is off for the rest of the run (training goes on)",
    );
  });

  it("a deleted experiment of that name is said so once, and no run is made in it", async () => {
    const s = await mlflow();
    s.experiments.set("astrago-trainer", { id: "5", lifecycle: "deleted" });
    const { mirror, warnings } = await mirrorOn(s.url);
    await mirror.finish({ status: "FINISHED", tags: {} });
    expect(s.sequence()).toEqual(["GET experiments/get-by-name"]);
    expect(warnings().map((w) => w.msg)).toEqual([
      "MLflow refused experiments/get-by-name (EXPERIMENT_DELETED); the mirror is off for the rest of the run (training goes on)",
    ]);
  });

  it("a request of the wrong shape is refused by the test server (the check these tests rely on)", async () => {
    const s = await mlflow();
    const c = config({ MLFLOW_TRACKING_URI: s.url });
    const transport = undiciTransport();
    transports.push(transport);
    const client = createMlflowClient({ config: c.mlflow!, transport });
    const signal = AbortSignal.timeout(10_000);
    const { experiment_id } = await client.post("experiments/create", { name: "x" }, signal);
    const bad = [
      { experiment_id, start_time: "1700000000000" },
      { experiment_id: 1 },
      { experiment_id, tags: [{ key: "k", value: 1 }] },
      { experiment_id, runName: "camelCase" },
    ];
    for (const body of bad)
      await expect(client.post("runs/create", body, signal)).rejects.toMatchObject({
        status: 400,
        errorCode: "INVALID_PARAMETER_VALUE",
      });
    const { run } = (await client.post("runs/create", { experiment_id }, signal)) as {
      run: { info: { run_id: string } };
    };
    const run_id = run.info.run_id;
    const badBatches = [
      { run_id, metrics: [{ key: "a", value: "1", timestamp: 1, step: 0 }] },
      { run_id, metrics: [{ key: "a", value: 1, timestamp: 1.5, step: 0 }] },
      { run_id, params: [{ key: "a", value: 1 }] },
      { run_id, metrics: [{ key: "bad name!", value: 1, timestamp: 1, step: 0 }] },
      { run_id, tags: [{ key: "../up", value: "x" }] },
      { run_id, metrics: Array.from({ length: 1001 }, () => ({ key: "a", value: 1, timestamp: 1, step: 0 })) },
    ];
    for (const body of badBatches)
      await expect(client.post("runs/log-batch", body, signal)).rejects.toMatchObject({ status: 400 });
    await client.post("runs/log-batch", { run_id, params: [{ key: "lr", value: "0.1" }] }, signal);
    await client.post("runs/log-batch", { run_id, params: [{ key: "lr", value: "0.1" }] }, signal);
    await expect(
      client.post("runs/log-batch", { run_id, params: [{ key: "lr", value: "0.2" }] }, signal),
    ).rejects.toMatchObject({ status: 400, errorCode: "INVALID_PARAMETER_VALUE" });
    await expect(client.post("runs/update", { run_id, status: "DONE" }, signal)).rejects.toMatchObject({ status: 400 });
  });

  it("retries 503 and 429 (honouring Retry-After) and delivers everything", async () => {
    const s = await mlflow();
    let failures = 0;
    s.setFault((r) => {
      if (r.endpoint !== "runs/log-batch" || failures >= 3) return undefined;
      failures += 1;
      return failures === 2 ? { status: 429, errorCode: "REQUEST_LIMIT_EXCEEDED", retryAfter: "0" } : { status: 503 };
    });
    const { mirror, warnings } = await mirrorOn(s.url);
    mirror.onReport(epoch(1, { loss: 1 }));
    mirror.onReport(epoch(2, { loss: 0.5 }));
    await mirror.finish({ status: "FINISHED", tags: {} });
    const run = [...s.runs.values()][0];
    expect(run?.status).toBe("FINISHED");
    expect(run?.metrics.map((m) => m.value)).toEqual([1, 0.5]);
    expect(failures).toBe(3);
    expect(warnings().map((w) => w.msg)).toEqual([
      "MLflow request failed; retrying in the background (training goes on)",
    ]);
  });

  it("a server that is not there, or hangs, holds finish for MLFLOW_FLUSH_SECONDS at most", async () => {
    for (const target of ["refused", "hang"] as const) {
      let url: string;
      if (target === "refused") url = `http://127.0.0.1:${await freePort()}`;
      else {
        const s = await mlflow();
        s.setFault(() => "hang");
        url = s.url;
      }
      const { mirror, warnings } = await mirrorOn(url, {}, 0.5);
      mirror.onReport(epoch(1, { loss: 1 }));
      const started = Date.now();
      await mirror.finish({ status: "FINISHED", tags: {} });
      // The bound is the flush deadline (0.5 s); a wide margin for a loaded machine, far below a request's 10 s.
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(warnings().map((w) => w.msg)).toContain(
        "MLflow did not take the end of the run within MLFLOW_FLUSH_SECONDS; the rest is abandoned",
      );
      expect(mirror.runId).toBeUndefined();
    }
  });
});

describe("openMlflow", () => {
  it("mirrors on node 0 only, and names the run and params from the job", async () => {
    const s = await mlflow();
    const { logger } = await capturingLogger();
    const base = { MLFLOW_TRACKING_URI: s.url, PET_NNODES: "2", DATASET_ID: "mnist" };
    expect(
      openMlflow({
        config: config({ ...base, PET_NODE_RANK: "1" }),
        logger,
        traceId: "t".repeat(32),
        framework: "pytorch",
        startedAt: 1,
      }),
    ).toBeUndefined();
    const m = openMlflow({
      config: config({ ...base, PET_NODE_RANK: "0", JOBSET_RESTART_ATTEMPT: "2", S3_BUCKET: "bkt" }),
      logger,
      traceId: "t".repeat(32),
      framework: "pytorch",
      startedAt: 1_700_000_000_000,
    });
    await m?.close({
      status: "cancelled",
      exitCode: 143,
      checkpoints: [
        { key: "checkpoints/job-7/a.pt", bytes: 1 },
        { key: "checkpoints/job-7/b.pt", bytes: 1 },
      ],
    });
    const [run] = [...s.runs.values()];
    expect(run?.runName).toBe("job-job-7 (attempt 2)");
    expect(run?.status).toBe("KILLED");
    expect(Object.fromEntries(run?.params ?? [])).toMatchObject({
      job_id: "job-7",
      framework: "pytorch",
      nnodes: "2",
      dataset_id: "mnist",
      storage_type: "s3",
    });
    expect(Object.fromEntries(run?.tags ?? [])).toMatchObject({
      "mlflow.runName": "job-job-7 (attempt 2)",
      "astrago.job_id": "job-7",
      "astrago.node_rank": "0",
      "astrago.restart_attempt": "2",
      "astrago.status": "cancelled",
      "astrago.exit_code": "143",
      "astrago.checkpoint_latest": "s3://bkt/checkpoints/job-7/b.pt",
      "astrago.checkpoints": "s3://bkt/checkpoints/job-7/a.pt\ns3://bkt/checkpoints/job-7/b.pt",
    });
  });
});
