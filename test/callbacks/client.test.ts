import { renameSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import pino from "pino";
import { afterEach, beforeAll, afterAll, describe, expect, it } from "vitest";
import { createCallbackClient, type CallbackClient } from "../../src/callbacks/index.ts";
import { Secret, type CallbackConfig } from "../../src/config/index.ts";
import { HeartbeatPayload, EventPayload, DonePayload } from "../../src/contract/index.ts";
import { freePort, startBackend, type TestBackend } from "./backend.ts";

const TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-token-value.sig";
const TRACEPARENT = `00-${"a".repeat(32)}-${"b".repeat(16)}-01`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "callbacks-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const open: { client: CallbackClient; backend?: TestBackend }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.client.close();
    await o.backend?.close();
  }
});

function logs() {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (c: Buffer) => (text += c.toString()));
  return { logger: pino({ level: "debug" }, stream), text: () => text };
}

function client(url: string, over: Partial<CallbackConfig> = {}, backend?: TestBackend, maxPendingReports?: number) {
  const l = logs();
  const c = createCallbackClient({
    config: {
      baseUrl: new URL(url),
      token: new Secret(TOKEN),
      tokenFile: undefined,
      heartbeatIntervalSeconds: 30,
      doneDeadlineSeconds: 5,
      requestTimeoutSeconds: 2,
      ...over,
    },
    jobId: "job-1",
    traceId: "trace-1",
    traceparent: TRACEPARENT,
    logger: l.logger,
    run: { attempt: 2, containerRestart: 1 },
    retryPolicy: { minDelayMs: 20, maxDelayMs: 200 },
    ...(maxPendingReports !== undefined && { maxPendingReports }),
  });
  open.push({ client: c, ...(backend !== undefined && { backend }) });
  return { c, logs: l };
}

describe("callback client against a real HTTP server", () => {
  it("posts heartbeat, event and done with the contract's payloads and headers", async () => {
    const b = await startBackend();
    const { c } = client(b.url, {}, b);
    c.start();
    c.event("started", "go", { node_rank: 0 });
    await b.waitFor((r) => r.length === 1);
    c.heartbeat({ epoch: 2, total_epochs: 4, progress: 0.5, metrics: { loss: 0.3 } });
    await b.waitFor((r) => r.length === 2);
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 1.5 })).toBe(true);

    expect(b.requests.map((r) => r.path)).toEqual([
      "/v1/jobs/job-1/event",
      "/v1/jobs/job-1/heartbeat",
      "/v1/jobs/job-1/done",
    ]);
    for (const r of b.requests) {
      expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(r.headers["content-type"]).toBe("application/json");
      expect(r.headers["idempotency-key"]).toMatch(UUID);
      expect(r.headers.traceparent).toBe(TRACEPARENT);
      expect(r.body).toMatchObject({ job_id: "job-1", trace_id: "trace-1" });
    }
    expect(EventPayload.parse(b.requests[0]?.body)).toMatchObject({
      type: "started",
      message: "go",
      data: { node_rank: 0 },
    });
    expect(HeartbeatPayload.parse(b.requests[1]?.body)).toMatchObject({
      epoch: 2,
      progress: 0.5,
      metrics: { loss: 0.3 },
    });
    expect(DonePayload.parse(b.requests[2]?.body)).toMatchObject({
      status: "succeeded",
      exit_code: 0,
      checkpoints: [],
    });
    expect(new Set(b.requests.map((r) => r.headers["idempotency-key"])).size).toBe(3);
  });

  it("retries 500/429/503 with the same Idempotency-Key, honouring Retry-After", async () => {
    const b = await startBackend(({ n }) =>
      n === 1
        ? { status: 500 }
        : n === 2
          ? { status: 429, retryAfter: "0" }
          : n === 3
            ? { status: 503 }
            : { status: 201 },
    );
    const { c } = client(b.url, {}, b);
    c.start();
    c.event("warning", "lr reduced");
    await b.waitFor((r) => r.length === 4);
    const keys = b.requests.map((r) => r.headers["idempotency-key"]);
    expect(new Set(keys).size).toBe(1);
    expect(b.requests.every((r) => r.body.type === "warning")).toBe(true);
  });

  it.each([401, 409])("does not retry a %d and logs CALLBACK_REJECTED", async (status) => {
    const b = await startBackend(({ kind }) => (kind === "event" ? { status } : { status: 200 }));
    const { c, logs: l } = client(b.url, {}, b);
    c.start();
    c.event("started");
    expect(await c.done({ status: "failed", exit_code: 1, duration_seconds: 0 })).toBe(true);
    expect(b.of("event")).toHaveLength(1);
    expect(l.text()).toContain("CALLBACK_REJECTED");
    expect(l.text()).not.toContain(TOKEN);
  });

  it("delivers every epoch heartbeat in order while the backend is slow, batching what waits", async () => {
    const b = await startBackend(({ n }) => (n === 1 ? "hang" : { status: 200 }));
    const { c } = client(b.url, { requestTimeoutSeconds: 0.3 }, b);
    c.start();
    c.heartbeat({ epoch: 1, metrics: {} });
    await b.waitFor((r) => r.length === 1);
    for (let e = 2; e <= 50; e++) c.heartbeat({ epoch: e, metrics: {} });
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    // The first request hung and timed out: epoch 1 is sent again (same key), then the 49 waiting ones as a batch.
    const batch = b.of("batch");
    expect(batch.length).toBeGreaterThanOrEqual(1);
    const delivered = [
      ...b.of("heartbeat").map((r) => r.body),
      ...batch.flatMap((r) => (r.body.reports as { payload: Record<string, unknown> }[]).map((x) => x.payload)),
    ].map((p) => p.epoch);
    expect([...new Set(delivered)].sort((x, y) => Number(x) - Number(y))).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    const batched = (batch[0]!.body.reports as { payload: { epoch: number } }[]).map((x) => x.payload.epoch);
    expect(batched).toEqual([...batched].sort((x, y) => x - y));
    expect(c.stats().delivered.heartbeat).toBe(50);
    expect(c.stats().dropped).toEqual({ heartbeat: 0, event: 0 });
  });

  it("keeps a batch under 256 KiB of body: large events split into several batches", async () => {
    const b = await startBackend(({ n }) => (n === 1 ? "hang" : { status: 200 }));
    const { c } = client(b.url, { requestTimeoutSeconds: 0.3 }, b);
    c.start();
    c.event("first");
    await b.waitFor((r) => r.length === 1);
    for (let i = 0; i < 40; i++) c.event(`big-${i}`, "x".repeat(16_000));
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    const batches = b.of("batch");
    expect(batches.length).toBeGreaterThanOrEqual(3);
    for (const r of batches) expect(JSON.stringify(r.body).length).toBeLessThan(300 * 1024);
    expect(c.stats().delivered.event).toBe(41);
  });

  /** Event data whose every serialisation is counted: what went out, and how often it was serialised. */
  function probe(): { data: Record<string, unknown>; calls: () => number } {
    let calls = 0;
    return {
      data: {
        probe: {
          toJSON: () => {
            calls += 1;
            return "v";
          },
        },
      },
      calls: () => calls,
    };
  }

  it("serialises each report once across retries, batches and retried batches", async () => {
    // The first event is refused until the others wait behind it, so they go as one batch, itself refused once.
    let queued = false;
    let batches = 0;
    const b = await startBackend(({ kind }) => {
      if (kind === "event") return queued ? { status: 200 } : { status: 503 };
      if (kind === "batch" && ++batches === 1) return { status: 503 };
      return { status: 200 };
    });
    const { c } = client(b.url, {}, b);
    c.start();
    const first = probe();
    c.event("first", undefined, first.data);
    await b.waitFor((r) => r.length === 1);
    const waiting = Array.from({ length: 5 }, () => probe());
    waiting.forEach((p, i) => c.event(`e${i}`, undefined, p.data));
    queued = true;
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);

    expect(b.of("event").filter((r) => r.body.type === "first").length).toBeGreaterThanOrEqual(2);
    expect(b.of("batch")).toHaveLength(2);
    for (const r of b.of("event")) expect(r.body.data).toEqual({ probe: "v" });
    expect(c.stats().delivered.event).toBe(6);
    expect([first, ...waiting].map((p) => p.calls())).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it("serialises each report once when a backend without batches gets them one by one", async () => {
    let queued = false;
    const b = await startBackend(({ kind }) => (kind === "batch" ? { status: 404 } : { status: queued ? 200 : 503 }));
    const { c } = client(b.url, {}, b);
    c.start();
    c.event("first");
    await b.waitFor((r) => r.length === 1);
    const waiting = Array.from({ length: 3 }, () => probe());
    waiting.forEach((p, i) => c.event(`e${i}`, undefined, p.data));
    queued = true;
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);

    expect(b.requests.filter((r) => r.kind === "batch")).toHaveLength(1);
    expect(b.requests.filter((r) => r.kind === "event" && r.body.type !== "first").map((r) => r.body.type)).toEqual([
      "e0",
      "e1",
      "e2",
    ]);
    expect(waiting.map((p) => p.calls())).toEqual([1, 1, 1]);
  });

  it("stamps every callback with the run number (attempt, container restart)", async () => {
    const b = await startBackend();
    const { c } = client(b.url, {}, b);
    c.start();
    c.event("started");
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    for (const r of b.requests) expect(r.body).toMatchObject({ attempt: 2, container_restart: 1 });
  });

  it("bounds the queue: reports beyond it are dropped and counted in done", async () => {
    const b = await startBackend(({ n }) => (n === 1 ? "hang" : { status: 200 }));
    const { c, logs: l } = client(b.url, { requestTimeoutSeconds: 0.5 }, b, 5);
    c.start();
    c.event("e0");
    await b.waitFor((r) => r.length === 1);
    for (let i = 1; i <= 20; i++) c.event(`e${i}`);
    c.heartbeat({ epoch: 1 });
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    const types = b.requests
      .flatMap((r) =>
        r.kind === "batch" ? (r.body.reports as { payload: { type: string } }[]).map((x) => x.payload) : [r.body],
      )
      .map((p) => p.type)
      .filter((t) => t !== undefined);
    expect([...new Set(types)]).toEqual(["e0", "e1", "e2", "e3", "e4"]);
    expect(b.of("done")[0]?.body.dropped_reports).toEqual({ event: 16, heartbeat: 1 });
    expect(l.text()).toContain("callback queue full");
  });

  it("takes a 2xx batch answer without per-report results as all accepted", async () => {
    const b = await startBackend(({ n }) => (n === 1 ? "hang" : { status: 200 }));
    const { c } = client(b.url, { requestTimeoutSeconds: 0.3 }, b);
    c.start();
    c.event("a");
    await b.waitFor((r) => r.length === 1);
    c.event("b");
    c.event("c");
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    expect(c.stats().delivered.event).toBe(3);
  });

  it("sends again with the fresh token after a 401 when CALLBACK_TOKEN_FILE was rotated", async () => {
    const file = join(dir, "rotated-token");
    await writeFile(file, "token-old\n");
    const b = await startBackend(({ n }) => (n === 1 ? { status: 401 } : { status: 200 }));
    const { c, logs: l } = client(b.url, { token: undefined, tokenFile: file }, b);
    // The rotation lands between reading the token and the backend's answer.
    b.setRule(({ n }) => {
      if (n === 1) {
        // Rotated before the 401 leaves, and atomically (as kubelet swaps a projected token): a write still in
        // flight, or a truncated file, would let the retry read the old token or none.
        writeFileSync(`${file}.tmp`, "token-new\n");
        renameSync(`${file}.tmp`, file);
        return { status: 401 };
      }
      return { status: 200 };
    });
    c.start();
    c.event("started");
    await b.waitFor((r) => r.length === 2);
    // The second request is either the event again with the new token, or a renewal: the event must follow.
    await b.waitFor((r) => r.some((x) => x.kind === "event" && x.headers.authorization === "Bearer token-new"));
    // The backend has the request before the client has the answer: done() waits for the delivery to settle.
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    expect(c.stats().delivered.event).toBe(1);
    expect(l.text()).not.toContain("CALLBACK_REJECTED");
  });

  it("re-reads CALLBACK_TOKEN_FILE before each request", async () => {
    const b = await startBackend();
    const file = join(dir, "token");
    await writeFile(file, "token-one\n");
    const { c } = client(b.url, { token: undefined, tokenFile: file }, b);
    c.start();
    c.event("a");
    await b.waitFor((r) => r.length === 1);
    await writeFile(file, "token-two\n");
    c.event("b");
    await b.waitFor((r) => r.length === 2);
    expect(b.requests.map((r) => r.headers.authorization)).toEqual(["Bearer token-one", "Bearer token-two"]);
  });

  it("delivers once a backend that is down for its first second comes up", async () => {
    const port = await freePort();
    const { c } = client(`http://127.0.0.1:${port}`, { doneDeadlineSeconds: 10 });
    c.start();
    c.event("started");
    await new Promise((r) => setTimeout(r, 1_000));
    const b = await startBackend(undefined, port);
    open.push({ client: c, backend: b });
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 1 })).toBe(true);
    expect(b.requests.map((r) => r.kind)).toEqual(["event", "done"]);
  });

  it("gives up on done at DONE_DEADLINE_SECONDS against an always-500 backend", async () => {
    const b = await startBackend(() => ({ status: 500 }));
    const { c, logs: l } = client(b.url, { doneDeadlineSeconds: 1 }, b);
    const t0 = Date.now();
    expect(await c.done({ status: "failed", exit_code: 1, duration_seconds: 0 })).toBe(false);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(4_000);
    expect(b.of("done").length).toBeGreaterThan(1);
    expect(new Set(b.of("done").map((r) => r.headers["idempotency-key"])).size).toBe(1);
    expect(l.text()).toContain("CALLBACK_FAILED");
  });

  it("gives up on done at the deadline against a backend that hangs, pending events first", async () => {
    const b = await startBackend(() => "hang");
    const { c } = client(b.url, { doneDeadlineSeconds: 1, requestTimeoutSeconds: 30 }, b);
    c.start();
    c.event("started");
    c.event("warning");
    const t0 = Date.now();
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(false);
    expect(Date.now() - t0).toBeLessThan(4_000);
  });
});
