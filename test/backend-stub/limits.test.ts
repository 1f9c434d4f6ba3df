/**
 * Hostile callbacks and requests: refused at the door with a clear error, and the job stays readable (also after
 * a restart from the journal).
 */
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callbackPath } from "../../src/contract/index.ts";
import { MAX_JSON_DEPTH, signCallbackToken } from "../../backend-stub/src/index.ts";
import { call, eventBody, SECRET, startStub, type Running } from "./helpers.ts";

let s: Running;
beforeAll(async () => {
  s = await startStub({ maxEventsPerJob: 3 });
});
afterAll(async () => {
  await s.stop();
});

/** `{"x": [[[...1...]]]}` with `levels` arrays: the body nests levels + 2 deep (body, data, arrays). */
function nestedData(levels: number): string {
  return `{"x":${"[".repeat(levels)}1${"]".repeat(levels)}}`;
}

function rawEvent(jobId: string, dataJson: string): string {
  const base = JSON.stringify(eventBody(jobId, "custom"));
  return `${base.slice(0, -1)},"data":${dataJson}}`;
}

/** The first bytes of a job's event stream: the status and the snapshot frame. */
async function streamSnapshot(url: string, jobId: string): Promise<{ status: number; first: string }> {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/jobs/${jobId}/stream`, { signal: abort.signal });
  const reader = res.body!.getReader();
  let first = "";
  while (!first.includes("\n\n", first.indexOf("event: snapshot"))) {
    const { value, done } = await reader.read();
    if (done) break;
    first += new TextDecoder().decode(value);
  }
  abort.abort();
  return { status: res.status, first };
}

describe("request limits", () => {
  it("an event nested 100,000 levels deep (200 KB) is refused with 400, and the job stays readable after a restart", async () => {
    const own = await startStub();
    try {
      const job = await own.stub.createJob({ id: "deep-1" });
      const raw = rawEvent(job.id, nestedData(100_000));
      expect(raw.length).toBeGreaterThan(200_000);
      const res = await call(own.url, "POST", callbackPath(job.id, "event"), {
        token: job.token,
        raw,
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: "body_too_deep" });
      expect(res.body.error.message).toContain(`deeper than ${MAX_JSON_DEPTH} levels`);
      expect(res.body.error.field).toMatch(/^data\.x(\[0\])+$/);

      const ok = await call(own.url, "POST", callbackPath(job.id, "event"), {
        token: job.token,
        body: eventBody(job.id, "started"),
      });
      expect(ok.status).toBe(200);
      expect((await call(own.url, "GET", `/v1/jobs/${job.id}`)).status).toBe(200);
      const stream = await streamSnapshot(own.url, job.id);
      expect(stream.status).toBe(200);
      expect(stream.first).toContain('"type":"started"');

      await own.stub.close();
      const again = await startStub({ dataDir: own.dataDir });
      try {
        const view = await call(again.url, "GET", `/v1/jobs/${job.id}`);
        expect(view.status).toBe(200);
        expect(view.body.events.map((e: { type: string }) => e.type)).toEqual(["started"]);
      } finally {
        await again.stub.close();
      }
    } finally {
      await own.stop();
    }
  });

  it("a body exactly at the depth limit is accepted; one level more is refused", async () => {
    const job = await s.stub.createJob({ id: "deep-2" });
    const at = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      raw: rawEvent(job.id, nestedData(MAX_JSON_DEPTH - 2)),
      headers: { "content-type": "application/json" },
    });
    expect(at.status).toBe(200);
    const over = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      raw: rawEvent(job.id, nestedData(MAX_JSON_DEPTH - 1)),
      headers: { "content-type": "application/json" },
    });
    expect(over.status).toBe(400);
    expect(over.body.error.code).toBe("body_too_deep");
  });

  it("a __proto__ key is refused with 400 naming it, not dropped silently", async () => {
    const job = await s.stub.createJob({ id: "proto-1" });
    const res = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      raw: rawEvent(job.id, '{"__proto__":{"admin":true},"kept":1}'),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "forbidden_key", field: "data.__proto__" });
    expect((await call(s.url, "GET", `/v1/jobs/${job.id}`)).body.events).toEqual([]);
    const created = await call(s.url, "POST", "/v1/jobs", {
      raw: '{"__proto__":{"id":"x"}}',
      headers: { "content-type": "application/json" },
    });
    expect(created.status).toBe(400);
  });

  it("a body over the size cap is 413 naming the cap", async () => {
    const job = await s.stub.createJob({ id: "big-1" });
    const res = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      body: eventBody(job.id, "custom", { data: { blob: "x".repeat(1024 * 1024) } }),
    });
    expect(res.status).toBe(413);
    expect(res.body.error.message).toContain(`${1024 * 1024} bytes`);
    expect((await call(s.url, "GET", `/v1/jobs/${job.id}`)).status).toBe(200);
  });

  it("events beyond the per-job cap are refused with 409 and the job keeps the first ones", async () => {
    const job = await s.stub.createJob({ id: "many-1" });
    for (let i = 0; i < 3; i++) {
      const ok = await call(s.url, "POST", callbackPath(job.id, "event"), {
        token: job.token,
        body: eventBody(job.id, `e${i}`),
      });
      expect(ok.status).toBe(200);
    }
    const over = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      body: eventBody(job.id, "e3"),
    });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe("event_limit_reached");
    expect(over.body.error.message).toContain("(3)");
    const view = await call(s.url, "GET", `/v1/jobs/${job.id}`);
    expect(view.body.events.map((e: { type: string }) => e.type)).toEqual(["e0", "e1", "e2"]);
  });

  it("the same Idempotency-Key with a different body is 422, and the first report stands", async () => {
    const job = await s.stub.createJob({ id: "idem-1" });
    const headers = { "idempotency-key": "k-1" };
    const first = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      headers,
      body: eventBody(job.id, "first"),
    });
    expect(first.status).toBe(200);
    const second = await call(s.url, "POST", callbackPath(job.id, "event"), {
      token: job.token,
      headers,
      body: eventBody(job.id, "second"),
    });
    expect(second.status).toBe(422);
    expect(second.body.error).toMatchObject({ code: "idempotency_key_reused", field: "Idempotency-Key" });
    const view = await call(s.url, "GET", `/v1/jobs/${job.id}`);
    expect(view.body.events.map((e: { type: string }) => e.type)).toEqual(["first"]);
  });

  it("a 64 KiB header is refused with 431 and the stub keeps answering", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${s.url}/healthz`, { headers: { "x-big": "a".repeat(64 * 1024) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(431);
    expect((await call(s.url, "GET", "/healthz")).status).toBe(200);
  });

  it("a validly signed callback for a job id that is not a valid id is 400, and no job is made", async () => {
    const bad = `job-${"a".repeat(100)}`;
    const { token } = signCallbackToken(SECRET, bad, 60, Date.now());
    const res = await call(s.url, "POST", callbackPath(bad, "event"), {
      token,
      body: eventBody(bad, "x"),
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_job_id");
    expect((await call(s.url, "GET", `/v1/jobs/${encodeURIComponent(bad)}`)).status).toBe(404);
  });

  it("query strings are checked: an unknown state or a non-integer limit is 400 naming the parameter", async () => {
    const state = await call(s.url, "GET", "/v1/jobs?state=RUNNING,HACKED");
    expect(state.status).toBe(400);
    expect(state.body.error.field).toBe("state");
    const limit = await call(s.url, "GET", "/v1/jobs?limit=1e400");
    expect(limit.status).toBe(400);
    expect(limit.body.error.field).toBe("limit");
  });
});
