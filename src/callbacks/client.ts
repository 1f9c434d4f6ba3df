/**
 * The callback client (CONTRACT section 5): heartbeats, events and `done` to `${BACKEND_BASE_URL}/v1/jobs/{id}/{kind}`.
 *
 * It never blocks or slows the child: `heartbeat()` and `event()` only enqueue. One sender delivers in order
 * (events before the pending heartbeat, `done` last), so the backend sees `started` before progress and nothing
 * after `done`. The queue is bounded: only the newest pending heartbeat is kept (a newer one also stops the
 * retries of an older one), events beyond the bound drop the oldest with a warning. 5xx, 429, timeouts and
 * network errors are retried with backoff and jitter, honouring Retry-After; 401, 409 and other 4xx are not
 * (logged as CALLBACK_REJECTED). Once `done` is called, pending events and the last heartbeat get one attempt
 * each (the first failure skips the rest) and `done` is retried until delivered or DONE_DEADLINE_SECONDS pass. Every report keeps one Idempotency-Key across its
 * retries. The token is read before each request (CALLBACK_TOKEN_FILE is re-read so a rotated token is used).
 */
import { randomUUID } from "node:crypto";
import { readFile as fsReadFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { CallbackConfig } from "../config/index.ts";
import type { DonePayload, EventPayload, HeartbeatPayload } from "../contract/callbacks.ts";
import { callbackPath, type CallbackKind } from "../contract/paths.ts";
import { AgentError } from "../errors/index.ts";
import { abortableSleep, parseRetryAfter, retry, type RetryPolicy } from "../retry/index.ts";
import { undiciTransport, type Transport } from "./transport.ts";

type Stamped = "job_id" | "trace_id" | "timestamp";
export type HeartbeatFields = Omit<HeartbeatPayload, Stamped | "metrics"> & { metrics?: Record<string, number> };
export type EventFields = Omit<EventPayload, Stamped>;
export type DoneFields = Omit<DonePayload, Stamped | "checkpoints"> & { checkpoints?: DonePayload["checkpoints"] };

export interface CallbackClient {
  /** Queues a heartbeat; replaces a pending one. */
  heartbeat(fields: HeartbeatFields): void;
  /** Queues an event. */
  event(type: string, message?: string, data?: Record<string, unknown>): void;
  /** Sends the pending events, then `done`; resolves true when the backend accepted `done` before the deadline. */
  done(fields: DoneFields): Promise<boolean>;
  /** Starts delivering (reports queued before are kept). Called once the child runs, to keep start-up lean. */
  start(): void;
  /** Stops delivering and releases connections. */
  close(): Promise<void>;
}

export interface CallbackClientOptions {
  config: CallbackConfig;
  jobId: string;
  traceId: string;
  traceparent: string;
  logger: Logger;
  transport?: Transport;
  readFile?: (path: string) => Promise<string>;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  /** Most events kept waiting (default 256). */
  maxPendingEvents?: number;
  /** Backoff of heartbeats and events (default 8 retries, 500 ms to 30 s, x2, 50 % jitter). */
  retryPolicy?: Partial<Pick<RetryPolicy, "maxRetries" | "minDelayMs" | "maxDelayMs" | "factor" | "jitter">>;
}

/** A failed callback response. */
export class CallbackHttpError extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  constructor(status: number, retryAfterMs: number | undefined) {
    super(`backend answered HTTP ${status}`);
    this.name = "CallbackHttpError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

interface Item {
  kind: CallbackKind;
  body: Record<string, unknown>;
  key: string;
}

const MAX_MESSAGE = 16_384;
const MAX_LOG_TAIL = 65_536;

/** Whether a failure is worth another attempt: 5xx, 429, 408, timeouts and network errors. */
export function isRetryableCallbackError(error: unknown): boolean {
  if (error instanceof CallbackHttpError) return error.status >= 500 || error.status === 429 || error.status === 408;
  return true;
}

export function createCallbackClient(options: CallbackClientOptions): CallbackClient {
  const { config, logger } = options;
  const log = logger.child({ component: "callbacks" });
  if (config.baseUrl === undefined) throw new TypeError("createCallbackClient: BACKEND_BASE_URL is not set");
  // A base with a path (http://host/api) keeps it: /v1/jobs/... is appended to it.
  const base = new URL(config.baseUrl.href.endsWith("/") ? config.baseUrl.href : `${config.baseUrl.href}/`);
  const transport = options.transport ?? undiciTransport();
  const readFile = options.readFile ?? ((p: string) => fsReadFile(p, "utf8"));
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? abortableSleep;
  const maxEvents = options.maxPendingEvents ?? 256;
  // About 90 s of retries (0.5, 1, 2, 4, 8, 16, 30, 30 s) rides out a backend restart.
  const basePolicy = {
    maxRetries: 8,
    minDelayMs: 500,
    maxDelayMs: 30_000,
    factor: 2,
    jitter: 0.5,
    ...options.retryPolicy,
  };

  const events: Item[] = [];
  let pendingHeartbeat: Item | null = null;
  let started = false;
  let sending: Promise<void> | null = null;
  let closed = false;
  let finishing: { deadline: number; signal: AbortSignal } | null = null;
  let droppedEvents = 0;
  /** Aborts the waits between retries of the heartbeat/event being delivered when `done` starts. */
  let currentWait: AbortController | null = null;

  const stamp = (body: Record<string, unknown>): Record<string, unknown> => ({
    job_id: options.jobId,
    trace_id: options.traceId,
    ...body,
    timestamp: new Date(now()).toISOString(),
  });

  /** A token this client renewed itself (newer than the configured one), and whether the backend can renew. */
  let renewed: string | undefined;
  let renewal: Promise<void> | undefined;
  let canRenew = true;
  /** The token the backend last refused to renew: not asked again (a rotated one may be). */
  let refused: string | undefined;

  /**
   * The token for the next request: the configured one (CALLBACK_TOKEN_FILE re-read, so a rotated Secret wins),
   * or one this client renewed when that expires later. Jobs outlive a 24 h token: in the last quarter of a
   * token's life the client asks the backend for a new one (`POST /v1/jobs/{id}/token`, the backend stub's
   * renewal) with the still-valid one; a backend without that endpoint is asked once.
   */
  async function token(): Promise<string> {
    const laterOf = (t: string): string =>
      renewed !== undefined && (expiryOf(renewed) ?? 0) > (expiryOf(t) ?? 0) ? renewed : t;
    const best = laterOf(await configuredToken());
    if (!canRenew || best === refused || !dueForRenewal(best, now())) return best;
    renewal ??= renew(best).finally(() => (renewal = undefined));
    await renewal;
    return laterOf(best);
  }

  async function renew(current: string): Promise<void> {
    const url = new URL(`v1/jobs/${encodeURIComponent(options.jobId)}/token`, base);
    try {
      const res = await transport.post(url.href, {
        headers: {
          authorization: `Bearer ${current}`,
          "content-type": "application/json",
          traceparent: options.traceparent,
        },
        body: "{}",
        signal: AbortSignal.timeout(config.requestTimeoutSeconds * 1000),
        readBody: true,
      });
      const fresh = res.status === 200 ? (JSON.parse(res.body ?? "{}") as { token?: unknown }).token : undefined;
      if (typeof fresh === "string" && fresh.split(".").length === 3) {
        renewed = fresh;
        log.info({ expires_at: new Date((expiryOf(fresh) ?? 0) * 1000).toISOString() }, "callback token renewed");
        return;
      }
      if (res.status === 404 || res.status === 405)
        canRenew = false; // a backend that does not renew
      else if (res.status === 401 || res.status === 403 || res.status === 409) refused = current;
      log.warn({ code: "CALLBACK_REJECTED", status: res.status }, "callback token renewal refused");
    } catch (error) {
      log.warn({ code: "CALLBACK_FAILED", err: describe(error) }, "callback token renewal failed; will retry");
    }
  }

  async function configuredToken(): Promise<string> {
    if (config.tokenFile !== undefined) {
      try {
        const t = (await readFile(config.tokenFile)).trim();
        if (t !== "") return t;
      } catch (error) {
        if (config.token === undefined)
          throw new AgentError("CALLBACK_FAILED", `cannot read CALLBACK_TOKEN_FILE ${config.tokenFile}`, {
            cause: error,
          });
      }
    }
    if (config.token !== undefined) return config.token.reveal();
    throw new AgentError("CALLBACK_FAILED", `CALLBACK_TOKEN_FILE ${config.tokenFile ?? ""} is empty`);
  }

  async function attempt(item: Item, signal: AbortSignal): Promise<void> {
    const url = new URL(callbackPath(options.jobId, item.kind).slice(1), base);
    const res = await transport.post(url.href, {
      headers: {
        authorization: `Bearer ${await token()}`,
        "content-type": "application/json",
        "idempotency-key": item.key,
        traceparent: options.traceparent,
      },
      body: JSON.stringify(item.body),
      signal,
    });
    if (res.status >= 200 && res.status < 300) return;
    const ra = res.headers["retry-after"];
    throw new CallbackHttpError(res.status, parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, now()));
  }

  /**
   * Delivers one item under a policy; logs the outcome; never throws. "interrupted" = `done` started while it
   * waited to retry: the caller puts an event back so it gets its last attempt before `done`.
   */
  async function deliver(
    item: Item,
    policy: RetryPolicy,
    outer?: AbortSignal,
  ): Promise<"ok" | "failed" | "interrupted"> {
    const wait = new AbortController();
    currentWait = wait;
    const timeoutMs = config.requestTimeoutSeconds * 1000;
    try {
      await retry(
        (n) => {
          const signals = [AbortSignal.timeout(timeoutMs)];
          if (outer !== undefined) signals.push(outer);
          if (n > 1) log.debug({ kind: item.kind, attempt: n }, "retrying callback");
          return attempt(item, AbortSignal.any(signals));
        },
        policy,
        {
          now,
          random: options.random,
          sleep: (ms) => sleep(ms, outer === undefined ? wait.signal : AbortSignal.any([wait.signal, outer])),
          onRetry: ({ error, delayMs }) =>
            log.debug({ kind: item.kind, err: describe(error), delay_ms: delayMs }, "callback failed; will retry"),
        },
      );
      return "ok";
    } catch (error) {
      if (wait.signal.aborted && error === wait.signal.reason && !closed) return "interrupted";
      if (error instanceof CallbackHttpError && !isRetryableCallbackError(error)) {
        log.warn(
          { code: "CALLBACK_REJECTED", kind: item.kind, status: error.status },
          `backend rejected the ${item.kind} callback (HTTP ${error.status}); not retried`,
        );
      } else {
        log.warn(
          { code: "CALLBACK_FAILED", kind: item.kind, err: describe(error) },
          `${item.kind} callback not delivered`,
        );
      }
      return "failed";
    } finally {
      if (currentWait === wait) currentWait = null;
    }
  }

  function reportPolicy(item: Item): RetryPolicy {
    return {
      ...basePolicy,
      retryOn: (error) => {
        if (finishing !== null || closed) return false;
        // A newer heartbeat makes this one stale: deliver that instead.
        if (item.kind === "heartbeat" && pendingHeartbeat !== null) return false;
        return isRetryableCallbackError(error);
      },
      retryAfterMs: (e) => (e instanceof CallbackHttpError ? e.retryAfterMs : undefined),
    };
  }

  async function pump(): Promise<void> {
    for (;;) {
      if (closed) return;
      let item: Item | undefined = events.shift();
      if (item === undefined && pendingHeartbeat !== null) {
        item = pendingHeartbeat;
        pendingHeartbeat = null;
      }
      if (item === undefined) return;
      if (finishing !== null) {
        // Winding down: one attempt each, within the done deadline; a failure means the backend is unwell,
        // so the remaining events give way to `done`.
        const outcome = await deliver(item, { ...reportPolicy(item), maxRetries: 0 }, finishing.signal);
        if (outcome !== "ok") {
          if (events.length > 0) log.warn({ dropped: events.length }, "dropping pending events to deliver done");
          events.length = 0;
          pendingHeartbeat = null;
          return;
        }
      } else {
        const outcome = await deliver(item, reportPolicy(item));
        if (outcome === "interrupted" && item.kind === "event") events.unshift(item);
      }
    }
  }

  function kick(): void {
    if (!started || closed || sending !== null) return;
    sending = pump().finally(() => {
      sending = null;
      if (finishing === null && (events.length > 0 || pendingHeartbeat !== null)) kick();
    });
  }

  return {
    heartbeat(fields) {
      if (closed || finishing !== null) return;
      pendingHeartbeat = { kind: "heartbeat", body: stamp({ metrics: {}, ...fields }), key: randomUUID() };
      kick();
    },
    event(type, message, data) {
      if (closed || finishing !== null) return;
      const body: Record<string, unknown> = { type };
      if (message !== undefined)
        body.message = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
      if (data !== undefined) body.data = data;
      if (events.length >= maxEvents) {
        events.shift();
        if (droppedEvents++ % 100 === 0)
          log.warn({ dropped: droppedEvents }, "callback queue full: oldest events dropped");
      }
      events.push({ kind: "event", body: stamp(body), key: randomUUID() });
      kick();
    },
    async done(fields) {
      if (closed) return false;
      const deadlineMs = config.doneDeadlineSeconds * 1000;
      finishing = { deadline: now() + deadlineMs, signal: AbortSignal.timeout(Math.max(1, deadlineMs)) };
      currentWait?.abort(new Error("done started"));
      started = true;
      const body: Record<string, unknown> = { checkpoints: [], ...fields };
      if (typeof fields.log_tail === "string" && fields.log_tail.length > MAX_LOG_TAIL)
        body.log_tail = fields.log_tail.slice(-MAX_LOG_TAIL);
      if (typeof fields.reason === "string" && fields.reason.length > 4_096)
        body.reason = `${fields.reason.slice(0, 4_093)}...`;
      const item: Item = { kind: "done", body: stamp(body), key: randomUUID() };
      const { signal } = finishing;
      if (sending !== null) await Promise.race([sending, new Promise((r) => signal.addEventListener("abort", r))]);
      sending = null;
      await pump();
      if (signal.aborted) {
        log.warn(
          { code: "CALLBACK_FAILED", deadline_seconds: config.doneDeadlineSeconds },
          "done not delivered before the deadline",
        );
        return false;
      }
      const ok =
        (await deliver(
          item,
          {
            ...basePolicy,
            maxRetries: Infinity,
            maxDelayMs: Math.min(basePolicy.maxDelayMs, 5_000),
            deadlineMs: Math.max(0, finishing.deadline - now()),
            retryOn: (error) => !closed && isRetryableCallbackError(error),
            retryAfterMs: (e) => (e instanceof CallbackHttpError ? e.retryAfterMs : undefined),
          },
          signal,
        )) === "ok";
      if (ok) log.debug("done delivered");
      return ok;
    },
    start() {
      started = true;
      kick();
    },
    async close() {
      closed = true;
      currentWait?.abort(new Error("closed"));
      await transport.close();
    },
  };
}

function describe(error: unknown): string {
  if (error instanceof CallbackHttpError) return `HTTP ${error.status}`;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const cause = (error as { cause?: { code?: unknown } }).cause;
    return [
      error.name,
      typeof code === "string" ? code : undefined,
      typeof cause?.code === "string" ? cause.code : undefined,
    ]
      .filter(Boolean)
      .join(" ");
  }
  return String(error);
}

/** `iat` and `exp` of a JWT (seconds), read without verifying it: only to know when to renew. */
function timesOf(jwt: string): { iat?: number; exp?: number } {
  const payload = jwt.split(".")[1];
  if (payload === undefined) return {};
  try {
    const { iat, exp } = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
    return { ...(typeof iat === "number" && { iat }), ...(typeof exp === "number" && { exp }) };
  } catch {
    return {};
  }
}

/** `exp` of a JWT (seconds); undefined when absent or unreadable. */
export function expiryOf(jwt: string): number | undefined {
  return timesOf(jwt).exp;
}

/** Whether a token is in the last quarter of its life (`iat` to `exp`), or past it. */
export function dueForRenewal(jwt: string, nowMs: number): boolean {
  const { iat, exp } = timesOf(jwt);
  if (exp === undefined) return false;
  const life = iat !== undefined && iat < exp ? exp - iat : 24 * 3600;
  return exp * 1000 - nowMs < (life * 1000) / 4;
}
