/**
 * Server-sent events: `GET /v1/stream` (every job's summary as it changes) and `GET /v1/jobs/{id}/stream` (one
 * job's changes). Each stream opens with a `snapshot` so a client (or EventSource after a reconnect) never has to
 * merge a stale view; comments every 15 s keep proxies from closing an idle stream.
 *
 * Streams need no token, so what one may cost is bounded: a client that does not read is closed once its unsent
 * bytes pass a bound (EventSource reconnects and gets a fresh snapshot), and the number of streams is capped per
 * topic and in total.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { AgentError } from "../../../src/errors/index.ts";
import { HttpError } from "../../../src/http/index.ts";

const KEEPALIVE_MS = 15_000;

export interface SseLimits {
  /** Open streams, all topics together; beyond it a new stream is refused with 503. */
  maxStreams: number;
  /** Open streams on one topic (one job, or the job list); beyond it a new stream is refused with 429. */
  maxStreamsPerTopic: number;
  /**
   * Unsent bytes a stream may hold after a write (its opening snapshot aside: a stream may hold the larger of the
   * two); a stream past it is closed.
   */
  maxBufferedBytes: number;
}

export const DEFAULT_SSE_LIMITS: SseLimits = {
  maxStreams: 256,
  maxStreamsPerTopic: 64,
  maxBufferedBytes: 256 * 1024,
};

interface Stream {
  res: ServerResponse;
  /** This stream's bound on unsent bytes: maxBufferedBytes, or its snapshot's size when that is larger. */
  allowance: number;
}

export class SseHub {
  readonly #topics = new Map<string, Set<Stream>>();
  readonly #timer: NodeJS.Timeout;
  readonly #limits: SseLimits;
  #size = 0;
  #dropped = 0;

  constructor(limits: Partial<SseLimits> = {}) {
    this.#limits = { ...DEFAULT_SSE_LIMITS, ...limits };
    for (const [name, n] of Object.entries(this.#limits)) {
      if (!Number.isInteger(n) || n < 1) {
        throw new AgentError(
          "CONFIG_INVALID",
          `backend stub: streamLimits.${name} must be a positive integer, got ${n}`,
        );
      }
    }
    this.#timer = setInterval(() => this.#ping(), KEEPALIVE_MS);
    this.#timer.unref();
  }

  /** Number of open streams, all topics. */
  get size(): number {
    return this.#size;
  }

  /** Streams closed because their client did not read (since start). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Bytes written to streams and not yet sent to their clients, all streams together. */
  get bufferedBytes(): number {
    let n = 0;
    for (const set of this.#topics.values()) for (const s of set) n += s.res.writableLength;
    return n;
  }

  /** Number of open streams on a topic (work to build an update is skipped when nobody listens). */
  listeners(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  /** Opens a stream, or throws 503/429 (before anything is written) when a cap is reached. */
  open(req: IncomingMessage, res: ServerResponse, topic: string, snapshot: unknown): void {
    const { maxStreams, maxStreamsPerTopic, maxBufferedBytes } = this.#limits;
    if (this.#size >= maxStreams) {
      throw new HttpError(503, "too_many_streams", `the backend already serves ${maxStreams} event streams, its most`, {
        headers: { "retry-after": "10" },
      });
    }
    if (this.listeners(topic) >= maxStreamsPerTopic) {
      throw new HttpError(
        429,
        "too_many_streams",
        `${topic === "jobs" ? "the job list" : topic.replace("job:", "job ")} already has ${maxStreamsPerTopic} event streams open, its most`,
        { headers: { "retry-after": "10" } },
      );
    }
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const first = `retry: 2000\n${frame("snapshot", snapshot)}`;
    res.write(first);
    let set = this.#topics.get(topic);
    if (set === undefined) {
      set = new Set();
      this.#topics.set(topic, set);
    }
    const stream: Stream = { res, allowance: Math.max(maxBufferedBytes, Buffer.byteLength(first)) };
    set.add(stream);
    this.#size += 1;
    let gone = false;
    const drop = (): void => {
      if (gone) return;
      gone = true;
      this.#size -= 1;
      set.delete(stream);
      if (set.size === 0 && this.#topics.get(topic) === set) this.#topics.delete(topic);
    };
    req.on("close", drop);
    res.on("close", drop);
  }

  publish(topic: string, event: string, data: unknown): void {
    const set = this.#topics.get(topic);
    if (set === undefined || set.size === 0) return;
    const text = frame(event, data);
    for (const stream of set) this.#send(stream, text);
  }

  /** Writes, then closes a stream whose client has left more unsent than its allowance. */
  #send(stream: Stream, text: string): void {
    const { res } = stream;
    if (res.destroyed) return;
    res.write(text);
    if (res.writableLength > stream.allowance) {
      this.#dropped += 1;
      res.destroy();
    }
  }

  #ping(): void {
    for (const set of this.#topics.values()) for (const s of set) this.#send(s, ": keep-alive\n\n");
  }

  /** Ends every stream (on close of the stub). */
  close(): void {
    clearInterval(this.#timer);
    for (const set of this.#topics.values()) for (const s of set) s.res.end();
    this.#topics.clear();
  }
}

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
