/**
 * The HTTP POST (and the one GET) the agent's clients need (callbacks, the Trainer's status server, MLflow), and
 * its real implementation on undici (imported on first use, so the agent's start-up does not pay for it). Tests
 * use the real one against a real server on 127.0.0.1.
 */
export interface PostResult {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  /** The answer's body (up to 64 KiB), only when the request asked for it with `readBody`. */
  body?: string;
}

export interface Transport {
  post(
    url: string,
    init: { headers: Record<string, string>; body: string; signal: AbortSignal; readBody?: boolean },
  ): Promise<PostResult>;
  /** A GET whose answer's body (up to 64 KiB) is read. */
  get(url: string, init: { headers: Record<string, string>; signal: AbortSignal }): Promise<PostResult>;
  /** Drops keep-alive connections and aborts anything still in flight. */
  close(): Promise<void>;
}

/**
 * An undici-based transport with one keep-alive connection pool; `ca` (PEM) replaces the trusted roots;
 * `insecure` skips certificate checks (MLFLOW_TRACKING_INSECURE_TLS, for a self-signed tracking server).
 */
export function undiciTransport(options: { ca?: string; insecure?: boolean } = {}): Transport {
  let agent: Promise<{ dispatcher: import("undici").Agent; request: typeof import("undici").request }> | undefined;
  const load = () =>
    (agent ??= import("undici").then(({ Agent, request }) => ({
      dispatcher: new Agent({
        keepAliveTimeout: 10_000,
        connections: 4,
        connect: {
          ...(options.ca !== undefined && { ca: options.ca }),
          ...(options.insecure === true && { rejectUnauthorized: false }),
        },
      }),
      request,
    })));
  return {
    async post(url, init) {
      const { dispatcher, request } = await load();
      const res = await request(url, {
        method: "POST",
        headers: init.headers,
        body: init.body,
        signal: init.signal,
        dispatcher,
      });
      if (init.readBody === true) {
        const text = (await res.body.text()).slice(0, 64 * 1024);
        return { status: res.statusCode, headers: res.headers, body: text };
      }
      // The body is not needed; read it so the connection can be reused.
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      return { status: res.statusCode, headers: res.headers };
    },
    async get(url, init) {
      const { dispatcher, request } = await load();
      const res = await request(url, { method: "GET", headers: init.headers, signal: init.signal, dispatcher });
      const text = (await res.body.text()).slice(0, 64 * 1024);
      return { status: res.statusCode, headers: res.headers, body: text };
    },
    async close() {
      if (agent === undefined) return;
      const { dispatcher } = await agent;
      await dispatcher.destroy().catch(() => undefined);
    },
  };
}
