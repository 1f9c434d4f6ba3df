/**
 * The callback client (CONTRACT section 5): heartbeats, events and `done` to `${BACKEND_BASE_URL}/v1/jobs/{id}/...`.
 *
 * It never blocks or slows the child: `heartbeat()` and `event()` only enqueue. Delivery guarantee: every report
 * the child made reaches the backend in order, at least once (one Idempotency-Key per report across its retries, so
 * the backend applies it once), or is counted in `done`'s `dropped_reports`. One sender delivers the queue in order;
 * when several reports wait it sends them as one `POST /v1/jobs/{id}/batch` (a backend without that endpoint gets
 * them one by one). 5xx, 429 (honouring Retry-After), timeouts and network errors are retried with backoff and
 * jitter for as long as the job runs. Only liveness heartbeats merge: one is skipped while reports are waiting.
 * Bounds: at most `maxPendingReports` wait (a report beyond that is dropped and counted); once `done` is called the
 * queue is delivered first, within DONE_DEADLINE_SECONDS less a reserve for `done` itself, and what is left is
 * counted; `done` is retried until delivered or the deadline passes.
 *
 * Tokens: read before each request (CALLBACK_TOKEN_FILE re-read, so a rotated Secret wins), renewed in the last
 * quarter of their life. A 401 makes the client fetch a fresh token (the file again, or a renewal) and send again;
 * only a 401 on a token as fresh as it can get is final (CALLBACK_REJECTED, with the backend's error code).
 */
import { randomUUID } from "node:crypto";
import { readFile as fsReadFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { CallbackConfig } from "../config/index.ts";
import type { BatchAnswer, BatchResult, DonePayload, EventPayload, HeartbeatPayload } from "../contract/callbacks.ts";
import { batchPath, callbackPath, type CallbackKind } from "../contract/paths.ts";
import { AgentError } from "../errors/index.ts";
import { abortableSleep, parseRetryAfter, retry, type RetryPolicy } from "../retry/index.ts";
import { undiciTransport, type PostResult, type Transport } from "./transport.ts";

type Stamped = "job_id" | "trace_id" | "timestamp" | "attempt" | "container_restart";
export type HeartbeatFields = Omit<HeartbeatPayload, Stamped | "metrics" | "liveness"> & {
  metrics?: Record<string, number>;
};
export type EventFields = Omit<EventPayload, Stamped>;
export type DoneFields = Omit<DonePayload, Stamped | "checkpoints" | "dropped_reports"> & {
  checkpoints?: DonePayload["checkpoints"];
};

export interface CallbackClient {
  /** Queues a heartbeat for a report of the child (delivered or counted). */
  heartbeat(fields: HeartbeatFields): void;
  /** Queues a liveness heartbeat: skipped while other reports wait (they show the agent is alive). */
  liveness(fields: HeartbeatFields): void;
  /** Queues an event. */
  event(type: string, message?: string, data?: Record<string, unknown>): void;
  /** Delivers what waits, then `done`; resolves true when the backend accepted `done` before the deadline. */
  done(fields: DoneFields): Promise<boolean>;
  /** Starts delivering (reports queued before are kept). Called once the child runs, to keep start-up lean. */
  start(): void;
  /** Stops delivering and releases connections. */
  close(): Promise<void>;
  /** Reports queued so far, delivered and dropped, by kind (for tests, benches and the agent's last log line). */
  stats(): DeliveryStats;
}

export interface DeliveryStats {
  queued: Record<"heartbeat" | "event", number>;
  delivered: Record<"heartbeat" | "event", number>;
  dropped: Record<"heartbeat" | "event", number>;
  requests: number;
}

/** Which run of the job this agent is (see the contract's `attempt` and `container_restart`). */
export interface RunNumber {
  attempt: number;
  containerRestart: number;
}

export interface CallbackClientOptions {
  config: CallbackConfig;
  jobId: string;
  traceId: string;
  traceparent: string;
  logger: Logger;
  run?: RunNumber;
  transport?: Transport;
  readFile?: (path: string) => Promise<string>;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  /** Most reports kept waiting (default 100,000: a few tens of MiB; hours of epochs at any sane rate). */
  maxPendingReports?: number;
  /** Most reports per batch request (default 200). */
  maxBatch?: number;
  /** Backoff of reports (default 500 ms to 30 s, x2, 50 % jitter; retried while the job runs). */
  retryPolicy?: Partial<Pick<RetryPolicy, "minDelayMs" | "maxDelayMs" | "factor" | "jitter">>;
}

/** A failed callback response. */
export class CallbackHttpError extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  /** The backend's error code (`{"error": {"code"}}`), when it gave one. */
  readonly code: string | undefined;
  constructor(status: number, retryAfterMs: number | undefined, code?: string, reason?: string) {
    super(`backend answered HTTP ${status}${code === undefined ? "" : ` (${code}${reason ? `: ${reason}` : ""})`}`);
    this.name = "CallbackHttpError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.code = code;
  }
}

type ReportKind = "heartbeat" | "event";

interface Item {
  kind: CallbackKind;
  body: Record<string, unknown>;
  key: string;
  liveness?: boolean;
}

const MAX_MESSAGE = 16_384;
const MAX_LOG_TAIL = 65_536;
/** Body bytes a batch stays under (the backend stub's default limit is 1 MiB). */
const MAX_BATCH_BYTES = 256 * 1024;
/** Retries while winding down wait at most this long: the deadline is short and the backend may be back. */
const FINISHING_MAX_DELAY_MS = 1_000;

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
  const maxPending = options.maxPendingReports ?? 100_000;
  const maxBatch = options.maxBatch ?? 200;
  const run = options.run ?? { attempt: 0, containerRestart: 0 };
  const backoff = {
    minDelayMs: 500,
    maxDelayMs: (config.retryMaxDelaySeconds ?? 30) * 1000,
    factor: 2,
    jitter: 0.5,
    ...options.retryPolicy,
  };

  const queue: Item[] = [];
  let started = false;
  let sending: Promise<void> | null = null;
  let closed = false;
  /** Set by `done`: when the queue must be delivered by (`flushBy`) and when `done` must be (`deadline`). */
  let finishing: { flushBy: number; deadline: number } | null = null;
  /** Aborted to cut a wait between retries short (`done` started) or an attempt in flight (gave up, closed). */
  let wake = new AbortController();
  let stop = new AbortController();
  let batchSupported = true;
  const stats: DeliveryStats = {
    queued: { heartbeat: 0, event: 0 },
    delivered: { heartbeat: 0, event: 0 },
    dropped: { heartbeat: 0, event: 0 },
    requests: 0,
  };
  let boundWarned = false;

  const stamp = (body: Record<string, unknown>): Record<string, unknown> => ({
    job_id: options.jobId,
    trace_id: options.traceId,
    ...body,
    attempt: run.attempt,
    ...(run.containerRestart > 0 && {
      container_restart: run.containerRestart,
    }),
    timestamp: new Date(now()).toISOString(),
  });

  function drop(item: Item, why: string): void {
    if (item.liveness === true || item.kind === "done") return;
    const kind = item.kind as ReportKind;
    stats.dropped[kind] += 1;
    log.debug({ kind, why }, "report dropped");
  }

  function enqueue(item: Item): void {
    if (closed || finishing !== null) return;
    if (item.liveness !== true) stats.queued[item.kind as ReportKind] += 1;
    if (queue.length >= maxPending) {
      drop(item, "bound");
      if (!boundWarned) {
        boundWarned = true;
        log.warn(
          { code: "CALLBACK_FAILED", max_pending: maxPending },
          "callback queue full (the backend is not taking reports): newer reports are dropped and counted in done",
        );
      }
      return;
    }
    queue.push(item);
    kick();
  }

  // ---- tokens ----

  /** A token this client renewed itself (newer than the configured one), and whether the backend can renew. */
  let renewed: string | undefined;
  let renewal: Promise<void> | undefined;
  let canRenew = true;
  /** The token the backend last refused to renew: not asked again (a rotated one may be). */
  let refused: string | undefined;

  const laterOf = (t: string): string =>
    renewed !== undefined && (expiryOf(renewed) ?? 0) > (expiryOf(t) ?? 0) ? renewed : t;

  /**
   * The token for the next request: the configured one (CALLBACK_TOKEN_FILE re-read, so a rotated Secret wins),
   * or one this client renewed when that expires later. Jobs outlive a 24 h token: in the last quarter of a
   * token's life the client asks the backend for a new one (`POST /v1/jobs/{id}/token`, the backend stub's
   * renewal) with the still-valid one; a backend without that endpoint is asked once. `rejected` is a token the
   * backend just answered 401 (expired) to: it is renewed whatever its age (the stub accepts a just-expired one).
   */
  async function token(rejected?: string): Promise<string> {
    const best = laterOf(await configuredToken());
    const due = rejected !== undefined ? best === rejected || dueForRenewal(best, now()) : dueForRenewal(best, now());
    if (!canRenew || best === refused || !due) return best;
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
        signal: AbortSignal.any([AbortSignal.timeout(config.requestTimeoutSeconds * 1000), stop.signal]),
        readBody: true,
      });
      const fresh = res.status === 200 ? (parseJson(res.body) as { token?: unknown } | undefined)?.token : undefined;
      if (typeof fresh === "string" && fresh.split(".").length === 3) {
        renewed = fresh;
        log.info({ expires_at: new Date((expiryOf(fresh) ?? 0) * 1000).toISOString() }, "callback token renewed");
        return;
      }
      if (res.status === 404 || res.status === 405)
        canRenew = false; // a backend that does not renew
      else if (res.status === 401 || res.status === 403 || res.status === 409) refused = current;
      log.warn(
        {
          code: "CALLBACK_REJECTED",
          status: res.status,
          reason: errorCodeOf(res.body),
        },
        "callback token renewal refused",
      );
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

  // ---- requests ----

  /** One POST; on 401 once more with a fresher token when there is one. Throws CallbackHttpError for non-2xx. */
  async function post(path: string, body: string, key: string, bound?: AbortSignal): Promise<PostResult> {
    const url = new URL(path.slice(1), base).href;
    const send = async (jwt: string): Promise<PostResult> => {
      stats.requests += 1;
      return transport.post(url, {
        headers: {
          authorization: `Bearer ${jwt}`,
          "content-type": "application/json",
          "idempotency-key": key,
          traceparent: options.traceparent,
        },
        body,
        signal: AbortSignal.any([
          AbortSignal.timeout(config.requestTimeoutSeconds * 1000),
          stop.signal,
          ...(bound === undefined ? [] : [bound]),
        ]),
        readBody: true,
      });
    };
    const used = await token();
    let res = await send(used);
    if (res.status === 401) {
      // Rotated, or expired while queued or in flight: a fresher token makes this 401 not final. Only an expired
      // one is renewed (a token of another job or a bad signature is no reason to ask the backend for a new one).
      const code = errorCodeOf(res.body);
      const expired = code === "token_expired" || (code === undefined && (expiryOf(used) ?? Infinity) * 1000 <= now());
      const fresh = await token(expired ? used : undefined);
      if (fresh !== used) {
        log.debug("callback answered 401; sending again with a fresh token");
        res = await send(fresh);
      }
    }
    if (res.status >= 200 && res.status < 300) return res;
    const ra = res.headers["retry-after"];
    const error = parseJson(res.body) as { error?: { code?: unknown; message?: unknown } } | undefined;
    const code = typeof error?.error?.code === "string" ? error.error.code : undefined;
    const reason = typeof error?.error?.message === "string" ? error.error.message.slice(0, 200) : undefined;
    throw new CallbackHttpError(res.status, parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, now()), code, reason);
  }

  /**
   * Retries `fn` while the failure is retryable and the client may still deliver (not closed; while winding
   * down, not past `until()`). Throws the last failure.
   */
  async function withRetries<T>(what: string, fn: () => Promise<T>, until: () => number): Promise<T> {
    const policy: RetryPolicy = {
      ...backoff,
      maxRetries: Infinity,
      retryOn: (error) => !closed && !stop.signal.aborted && isRetryableCallbackError(error) && now() < until(),
      retryAfterMs: (e) => (e instanceof CallbackHttpError ? e.retryAfterMs : undefined),
    };
    return retry(fn, policy, {
      now,
      ...(options.random !== undefined && { random: options.random }),
      sleep: async (ms) => {
        const capped = finishing === null ? ms : Math.min(ms, FINISHING_MAX_DELAY_MS, Math.max(0, until() - now()));
        // `done` starting cuts the wait short: the next attempt runs at once, under the shorter finishing delays.
        await sleep(capped, AbortSignal.any([wake.signal, stop.signal])).catch(() => undefined);
      },
      onRetry: ({ error, delayMs }) =>
        log.debug({ kind: what, err: describe(error), delay_ms: delayMs }, "callback failed; will retry"),
    });
  }

  function rejected(items: Item[], error: CallbackHttpError | { status: number; code?: string }): void {
    for (const item of items) drop(item, `HTTP ${error.status}`);
    log.warn(
      {
        code: "CALLBACK_REJECTED",
        status: error.status,
        reason: error.code,
        reports: items.length,
      },
      `backend rejected ${items.length === 1 ? `a ${items[0]!.kind}` : `${items.length} reports`} (HTTP ${error.status}${error.code === undefined ? "" : ` ${error.code}`}); not retried`,
    );
  }

  /** How many reports from the queue's head make one batch: at most `maxBatch`, and well under a 1 MiB body. */
  function batchLength(): number {
    let n = 0;
    let bytes = 0;
    for (const item of queue) {
      if (n >= maxBatch) break;
      // Messages are capped at 16 KiB, so a batch of events could pass a backend's body limit without this.
      bytes += JSON.stringify(item.body).length + 96;
      if (n > 0 && bytes > MAX_BATCH_BYTES) break;
      n += 1;
    }
    return Math.max(1, n);
  }

  /** Delivers the queue's head (one report, or a batch): how many reports it settled (0: none, send again; -1: gave up). */
  async function deliverHead(): Promise<number> {
    const n = batchSupported ? batchLength() : 1;
    const items = queue.slice(0, n);
    const until = (): number => finishing?.flushBy ?? Infinity;
    try {
      if (n === 1) {
        const item = items[0]!;
        await withRetries(
          item.kind,
          () => post(callbackPath(options.jobId, item.kind), JSON.stringify(item.body), item.key),
          until,
        );
        if (item.liveness !== true) stats.delivered[item.kind as ReportKind] += 1;
        return 1;
      }
      const body = JSON.stringify({
        job_id: options.jobId,
        reports: items.map((i) => ({
          kind: i.kind,
          idempotency_key: i.key,
          payload: i.body,
        })),
      });
      // The batch's own key: a replay of the same group; each report is deduplicated by its own key anyway.
      const key = randomUUID();
      const res = await withRetries("batch", () => post(batchPath(options.jobId), body, key), until);
      const answer = parseJson(res.body) as BatchAnswer | undefined;
      // A 2xx without per-report answers accepted the whole batch.
      const results = Array.isArray(answer?.results)
        ? answer.results
        : items.map(() => ({ status: res.status }) as BatchResult);
      const refusedItems: Item[] = [];
      let firstRefusal: { status: number; code?: string } | undefined;
      items.forEach((item, i) => {
        const r = results[i];
        if (r !== undefined && r.status >= 200 && r.status < 300) {
          if (item.liveness !== true) stats.delivered[item.kind as ReportKind] += 1;
        } else {
          refusedItems.push(item);
          firstRefusal ??= {
            status: r?.status ?? 0,
            ...(r?.error?.code !== undefined && { code: r.error.code }),
          };
        }
      });
      if (refusedItems.length > 0) rejected(refusedItems, firstRefusal!);
      return n;
    } catch (error) {
      if (error instanceof CallbackHttpError && !isRetryableCallbackError(error)) {
        if (n > 1 && (error.status === 404 || error.status === 405) && error.code !== "job_not_found") {
          // A backend without the batch endpoint: one report per request from now on.
          batchSupported = false;
          log.info({ status: error.status }, "backend has no batch endpoint; sending reports one by one");
          return 0;
        }
        rejected(items, error);
        return n;
      }
      log.warn({ code: "CALLBACK_FAILED", err: describe(error), reports: n }, "reports not delivered yet");
      return -1;
    }
  }

  async function pump(): Promise<void> {
    while (!closed && queue.length > 0) {
      const settled = await deliverHead();
      if (settled < 0) return; // gave up: only when winding down past the flush deadline, or closed
      queue.splice(0, settled);
    }
  }

  function kick(): void {
    if (!started || closed || sending !== null) return;
    sending = pump().finally(() => {
      sending = null;
      if (finishing === null && queue.length > 0) kick();
    });
  }

  return {
    heartbeat(fields) {
      enqueue({
        kind: "heartbeat",
        body: stamp({ metrics: {}, ...fields }),
        key: randomUUID(),
      });
    },
    liveness(fields) {
      if (queue.length > 0) return;
      enqueue({
        kind: "heartbeat",
        body: stamp({ metrics: {}, ...fields, liveness: true }),
        key: randomUUID(),
        liveness: true,
      });
    },
    event(type, message, data) {
      const body: Record<string, unknown> = { type };
      if (message !== undefined)
        body.message = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
      if (data !== undefined) body.data = data;
      enqueue({ kind: "event", body: stamp(body), key: randomUUID() });
    },
    async done(fields) {
      if (closed) return false;
      const deadlineMs = config.doneDeadlineSeconds * 1000;
      const deadline = now() + deadlineMs;
      // The queue gets the deadline less a reserve for `done` itself: a backend that stays down for the whole
      // deadline still gets the count of what it missed, if it comes back in time for `done`.
      const reserve = Math.min(deadlineMs / 4, 5_000);
      finishing = { flushBy: deadline - reserve, deadline };
      wake.abort(new Error("done started"));
      wake = new AbortController();
      started = true;
      // The sender may be between two rounds (a kick that found it busy): loop until the queue is empty.
      while (queue.length > 0 && !closed && now() < finishing.flushBy) {
        kick();
        if (sending === null) break;
        const flushLeft = Math.max(0, finishing.flushBy - now());
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = await Promise.race([
          sending.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), flushLeft + 50))),
        ]);
        clearTimeout(timer);
        if (gaveUp) {
          // Past the flush deadline with a request still in flight: abandon it (its reports may have arrived;
          // they are counted as dropped all the same, since nobody can know).
          stop.abort(new Error("flush deadline"));
          await sending?.catch(() => undefined);
          stop = new AbortController();
          break;
        }
      }
      if (queue.length > 0) {
        for (const item of queue) drop(item, "done deadline");
        log.warn(
          {
            code: "CALLBACK_FAILED",
            dropped: queue.length,
            deadline_seconds: config.doneDeadlineSeconds,
          },
          "reports not delivered before the done deadline",
        );
        queue.length = 0;
      }
      const body: Record<string, unknown> = { checkpoints: [], ...fields };
      if (typeof fields.log_tail === "string" && fields.log_tail.length > MAX_LOG_TAIL)
        body.log_tail = fields.log_tail.slice(-MAX_LOG_TAIL);
      if (typeof fields.reason === "string" && fields.reason.length > 4_096)
        body.reason = `${fields.reason.slice(0, 4_093)}...`;
      const dropped = Object.fromEntries(Object.entries(stats.dropped).filter(([, n]) => n > 0));
      if (Object.keys(dropped).length > 0) body.dropped_reports = dropped;
      const item: Item = { kind: "done", body: stamp(body), key: randomUUID() };
      const doneBound = AbortSignal.timeout(Math.max(1, deadline - now()));
      let delivered = false;
      try {
        await withRetries(
          "done",
          () => post(callbackPath(options.jobId, "done"), JSON.stringify(item.body), item.key, doneBound),
          () => deadline,
        );
        delivered = true;
      } catch (error) {
        if (error instanceof CallbackHttpError && !isRetryableCallbackError(error)) {
          log.warn(
            {
              code: "CALLBACK_REJECTED",
              kind: "done",
              status: error.status,
              reason: error.code,
            },
            `backend rejected the done callback (HTTP ${error.status}${error.code === undefined ? "" : ` ${error.code}`}); not retried`,
          );
        } else {
          log.warn(
            {
              code: "CALLBACK_FAILED",
              err: describe(error),
              deadline_seconds: config.doneDeadlineSeconds,
            },
            "done not delivered before the deadline",
          );
        }
      }
      // One line that accounts for every report: what the fault suite and an operator read (a run that never
      // started reports nothing; its one-line reason stays the only line).
      const reported = stats.queued.heartbeat + stats.queued.event > 0;
      log[reported ? "info" : "debug"]({ ...stats, done_delivered: delivered }, "callback delivery");
      return delivered;
    },
    start() {
      started = true;
      kick();
    },
    async close() {
      closed = true;
      stop.abort(new Error("closed"));
      await transport.close();
    },
    stats() {
      return structuredClone(stats);
    },
  };
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined || text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The error code of a backend's `{"error": {"code"}}` answer. */
function errorCodeOf(text: string | undefined): string | undefined {
  const code = (parseJson(text) as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === "string" ? code : undefined;
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
    return {
      ...(typeof iat === "number" && { iat }),
      ...(typeof exp === "number" && { exp }),
    };
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
