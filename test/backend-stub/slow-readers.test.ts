/**
 * Event streams need no token, so clients that open them and never read must not grow the stub's memory: each
 * stream may hold at most `maxBufferedBytes` unsent (beyond that its client is dropped), and streams are capped
 * per job and in total. The bound is read from the stub's own accounting (`/metrics`), which is exact, rather than
 * from RSS, which moves with the garbage collector.
 */
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { callbackPath } from "../../src/contract/index.ts";
import { DEFAULT_SSE_LIMITS } from "../../backend-stub/src/index.ts";
import { call, eventBody, startStub, type Running } from "./helpers.ts";

let s: Running | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await s?.stop();
  s = undefined;
});

async function gauge(url: string, name: string): Promise<number> {
  const text = (await call(url, "GET", "/metrics")).body as string;
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`/metrics has no ${name}`);
  return Number(line.slice(name.length + 1));
}

/** Opens a job stream on a raw socket, waits for its snapshot, then stops reading for good. */
async function openAndStall(url: string, jobId: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  sockets.push(socket);
  socket.write(`GET /v1/jobs/${jobId}/stream HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString("latin1");
      if (!seen.includes("event: snapshot")) return;
      socket.off("data", onData);
      socket.pause();
      resolve();
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
  return socket;
}

/** The status and JSON body of a stream request the stub should refuse (an opened stream is closed at once). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test reads arbitrary JSON
async function openRefused(url: string, jobId: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/v1/jobs/${jobId}/stream`);
  if (res.status === 200) {
    await res.body?.cancel();
    return { status: 200, body: undefined };
  }
  return { status: res.status, body: await res.json() };
}

describe("slow stream readers", () => {
  it("100 clients that never read are dropped, and the bytes the stub buffers for them stay within 100 x 256 KiB", async () => {
    s = await startStub();
    const jobs = await Promise.all([0, 1, 2, 3].map((i) => s!.stub.createJob({ id: `slow-${i}` })));
    for (const job of jobs) {
      for (let i = 0; i < 25; i++) await openAndStall(s.url, job.id);
    }
    expect(await gauge(s.url, "backend_event_streams")).toBe(100);

    // One client that reads: it must get every update while the others are dropped.
    const live = await fetch(`${s.url}/v1/jobs/${jobs[0]!.id}/stream`);
    const reader = live.body!.getReader();
    let liveText = "";
    const waitLive = async (marker: string): Promise<void> => {
      while (!liveText.includes(marker)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`live stream ended before ${marker}`);
        liveText += new TextDecoder().decode(value);
      }
    };

    const bound = 100 * DEFAULT_SSE_LIMITS.maxBufferedBytes;
    const blob = "x".repeat(32 * 1024);
    let peak = 0;
    let rounds = 0;
    // Each round sends 32 KiB to every stream. Kernel socket buffers take the first part (how much is the
    // kernel's business); the rounds go on until the stub has dropped every stalled client, at most 20 MiB each.
    while ((await gauge(s.url, "backend_event_streams")) > 1) {
      rounds += 1;
      if (rounds > 640) throw new Error(`stalled clients still open after ${rounds - 1} rounds`);
      for (const job of jobs) {
        const res = await call(s.url, "POST", callbackPath(job.id, "event"), {
          token: job.token,
          body: eventBody(job.id, `round-${rounds}`, { data: { blob } }),
        });
        expect(res.status).toBe(200);
      }
      const buffered = await gauge(s.url, "backend_event_stream_buffered_bytes");
      peak = Math.max(peak, buffered);
      expect(buffered).toBeLessThanOrEqual(bound);
      await waitLive(`"type":"round-${rounds}"`);
    }
    expect(await gauge(s.url, "backend_event_streams_dropped_total")).toBe(100);
    expect(peak).toBeLessThanOrEqual(bound);
    await reader.cancel();
    // The rounds bound above ends this test; the clock must not: each round is four journaled (fsync'd) POSTs,
    // and on a loaded machine the default 30 s ran out before the stub had dropped every stalled client.
  }, 180_000);

  it("streams beyond the per-job cap get 429 and beyond the total cap 503, each with a body naming the cap", async () => {
    s = await startStub({ streamLimits: { maxStreams: 3, maxStreamsPerTopic: 2 } });
    const a = await s.stub.createJob({ id: "cap-a" });
    const b = await s.stub.createJob({ id: "cap-b" });
    const c = await s.stub.createJob({ id: "cap-c" });
    const first = await openAndStall(s.url, a.id);
    await openAndStall(s.url, a.id);
    const perJob = await openRefused(s.url, a.id);
    expect(perJob.status).toBe(429);
    expect(perJob.body.error).toMatchObject({ code: "too_many_streams" });
    expect(perJob.body.error.message).toContain("job cap-a already has 2 event streams open");

    await openAndStall(s.url, b.id);
    const total = await openRefused(s.url, c.id);
    expect(total.status).toBe(503);
    expect(total.body.error.message).toContain("3 event streams");

    // A closed stream frees its place.
    first.destroy();
    while ((await gauge(s.url, "backend_event_streams")) > 2) await new Promise((r) => setImmediate(r));
    await openAndStall(s.url, c.id);
    expect(await gauge(s.url, "backend_event_streams")).toBe(3);
  });
});
