/**
 * The callback API over real HTTP against an in-process stub: JWT checks (every refusal is 401 and records
 * nothing), the state machine (every illegal transition is 409), idempotency, body validation and the body cap.
 */
import { generateKeyPairSync } from "node:crypto";
import { request } from "node:http";
import jwt from "jsonwebtoken";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callbackPath } from "../../src/contract/index.ts";
import { SECRET, call, doneBody, eventBody, heartbeatBody, startStub, type Running } from "./helpers.ts";

let s: Running;
beforeAll(async () => {
  s = await startStub({ maxBodyBytes: 4096 });
});
afterAll(async () => {
  await s.stop();
});

type Step = [string, string, Record<string, unknown> | undefined];
const nowSec = (): number => Math.floor(Date.now() / 1000);
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");

describe("JWT verification", () => {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const claims = (jobId: string) => ({ job_id: jobId, iat: nowSec(), exp: nowSec() + 600 });

  const cases: Array<[string, (jobId: string) => string | undefined, string]> = [
    ["missing", () => undefined, "token_missing"],
    ["malformed (not a JWT)", () => "not-a-jwt", "token_malformed"],
    ["malformed (garbage segments)", () => "aaa.bbb.ccc", "token_malformed"],
    [
      "signed with another secret",
      (id) => jwt.sign(claims(id), "another-secret", { algorithm: "HS256" }),
      "token_bad_signature",
    ],
    [
      "HS512 with the right secret",
      (id) => jwt.sign(claims(id), SECRET, { algorithm: "HS512" }),
      "token_bad_algorithm",
    ],
    [
      "HS384 with the right secret",
      (id) => jwt.sign(claims(id), SECRET, { algorithm: "HS384" }),
      "token_bad_algorithm",
    ],
    ["RS256", (id) => jwt.sign(claims(id), privateKey, { algorithm: "RS256" }), "token_bad_algorithm"],
    ["alg none", (id) => `${b64({ alg: "none", typ: "JWT" })}.${b64(claims(id))}.`, "token_bad_algorithm"],
    [
      "alg none with a signature segment",
      (id) => `${b64({ alg: "none", typ: "JWT" })}.${b64(claims(id))}.${Buffer.from("x").toString("base64url")}`,
      "token_bad_algorithm",
    ],
    [
      "expired",
      (id) => jwt.sign({ job_id: id, iat: nowSec() - 7200, exp: nowSec() - 3600 }, SECRET, { algorithm: "HS256" }),
      "token_expired",
    ],
    [
      "without exp",
      (id) => jwt.sign({ job_id: id, iat: nowSec() }, SECRET, { algorithm: "HS256" }),
      "token_bad_claims",
    ],
    [
      "without job_id",
      () => jwt.sign({ iat: nowSec(), exp: nowSec() + 600 }, SECRET, { algorithm: "HS256" }),
      "token_bad_claims",
    ],
    ["for another job", () => jwt.sign(claims("some-other-job"), SECRET, { algorithm: "HS256" }), "token_wrong_job"],
  ];

  it.each(cases)("%s: 401 on heartbeat, event and done, nothing recorded", async (_name, make, code) => {
    const job = await s.stub.createJob();
    const token = make(job.id);
    for (const [kind, body] of [
      ["heartbeat", heartbeatBody(job.id)],
      ["event", eventBody(job.id, "started")],
      ["done", doneBody(job.id)],
    ] as const) {
      const res = await call(s.url, "POST", callbackPath(job.id, kind), {
        ...(token === undefined ? {} : { token }),
        body,
      });
      expect(res.status, kind).toBe(401);
      expect(res.body.error.code, kind).toBe(code);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
    }
    const after = await s.stub.getJob(job.id);
    expect(after?.state).toBe("PENDING");
    expect(after?.heartbeats).toHaveLength(0);
    expect(after?.events).toHaveLength(0);
  });

  it("a non-Bearer Authorization scheme is 401", async () => {
    const job = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      headers: { authorization: `Basic ${job.token}` },
      body: heartbeatBody(job.id),
    });
    expect(res.status).toBe(401);
  });

  it("a token for job A on job B's path is 401 even when job A's token is otherwise valid", async () => {
    const a = await s.stub.createJob();
    const b = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(b.id, "heartbeat"), {
      token: a.token,
      body: heartbeatBody(b.id),
    });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("token_wrong_job");
    expect((await s.stub.getJob(b.id))?.heartbeats).toHaveLength(0);
  });

  it("the issued token is HS256 with job_id, iat and exp (24 h by default)", async () => {
    const job = await s.stub.createJob();
    const decoded = jwt.decode(job.token, { complete: true });
    expect(decoded?.header.alg).toBe("HS256");
    const payload = decoded?.payload as { job_id: string; iat: number; exp: number };
    expect(payload.job_id).toBe(job.id);
    expect(payload.exp - payload.iat).toBe(24 * 3600);
    expect(new Date(job.expires_at).getTime()).toBe(payload.exp * 1000);
  });
});

describe("state machine", () => {
  it("PENDING -> QUEUED -> RUNNING (event started) -> SUCCEEDED, with each transition recorded", async () => {
    const job = await s.stub.createJob({ name: "flow" });
    expect((await call(s.url, "POST", `/v1/jobs/${job.id}/queue`)).body.state).toBe("QUEUED");
    const started = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      body: eventBody(job.id, "started"),
    });
    expect(started).toMatchObject({ status: 200, body: { accepted: "event", state: "RUNNING" } });
    const hb = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      body: heartbeatBody(job.id, { epoch: 1 }),
    });
    expect(hb.body.state).toBe("RUNNING");
    const done = await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body: doneBody(job.id) });
    expect(done).toMatchObject({ status: 200, body: { accepted: "done", state: "SUCCEEDED" } });
    const view = (await call(s.url, "GET", `/v1/jobs/${job.id}`)).body;
    expect(view.transitions.map((t: { to: string }) => t.to)).toEqual(["PENDING", "QUEUED", "RUNNING", "SUCCEEDED"]);
    expect(view.transitions[2].cause).toBe("event:started");
  });

  it("the first heartbeat moves PENDING to RUNNING; other events do not", async () => {
    const job = await s.stub.createJob();
    const warn = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      body: eventBody(job.id, "dataset_ready"),
    });
    expect(warn.body.state).toBe("PENDING");
    const hb = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      body: heartbeatBody(job.id),
    });
    expect(hb.body.state).toBe("RUNNING");
  });

  it("a liveness heartbeat after an epoch report keeps the job's epoch, progress and ETA", async () => {
    const job = await s.stub.createJob();
    const beat = (extra: Record<string, unknown>) =>
      call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body: heartbeatBody(job.id, extra) });
    await beat({ epoch: 3, total_epochs: 5, progress: 0.6, eta_seconds: 40, metrics: { loss: 0.5 } });
    // Another node's liveness beat, or one sent while the child is quiet, arrives last.
    await beat({ liveness: true });
    const view = (await call(s.url, "GET", `/v1/jobs/${job.id}`)).body;
    expect(view).toMatchObject({ epoch: 3, total_epochs: 5, progress: 0.6, eta_seconds: 40, heartbeat_count: 2 });
    expect(view.latest_metrics).toEqual({ loss: 0.5 });
  });

  it.each([
    ["failed", "FAILED"],
    ["cancelled", "CANCELLED"],
  ])("done %s ends the job %s", async (status, state) => {
    const job = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(job.id, "done"), {
      token: job.token,
      body: doneBody(job.id, status),
    });
    expect(res.body.state).toBe(state);
  });

  const ended: Array<[string, (id: string, token: string) => Promise<void>]> = [
    [
      "SUCCEEDED",
      async (id, token) => void (await call(s.url, "POST", callbackPath(id, "done"), { token, body: doneBody(id) })),
    ],
    [
      "FAILED",
      async (id, token) =>
        void (await call(s.url, "POST", callbackPath(id, "done"), { token, body: doneBody(id, "failed") })),
    ],
    [
      "CANCELLED (by the API)",
      async (id) => void (await call(s.url, "POST", `/v1/jobs/${id}/cancel`, { body: { reason: "user" } })),
    ],
  ];

  describe.each(ended)("after the job ended %s", (_name, end) => {
    it.each([
      ["heartbeat", (id: string): Step => ["POST", callbackPath(id, "heartbeat"), heartbeatBody(id)]],
      ["event started", (id: string): Step => ["POST", callbackPath(id, "event"), eventBody(id, "started")]],
      ["event warning", (id: string): Step => ["POST", callbackPath(id, "event"), eventBody(id, "warning")]],
      ["done succeeded", (id: string): Step => ["POST", callbackPath(id, "done"), doneBody(id)]],
      ["done failed", (id: string): Step => ["POST", callbackPath(id, "done"), doneBody(id, "failed")]],
      ["queue", (id: string): Step => ["POST", `/v1/jobs/${id}/queue`, undefined]],
      ["cancel", (id: string): Step => ["POST", `/v1/jobs/${id}/cancel`, undefined]],
      ["token renewal", (id: string): Step => ["POST", `/v1/jobs/${id}/token`, undefined]],
    ] as const)("%s is 409 and changes nothing", async (_what, make) => {
      const job = await s.stub.createJob();
      await end(job.id, job.token);
      const before = await s.stub.getJob(job.id);
      const [method, pathname, body] = make(job.id);
      const res = await call(s.url, method, pathname, { token: job.token, ...(body === undefined ? {} : { body }) });
      expect(res.status).toBe(409);
      expect(res.body.error.message).toMatch(/ended/);
      const after = await s.stub.getJob(job.id);
      expect(after?.state).toBe(before?.state);
      expect(after?.heartbeats.length).toBe(before?.heartbeats.length);
      expect(after?.events.length).toBe(before?.events.length);
      expect(after?.done).toEqual(before?.done);
    });
  });

  it.each([
    ["queue a QUEUED job", ["queue"]],
    ["queue a RUNNING job", ["run", "queue"]],
  ])("%s is 409", async (_name, steps) => {
    const job = await s.stub.createJob();
    await call(s.url, "POST", `/v1/jobs/${job.id}/queue`);
    if (steps[0] === "run")
      await call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body: heartbeatBody(job.id) });
    const res = await call(s.url, "POST", `/v1/jobs/${job.id}/queue`);
    expect(res.status).toBe(409);
  });
});

describe("multi-node done", () => {
  const done = (id: string, rank: number, nnodes: number, status = "succeeded") =>
    doneBody(id, status, { node_rank: rank, nnodes, exit_code: status === "succeeded" ? 0 : 2 });

  it("with 2 nodes the job goes on after node 1's done and ends SUCCEEDED with node 0's", async () => {
    const job = await s.stub.createJob();
    const post = (kind: "heartbeat" | "done", body: Record<string, unknown>) =>
      call(s.url, "POST", callbackPath(job.id, kind), { token: job.token, body });
    const first = await post("done", done(job.id, 1, 2));
    expect(first).toMatchObject({ status: 200, body: { accepted: "done", state: "RUNNING" } });
    expect((await post("heartbeat", heartbeatBody(job.id, { epoch: 3, metrics: { loss: 0.1 } }))).status).toBe(200);
    const again = await post("done", done(job.id, 1, 2));
    expect(again.status).toBe(409);
    expect(again.body.error.message).toMatch(/node 1 .*already reported done/);
    const last = await post("done", { ...done(job.id, 0, 2), final_metrics: { loss: 0.1 } });
    expect(last.body.state).toBe("SUCCEEDED");
    const view = (await s.stub.getJob(job.id))!;
    expect(view.node_done.map((d) => d.node_rank)).toEqual([0, 1]);
    expect(view.done).toMatchObject({ node_rank: 0, final_metrics: { loss: 0.1 } });
    expect(view.transitions.map((t) => t.cause)).toEqual(["created", "done:node 1", "done:succeeded"]);
    expect((await post("heartbeat", heartbeatBody(job.id))).status).toBe(409);
  });

  it("with 3 nodes the first failure ends the job FAILED; the others' done is then 409", async () => {
    const job = await s.stub.createJob();
    const post = (body: Record<string, unknown>) =>
      call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body });
    expect((await post(done(job.id, 0, 3))).body.state).toBe("RUNNING");
    const failed = await post(done(job.id, 2, 3, "failed"));
    expect(failed.body.state).toBe("FAILED");
    expect((await s.stub.getJob(job.id))!.done).toMatchObject({ node_rank: 2, exit_code: 2 });
    expect((await post(done(job.id, 1, 3))).status).toBe(409);
  });

  it.each([
    [{ node_rank: 1 }, "nnodes"],
    [{ nnodes: 2 }, "node_rank"],
    [{ node_rank: 2, nnodes: 2 }, "node_rank"],
  ])("a malformed node done %j is 400 naming %s", async (extra, field) => {
    const job = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(job.id, "done"), {
      token: job.token,
      body: doneBody(job.id, "succeeded", extra),
    });
    expect(res.status).toBe(400);
    expect(res.body.error.field).toBe(field);
  });

  it("a node count that differs from the other nodes' is 400", async () => {
    const job = await s.stub.createJob();
    await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body: done(job.id, 1, 2) });
    const res = await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body: done(job.id, 0, 3) });
    expect(res.status).toBe(400);
    expect(res.body.error.field).toBe("nnodes");
  });

  it("a single-node done (nnodes 1 or absent) ends the job at once", async () => {
    const job = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body: done(job.id, 0, 1) });
    expect(res.body.state).toBe("SUCCEEDED");
  });
});

describe("idempotency", () => {
  it("a repeated Idempotency-Key is applied once and answered with the same 2xx", async () => {
    const job = await s.stub.createJob();
    const body = heartbeatBody(job.id, { epoch: 1, metrics: { loss: 0.5 } });
    const headers = { "idempotency-key": "3f0c7c4e-1111-4c1e-9f00-000000000001" };
    const first = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body, headers });
    const again = await Promise.all(
      Array.from({ length: 5 }, () =>
        call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body, headers }),
      ),
    );
    expect(first.status).toBe(200);
    for (const res of again) {
      expect(res.status).toBe(first.status);
      expect(res.body).toEqual(first.body);
      expect(res.headers.get("idempotent-replayed")).toBe("true");
    }
    expect((await s.stub.getJob(job.id))?.heartbeats).toHaveLength(1);
  });

  it("concurrent first attempts with one key are applied once", async () => {
    const job = await s.stub.createJob();
    const body = eventBody(job.id, "warning", { message: "once" });
    const headers = { "idempotency-key": "same-key-concurrent" };
    const all = await Promise.all(
      Array.from({ length: 8 }, () =>
        call(s.url, "POST", callbackPath(job.id, "event"), { token: job.token, body, headers }),
      ),
    );
    expect(all.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect((await s.stub.getJob(job.id))?.events).toHaveLength(1);
  });

  it("a retried done after the job ended gets the same 200, not 409", async () => {
    const job = await s.stub.createJob();
    const body = doneBody(job.id);
    const headers = { "idempotency-key": "done-key" };
    const first = await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body, headers });
    const retry = await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body, headers });
    expect(retry.status).toBe(200);
    expect(retry.body).toEqual(first.body);
    const other = await call(s.url, "POST", callbackPath(job.id, "done"), {
      token: job.token,
      body,
      headers: { "idempotency-key": "other" },
    });
    expect(other.status).toBe(409);
  });

  it("the same key with a different body is 422 and not applied", async () => {
    const job = await s.stub.createJob();
    const headers = { "idempotency-key": "reused" };
    await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      body: heartbeatBody(job.id, { epoch: 1 }),
      headers,
    });
    const res = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      body: heartbeatBody(job.id, { epoch: 2 }),
      headers,
    });
    expect(res.status).toBe(422);
    expect(res.body.error.field).toBe("Idempotency-Key");
    expect((await s.stub.getJob(job.id))?.heartbeats).toHaveLength(1);
  });

  it("a retry re-stamped with a new timestamp is still the same report", async () => {
    const job = await s.stub.createJob();
    const headers = { "idempotency-key": "restamped" };
    const body = heartbeatBody(job.id, { epoch: 3, metrics: { loss: 0.2 } });
    await call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body, headers });
    const retry = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      body: { ...body, timestamp: new Date(Date.now() + 5000).toISOString() },
      headers,
    });
    expect(retry.status).toBe(200);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect((await s.stub.getJob(job.id))?.heartbeats).toHaveLength(1);
  });

  it("without a key each report is applied", async () => {
    const job = await s.stub.createJob();
    const body = heartbeatBody(job.id);
    await call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body });
    await call(s.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body });
    expect((await s.stub.getJob(job.id))?.heartbeats).toHaveLength(2);
  });
});

describe("body validation", () => {
  it.each([
    ["heartbeat", (id: string) => ({ job_id: id, trace_id: "t", metrics: {} }), "timestamp"],
    ["heartbeat", (id: string) => heartbeatBody(id, { metrics: { loss: "low" } }), "metrics.loss"],
    ["heartbeat", (id: string) => heartbeatBody(id, { progress: 1.5 }), "progress"],
    ["heartbeat", (id: string) => heartbeatBody(id, { epoch: -1 }), "epoch"],
    ["heartbeat", (id: string) => heartbeatBody(id, { timestamp: "yesterday" }), "timestamp"],
    ["heartbeat", (id: string) => heartbeatBody(id, { job_id: "another" }), "job_id"],
    ["event", (id: string) => eventBody(id, ""), "type"],
    ["event", (id: string) => ({ ...eventBody(id, "x"), trace_id: undefined }), "trace_id"],
    ["done", (id: string) => doneBody(id, "exploded"), "status"],
    ["done", (id: string) => doneBody(id, "failed", { exit_code: 1.5 }), "exit_code"],
    [
      "done",
      (id: string) => doneBody(id, "failed", { checkpoints: [{ key: "a", bytes: "big" }] }),
      "checkpoints.0.bytes",
    ],
  ] as const)("%s with a bad %s... is 400 naming %s", async (kind, make, field) => {
    const job = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(job.id, kind), { token: job.token, body: make(job.id) });
    expect(res.status).toBe(400);
    expect(res.body.error.field).toBe(field);
    expect(res.body.error.message).toContain(field);
    const after = await s.stub.getJob(job.id);
    expect(after?.state).toBe("PENDING");
    expect((after?.heartbeats.length ?? 0) + (after?.events.length ?? 0)).toBe(0);
  });

  it("invalid JSON is 400 and a non-JSON Content-Type is 415", async () => {
    const job = await s.stub.createJob();
    const bad = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      raw: "{not json",
      headers: { "content-type": "application/json" },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("invalid_json");
    const form = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      raw: "a=b",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(form.status).toBe(415);
  });

  it("a body over the cap is 413 (declared length)", async () => {
    const job = await s.stub.createJob();
    const res = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      body: eventBody(job.id, "warning", { message: "x".repeat(5000) }),
    });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe("body_too_large");
    expect((await s.stub.getJob(job.id))?.events).toHaveLength(0);
  });

  it("a chunked body that grows over the cap is 413", async () => {
    const job = await s.stub.createJob();
    const { port } = new URL(s.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: callbackPath(job.id, "event"),
          headers: { authorization: `Bearer ${job.token}`, "content-type": "application/json" },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      for (let i = 0; i < 10; i++) req.write("x".repeat(1000));
      req.end();
    });
    expect(status).toBe(413);
  });
});

describe("job management", () => {
  it("POST /v1/jobs answers 201 {id, token, state: PENDING}; a taken id is 409; a bad id is 400 naming id", async () => {
    const res = await call(s.url, "POST", "/v1/jobs", { body: { id: "train-42", name: "resnet" } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ id: "train-42", state: "PENDING" });
    expect(typeof res.body.token).toBe("string");
    expect(res.headers.get("location")).toBe("/v1/jobs/train-42");
    expect((await call(s.url, "POST", "/v1/jobs", { body: { id: "train-42" } })).status).toBe(409);
    const bad = await call(s.url, "POST", "/v1/jobs", { body: { id: "../etc" } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe("id");
    const empty = await call(s.url, "POST", "/v1/jobs");
    expect(empty.status).toBe(201);
    expect(empty.body.id).toMatch(/^[0-9a-f]{12}$/);
  });

  it("GET /v1/jobs lists summaries; GET /v1/jobs/{id} has events, heartbeats and metric series; unknown is 404", async () => {
    const job = await s.stub.createJob({ name: "series" });
    for (const [epoch, loss] of [
      [1, 0.9],
      [2, 0.5],
      [2, 0.45],
      [3, 0.3],
    ] as const) {
      await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
        token: job.token,
        body: heartbeatBody(job.id, {
          epoch,
          total_epochs: 3,
          metrics: { loss, ...(epoch === 3 ? { acc: 0.9 } : {}) },
        }),
      });
    }
    const list = await call(s.url, "GET", "/v1/jobs");
    const row = list.body.jobs.find((j: { id: string }) => j.id === job.id);
    expect(row).toMatchObject({ name: "series", state: "RUNNING", epoch: 3, total_epochs: 3, heartbeat_count: 4 });
    expect(row.last_heartbeat_at).not.toBeNull();
    const view = (await call(s.url, "GET", `/v1/jobs/${job.id}`)).body;
    expect(view.heartbeats).toHaveLength(4);
    expect(view.events).toEqual([]);
    expect(view.metric_series).toEqual({
      x_label: "epoch",
      x: [1, 2, 3],
      series: { acc: [null, null, 0.9], loss: [0.9, 0.45, 0.3] },
    });
    expect((await call(s.url, "GET", "/v1/jobs/nope")).status).toBe(404);
  });

  it("GET /v1/jobs filters by state and limits the count; a bad filter is 400 naming it", async () => {
    const f = await startStub();
    try {
      const a = await f.stub.createJob({ name: "a" });
      await f.stub.createJob({ name: "b" });
      await f.stub.queueJob(a.id);
      const queued = await call(f.url, "GET", "/v1/jobs?state=queued");
      expect(queued.body.jobs.map((j: { id: string }) => j.id)).toEqual([a.id]);
      expect((await call(f.url, "GET", "/v1/jobs?state=PENDING,QUEUED")).body.jobs).toHaveLength(2);
      expect((await call(f.url, "GET", "/v1/jobs?limit=1")).body.jobs).toHaveLength(1);
      const bad = await call(f.url, "GET", "/v1/jobs?state=DONE");
      expect(bad.status).toBe(400);
      expect(bad.body.error.field).toBe("state");
      expect((await call(f.url, "GET", "/v1/jobs?limit=0")).body.error.field).toBe("limit");
    } finally {
      await f.stop();
    }
  });

  it("a validly signed callback for an unknown job registers it", async () => {
    const token = jwt.sign({ job_id: "from-submitter", iat: nowSec(), exp: nowSec() + 60 }, SECRET, {
      algorithm: "HS256",
    });
    const res = await call(s.url, "POST", callbackPath("from-submitter", "heartbeat"), {
      token,
      body: heartbeatBody("from-submitter"),
    });
    expect(res.body).toMatchObject({ state: "RUNNING" });
    expect((await s.stub.getJob("from-submitter"))?.transitions[0]?.cause).toBe("created_by_callback");
  });

  it("a token is renewed with the current callback token, and the new one works", async () => {
    const job = await s.stub.createJob();
    const renewed = await call(s.url, "POST", `/v1/jobs/${job.id}/token`, { token: job.token });
    expect(renewed.status).toBe(200);
    expect(renewed.body).toMatchObject({ id: job.id, state: "PENDING" });
    const hb = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: renewed.body.token,
      body: heartbeatBody(job.id),
    });
    expect(hb.status).toBe(200);
  });
});

describe("GET /metrics", () => {
  it("counts callbacks by kind and status, with a latency histogram and jobs by state", async () => {
    const m = await startStub();
    try {
      const job = await m.stub.createJob();
      await call(m.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body: heartbeatBody(job.id) });
      await call(m.url, "POST", callbackPath(job.id, "heartbeat"), { token: job.token, body: heartbeatBody(job.id) });
      await call(m.url, "POST", callbackPath(job.id, "event"), { body: eventBody(job.id, "x") });
      const res = await fetch(`${m.url}/metrics`);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0.0.4/);
      const text = await res.text();
      expect(text).toContain('backend_callbacks_total{kind="heartbeat",status="200"} 2');
      expect(text).toContain('backend_callbacks_total{kind="event",status="401"} 1');
      expect(text).toContain('backend_callback_duration_seconds_bucket{le="+Inf"} 3');
      expect(text).toContain("backend_callback_duration_seconds_count 3");
      expect(text).toContain('backend_jobs{state="RUNNING"} 1');
      expect(text).toMatch(/backend_journal_syncs_total [1-9]/);
    } finally {
      await m.stop();
    }
  });
});

describe("with BACKEND_ADMIN_TOKEN", () => {
  let g: Running;
  beforeAll(async () => {
    g = await startStub({ adminToken: "admin-token-123" });
  });
  afterAll(async () => {
    await g.stop();
  });

  it("creating, queueing and cancelling need the admin bearer; callbacks need only their JWT", async () => {
    expect((await call(g.url, "POST", "/v1/jobs")).status).toBe(401);
    expect((await call(g.url, "POST", "/v1/jobs", { token: "wrong" })).status).toBe(401);
    const created = await call(g.url, "POST", "/v1/jobs", { token: "admin-token-123" });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await call(g.url, "POST", `/v1/jobs/${id}/queue`)).status).toBe(401);
    expect((await call(g.url, "POST", `/v1/jobs/${id}/queue`, { token: created.body.token })).status).toBe(401);
    expect((await call(g.url, "POST", `/v1/jobs/${id}/queue`, { token: "admin-token-123" })).status).toBe(200);
    const hb = await call(g.url, "POST", callbackPath(id, "heartbeat"), {
      token: created.body.token,
      body: heartbeatBody(id),
    });
    expect(hb.status).toBe(200);
  });

  it("renewal takes the job's callback token or the admin token, not another job's or one expired past the grace", async () => {
    const a = await g.stub.createJob();
    const b = await g.stub.createJob();
    expect((await call(g.url, "POST", `/v1/jobs/${a.id}/token`)).status).toBe(401);
    expect((await call(g.url, "POST", `/v1/jobs/${a.id}/token`, { token: b.token })).status).toBe(401);
    // The grace is the token lifetime (24 h here), at most 1 h: an hour and more past expiry is too late.
    const stale = jwt.sign({ job_id: a.id, iat: nowSec() - 7300, exp: nowSec() - 3700 }, SECRET, {
      algorithm: "HS256",
    });
    expect((await call(g.url, "POST", `/v1/jobs/${a.id}/token`, { token: stale })).status).toBe(401);
    const late = jwt.sign({ job_id: a.id, iat: nowSec() - 100, exp: nowSec() - 10 }, SECRET, { algorithm: "HS256" });
    expect((await call(g.url, "POST", `/v1/jobs/${a.id}/token`, { token: late })).status).toBe(200);
    expect((await call(g.url, "POST", `/v1/jobs/${a.id}/token`, { token: a.token })).status).toBe(200);
    expect((await call(g.url, "POST", `/v1/jobs/${a.id}/token`, { token: "admin-token-123" })).status).toBe(200);
  });
});
