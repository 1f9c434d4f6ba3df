/**
 * Server-sent events: `GET /v1/stream` (every job's summary as it changes) and `GET /v1/jobs/{id}/stream` (one
 * job's changes). Each stream opens with a `snapshot` so a client (or EventSource after a reconnect) never has to
 * merge a stale view; comments every 15 s keep proxies from closing an idle stream.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

const KEEPALIVE_MS = 15_000;

export class SseHub {
  readonly #topics = new Map<string, Set<ServerResponse>>();
  readonly #timer: NodeJS.Timeout;

  constructor() {
    this.#timer = setInterval(() => this.#ping(), KEEPALIVE_MS);
    this.#timer.unref();
  }

  /** Number of open streams, all topics. */
  get size(): number {
    let n = 0;
    for (const set of this.#topics.values()) n += set.size;
    return n;
  }

  /** Number of open streams on a topic (work to build an update is skipped when nobody listens). */
  listeners(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  open(req: IncomingMessage, res: ServerResponse, topic: string, snapshot: unknown): void {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.write(`retry: 2000\n`);
    res.write(frame("snapshot", snapshot));
    let set = this.#topics.get(topic);
    if (set === undefined) {
      set = new Set();
      this.#topics.set(topic, set);
    }
    set.add(res);
    const drop = (): void => {
      set.delete(res);
      if (set.size === 0 && this.#topics.get(topic) === set) this.#topics.delete(topic);
    };
    req.on("close", drop);
    res.on("close", drop);
  }

  publish(topic: string, event: string, data: unknown): void {
    const set = this.#topics.get(topic);
    if (set === undefined || set.size === 0) return;
    const text = frame(event, data);
    for (const res of set) res.write(text);
  }

  #ping(): void {
    for (const set of this.#topics.values()) for (const res of set) res.write(": keep-alive\n\n");
  }

  /** Ends every stream (on close of the stub). */
  close(): void {
    clearInterval(this.#timer);
    for (const set of this.#topics.values()) for (const res of set) res.end();
    this.#topics.clear();
  }
}

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
