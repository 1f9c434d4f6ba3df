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

function client(
  url: string,
  over: Partial<CallbackConfig> = {},
  backend?: TestBackend,
  maxRetries = 5,
  maxPendingEvents?: number,
) {
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
    retryPolicy: { minDelayMs: 20, maxDelayMs: 200, maxRetries },
    ...(maxPendingEvents !== undefined && { maxPendingEvents }),
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

  it("keeps only the newest pending heartbeat while the backend is slow", async () => {
    const b = await startBackend(({ n }) => (n === 1 ? "hang" : { status: 200 }));
    const { c } = client(b.url, { requestTimeoutSeconds: 0.3 }, b);
    c.start();
    c.heartbeat({ epoch: 1, metrics: {} });
    await b.waitFor((r) => r.length === 1);
    for (let e = 2; e <= 50; e++) c.heartbeat({ epoch: e, metrics: {} });
    await b.waitFor((r) => r.some((x) => x.body.epoch === 50));
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    const epochs = b.of("heartbeat").map((r) => r.body.epoch);
    expect(epochs[0]).toBe(1);
    expect(epochs.at(-1)).toBe(50);
    expect(epochs.filter((e) => e !== 1 && e !== 50)).toEqual([]);
  });

  it("bounds the event queue: the oldest waiting events give way, with a warning", async () => {
    const b = await startBackend(({ n }) => (n === 1 ? "hang" : { status: 200 }));
    const { c, logs: l } = client(b.url, { requestTimeoutSeconds: 0.5 }, b, 5, 5);
    c.start();
    c.event("e0");
    await b.waitFor((r) => r.length === 1);
    for (let i = 1; i <= 20; i++) c.event(`e${i}`);
    expect(await c.done({ status: "succeeded", exit_code: 0, duration_seconds: 0 })).toBe(true);
    const types = b.of("event").map((r) => r.body.type);
    expect(types.filter((t) => t !== "e0")).toEqual(["e16", "e17", "e18", "e19", "e20"]);
    expect(l.text()).toContain("callback queue full");
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
    const { c } = client(`http://127.0.0.1:${port}`, { doneDeadlineSeconds: 10 }, undefined, 100);
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
