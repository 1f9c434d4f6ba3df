/** Server-sent events: a snapshot first, then one update per accepted change, in order. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callbackPath } from "../../src/contract/index.ts";
import { call, doneBody, heartbeatBody, startStub, type Running } from "./helpers.ts";

let s: Running;
beforeAll(async () => {
  s = await startStub();
});
afterAll(async () => {
  await s.stop();
});

/** Reads SSE frames from a fetch body. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test reads arbitrary JSON
async function* frames(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: any }> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event !== undefined && data !== undefined) yield { event, data: JSON.parse(data) };
    }
  }
}

describe("SSE", () => {
  it("a job stream sends a snapshot, then heartbeat, event and done updates with the metric series", async () => {
    const job = await s.stub.createJob({ name: "streamed" });
    const abort = new AbortController();
    const res = await fetch(`${s.url}/v1/jobs/${job.id}/stream`, { signal: abort.signal });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const it = frames(res.body!);
    const snapshot = (await it.next()).value!;
    expect(snapshot).toMatchObject({ event: "snapshot", data: { id: job.id, state: "PENDING", heartbeats: [] } });

    await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
      token: job.token,
      body: heartbeatBody(job.id, { epoch: 1, metrics: { loss: 0.7 } }),
    });
    const hb = (await it.next()).value!;
    expect(hb.event).toBe("update");
    expect(hb.data).toMatchObject({
      kind: "heartbeat",
      job: { state: "RUNNING", epoch: 1 },
      transition: { from: "PENDING", to: "RUNNING" },
      metric_series: { x: [1], series: { loss: [0.7] } },
    });
    await call(s.url, "POST", callbackPath(job.id, "done"), { token: job.token, body: doneBody(job.id) });
    const done = (await it.next()).value!;
    expect(done.data).toMatchObject({ kind: "done", job: { state: "SUCCEEDED" }, done: { status: "succeeded" } });
    abort.abort();
  });

  it("concurrent reports each reach the stream once, each update carrying its own heartbeat", async () => {
    const job = await s.stub.createJob();
    const abort = new AbortController();
    const res = await fetch(`${s.url}/v1/jobs/${job.id}/stream`, { signal: abort.signal });
    const it = frames(res.body!);
    await it.next(); // snapshot
    await Promise.all(
      Array.from({ length: 30 }, (_, step) =>
        call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
          token: job.token,
          body: heartbeatBody(job.id, { step }),
        }),
      ),
    );
    const steps: number[] = [];
    for (let i = 0; i < 30; i++) steps.push((await it.next()).value!.data.heartbeat.step);
    expect(steps.sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    abort.abort();
  });

  it("the list stream sends every job's summary as it changes", async () => {
    const abort = new AbortController();
    const res = await fetch(`${s.url}/v1/stream`, { signal: abort.signal });
    const it = frames(res.body!);
    const snapshot = (await it.next()).value!;
    expect(snapshot.event).toBe("snapshot");
    expect(Array.isArray(snapshot.data.jobs)).toBe(true);
    const job = await s.stub.createJob({ name: "listed" });
    const created = (await it.next()).value!;
    expect(created).toMatchObject({ event: "job", data: { id: job.id, name: "listed", state: "PENDING" } });
    await s.stub.queueJob(job.id);
    expect((await it.next()).value!.data).toMatchObject({ id: job.id, state: "QUEUED" });
    abort.abort();
  });

  it("a stream of an unknown job is 404", async () => {
    expect((await call(s.url, "GET", "/v1/jobs/nope/stream")).status).toBe(404);
  });
});
