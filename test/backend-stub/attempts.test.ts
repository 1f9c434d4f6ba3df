/**
 * Attempts and batches on the real backend stub over HTTP: a failed attempt with restarts left does not end the
 * job, an older attempt's reports are refused once a newer one reported, the budget ends the job, a batch is
 * applied in order with one answer per report, and a restarted stub rebuilds all of it from its journal.
 */
import { randomUUID } from "node:crypto";
import jwt from "jsonwebtoken";
import { afterEach, describe, expect, it } from "vitest";
import { batchPath, callbackPath } from "../../src/contract/index.ts";
import { SECRET, call, doneBody, eventBody, heartbeatBody, startStub, type Running } from "./helpers.ts";

const running: Running[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

async function stub(options: Parameters<typeof startStub>[0] = {}): Promise<Running> {
  const s = await startStub(options);
  running.push(s);
  return s;
}

async function post(s: Running, token: string, jobId: string, kind: "heartbeat" | "event" | "done", body: object) {
  return call(s.url, "POST", callbackPath(jobId, kind), {
    token,
    body,
    headers: { "idempotency-key": randomUUID() },
  });
}

describe("attempts", () => {
  it("a failed attempt with restarts left keeps the job; the next attempt's reports are accepted; it succeeds", async () => {
    const s = await stub();
    const created = await call(s.url, "POST", "/v1/jobs", { body: { name: "restarts", max_restarts: 2 } });
    expect(created.status).toBe(201);
    const { id, token } = created.body as { id: string; token: string };
    expect((await post(s, token, id, "heartbeat", heartbeatBody(id, { epoch: 1, metrics: { loss: 1 } }))).status).toBe(
      200,
    );
    const failed = await post(s, token, id, "done", doneBody(id, "failed", { reason: "CUDA error", attempt: 0 }));
    expect(failed.status).toBe(200);
    expect(failed.body.state).toBe("RUNNING");
    let view = (await call(s.url, "GET", `/v1/jobs/${id}`)).body;
    expect(view.state).toBe("RUNNING");
    expect(view.transitions.map((t: { cause: string }) => t.cause)).toContain(
      "attempt 0 failed: CUDA error (1 restarts left)",
    );

    const hb2 = heartbeatBody(id, { epoch: 2, metrics: { loss: 0.5 }, attempt: 1 });
    expect((await post(s, token, id, "heartbeat", hb2)).status).toBe(200);
    // Attempt 0 is over once attempt 1 reported: a straggler of it is refused.
    const late = await post(s, token, id, "heartbeat", heartbeatBody(id, { epoch: 1, attempt: 0 }));
    expect(late.status).toBe(409);
    expect(late.body.error.message).toContain("superseded by attempt 1");
    const ok = await post(s, token, id, "done", doneBody(id, "succeeded", { attempt: 1 }));
    expect(ok.body.state).toBe("SUCCEEDED");

    view = (await call(s.url, "GET", `/v1/jobs/${id}`)).body;
    expect(view.max_restarts).toBe(2);
    expect(view.attempt).toBe(1);
    expect(view.attempts).toMatchObject([
      { attempt: 0, status: "failed", reason: "CUDA error" },
      { attempt: 1, status: "succeeded" },
    ]);
    expect(view.transitions.map((t: { cause: string }) => t.cause)).toContain("attempt 1 started");
    // One continuous curve across the attempts.
    expect(view.metric_series).toMatchObject({ x: [1, 2], series: { loss: [1, 0.5] } });
  });

  it("the budget spent ends the job FAILED with the last attempt's reason", async () => {
    const s = await stub();
    const { id, token } = (await call(s.url, "POST", "/v1/jobs", { body: { max_restarts: 1 } })).body;
    expect((await post(s, token, id, "done", doneBody(id, "failed", { reason: "first", attempt: 0 }))).body.state).toBe(
      "RUNNING",
    );
    const last = await post(s, token, id, "done", doneBody(id, "failed", { reason: "second", attempt: 1 }));
    expect(last.body.state).toBe("FAILED");
    const view = (await call(s.url, "GET", `/v1/jobs/${id}`)).body;
    expect(view.done).toMatchObject({ reason: "second", attempt: 1 });
  });

  it("without max_restarts the first failure ends the job, as before", async () => {
    const s = await stub();
    const { id, token } = (await call(s.url, "POST", "/v1/jobs", { body: {} })).body;
    expect((await post(s, token, id, "done", doneBody(id, "failed"))).body.state).toBe("FAILED");
  });

  it("rejects a bad max_restarts naming the field", async () => {
    const s = await stub();
    const res = await call(s.url, "POST", "/v1/jobs", { body: { max_restarts: -1 } });
    expect(res.status).toBe(400);
    expect(res.body.error.field).toBe("max_restarts");
  });

  it("a restarted stub rebuilds attempts from its journal", async () => {
    const first = await startStub();
    const { id, token } = (await call(first.url, "POST", "/v1/jobs", { body: { max_restarts: 3 } })).body;
    await post(first, token, id, "done", doneBody(id, "failed", { reason: "oom", attempt: 0 }));
    await post(first, token, id, "heartbeat", heartbeatBody(id, { epoch: 3, attempt: 1 }));
    await first.stub.close();
    const second = await stub({ dataDir: first.dataDir });
    const view = (await call(second.url, "GET", `/v1/jobs/${id}`)).body;
    expect(view.state).toBe("RUNNING");
    expect(view.attempts.map((a: { attempt: number; status: string }) => [a.attempt, a.status])).toEqual([
      [0, "failed"],
      [1, "running"],
    ]);
    expect((await post(second, token, id, "heartbeat", heartbeatBody(id, { attempt: 0 }))).status).toBe(409);
  });
});

describe("batch", () => {
  it("applies reports in order with one answer each; a repeated key is applied once", async () => {
    const s = await stub();
    const { id, token } = (await call(s.url, "POST", "/v1/jobs", { body: {} })).body;
    const key = randomUUID();
    const reports = [
      { kind: "event", idempotency_key: randomUUID(), payload: eventBody(id, "started") },
      ...[1, 2, 3].map((epoch) => ({
        kind: "heartbeat",
        idempotency_key: epoch === 2 ? key : randomUUID(),
        payload: heartbeatBody(id, { epoch, metrics: { loss: 1 / epoch } }),
      })),
      { kind: "heartbeat", idempotency_key: randomUUID(), payload: { job_id: id } }, // invalid: no trace_id
    ];
    const res = await call(s.url, "POST", batchPath(id), { token, body: { job_id: id, reports } });
    expect(res.status).toBe(200);
    expect(res.body.results.map((r: { status: number }) => r.status)).toEqual([200, 200, 200, 200, 400]);
    expect(res.body.results[4].error.field).toBe("trace_id");
    // The same batch again (a retry): every report is answered as before, nothing applied twice.
    const again = await call(s.url, "POST", batchPath(id), {
      token,
      body: { job_id: id, reports: reports.slice(0, 4) },
    });
    expect(again.body.results.map((r: { status: number }) => r.status)).toEqual([200, 200, 200, 200]);
    const view = (await call(s.url, "GET", `/v1/jobs/${id}`)).body;
    expect(view.state).toBe("RUNNING");
    expect(view.heartbeats.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3]);
    expect(view.events.map((e: { type: string }) => e.type)).toEqual(["started"]);
  });

  it("needs a valid token and a body naming the job", async () => {
    const s = await stub();
    const { id, token } = (await call(s.url, "POST", "/v1/jobs", { body: {} })).body;
    const body = { job_id: id, reports: [{ kind: "event", idempotency_key: "k", payload: eventBody(id, "x") }] };
    expect((await call(s.url, "POST", batchPath(id), { body })).status).toBe(401);
    const wrong = await call(s.url, "POST", batchPath(id), { token, body: { ...body, job_id: "other" } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.field).toBe("job_id");
    const empty = await call(s.url, "POST", batchPath(id), { token, body: { job_id: id, reports: [] } });
    expect(empty.status).toBe(400);
    expect(empty.body.error.field).toBe("reports");
  });
});

describe("token renewal after expiry", () => {
  it("renews a token expired less than the grace ago, not one expired longer ago", async () => {
    const s = await stub({ renewGraceSeconds: 60 });
    const { id } = (await call(s.url, "POST", "/v1/jobs", { body: {} })).body;
    const at = Math.floor(Date.now() / 1000);
    const sign = (exp: number) => jwt.sign({ job_id: id, iat: exp - 10, exp }, SECRET, { algorithm: "HS256" });
    const recent = await call(s.url, "POST", `/v1/jobs/${id}/token`, { token: sign(at - 5) });
    expect(recent.status).toBe(200);
    expect(typeof recent.body.token).toBe("string");
    // With no admin token the stub is open to operators, so "too old" is checked on a stub with one.
    const guarded = await stub({ renewGraceSeconds: 60, adminToken: "admin-secret-0123456789" });
    const job = await guarded.stub.createJob({});
    const old = jwt.sign({ job_id: job.id, iat: at - 200, exp: at - 100 }, SECRET, { algorithm: "HS256" });
    const refused = await call(guarded.url, "POST", `/v1/jobs/${job.id}/token`, { token: old });
    expect(refused.status).toBe(401);
    const fresh = jwt.sign({ job_id: job.id, iat: at - 20, exp: at - 10 }, SECRET, { algorithm: "HS256" });
    expect((await call(guarded.url, "POST", `/v1/jobs/${job.id}/token`, { token: fresh })).status).toBe(200);
  });
});
