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
 * This file composes the parts, each in its own file: `queue.ts` (the waiting reports and their counts),
 * `delivery.ts` (the one sender: batches, retries, the flush before `done`), `send.ts` (one request and what its
 * answer means) and `token.ts` (which token, and its renewal: a 401 is final only on the freshest token), the
 * last two put together by `backend-send.ts`.
 */
import { randomUUID } from "node:crypto";
import { readFile as fsReadFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { CallbackConfig } from "../config/index.ts";
import type { DonePayload, EventPayload, HeartbeatPayload } from "../contract/callbacks.ts";
import { abortableSleep } from "../retry/index.ts";
import { createBackendSend } from "./backend-send.ts";
import { createDelivery, type Backoff } from "./delivery.ts";
import { ReportQueue, type NewReport, type ReportCounts, type ReportKind } from "./queue.ts";
import { CallbackHttpError, describeFailure, isRetryableCallbackError, Stop } from "./send.ts";
import { undiciTransport, type Transport } from "./transport.ts";

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

export interface DeliveryStats extends ReportCounts {
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
  /** Backoff of reports (default: the retry helper's DEFAULT_RETRY_POLICY, waits up to CALLBACK_RETRY_MAX_SECONDS). */
  retryPolicy?: Backoff;
}

const MAX_MESSAGE = 16_384;
const MAX_LOG_TAIL = 65_536;
const MAX_REASON = 4_096;

export function createCallbackClient(options: CallbackClientOptions): CallbackClient {
  const { config, jobId, logger } = options;
  const log = logger.child({ component: "callbacks" });
  if (config.baseUrl === undefined) throw new TypeError("createCallbackClient: BACKEND_BASE_URL is not set");
  const transport = options.transport ?? undiciTransport();
  const now = options.now ?? Date.now;
  const run = options.run ?? { attempt: 0, containerRestart: 0 };
  let requests = 0;

  const stop = new Stop();
  const send = createBackendSend({
    config,
    jobId,
    transport,
    traceparent: options.traceparent,
    stop,
    readFile: options.readFile ?? ((p: string) => fsReadFile(p, "utf8")),
    now,
    log,
    onRequest: () => (requests += 1),
  });
  const queue = new ReportQueue({ maxPending: options.maxPendingReports ?? 100_000, log });
  const delivery = createDelivery({
    jobId,
    queue,
    send,
    stop,
    maxBatch: options.maxBatch ?? 200,
    backoff: {
      ...(config.retryMaxDelaySeconds !== undefined && { maxDelayMs: config.retryMaxDelaySeconds * 1000 }),
      ...options.retryPolicy,
    },
    now,
    sleep: options.sleep ?? abortableSleep,
    ...(options.random !== undefined && { random: options.random }),
    log,
  });
  let closed = false;

  const stamp = (body: Record<string, unknown>): Record<string, unknown> => ({
    job_id: jobId,
    trace_id: options.traceId,
    ...body,
    attempt: run.attempt,
    ...(run.containerRestart > 0 && { container_restart: run.containerRestart }),
    timestamp: new Date(now()).toISOString(),
  });

  function enqueue(report: Omit<NewReport, "key">): void {
    if (!delivery.accepting) return;
    if (queue.push({ ...report, key: randomUUID() })) delivery.kick();
  }

  const stats = (): DeliveryStats => ({ ...queue.counts(), requests });

  return {
    heartbeat(fields) {
      enqueue({ kind: "heartbeat", body: stamp({ metrics: {}, ...fields }) });
    },
    liveness(fields) {
      enqueue({ kind: "heartbeat", body: stamp({ metrics: {}, ...fields, liveness: true }), liveness: true });
    },
    event(type, message, data) {
      const body: Record<string, unknown> = { type };
      if (message !== undefined) body.message = truncate(message, MAX_MESSAGE);
      if (data !== undefined) body.data = data;
      enqueue({ kind: "event", body: stamp(body) });
    },
    async done(fields) {
      if (closed) return false;
      const deadlineMs = config.doneDeadlineSeconds * 1000;
      const deadline = now() + deadlineMs;
      // The queue gets the deadline less a reserve for `done` itself: a backend that stays down for the whole
      // deadline still gets the count of what it missed, if it comes back in time for `done`.
      await delivery.flush(deadline - Math.min(deadlineMs / 4, 5_000));
      const left = queue.dropAll("done deadline");
      if (left > 0)
        log.warn(
          { code: "CALLBACK_FAILED", dropped: left, deadline_seconds: config.doneDeadlineSeconds },
          "reports not delivered before the done deadline",
        );
      let delivered = false;
      try {
        const body = stamp(doneBody(fields, queue.droppedReports()));
        await delivery.sendDone(JSON.stringify(body), randomUUID(), deadline);
        delivered = true;
      } catch (error) {
        logDoneFailure(error);
      }
      // One line that accounts for every report: what the fault suite and an operator read (a run that never
      // started reports nothing; its one-line reason stays the only line).
      const s = stats();
      log[s.queued.heartbeat + s.queued.event > 0 ? "info" : "debug"](
        { ...s, done_delivered: delivered },
        "callback delivery",
      );
      return delivered;
    },
    start() {
      delivery.start();
    },
    async close() {
      closed = true;
      delivery.close();
      await transport.close();
    },
    stats,
  };

  function logDoneFailure(error: unknown): void {
    if (error instanceof CallbackHttpError && !isRetryableCallbackError(error))
      log.warn(
        { code: "CALLBACK_REJECTED", kind: "done", status: error.status, reason: error.code },
        `backend rejected the done callback (HTTP ${error.status}${error.code === undefined ? "" : ` ${error.code}`}); not retried`,
      );
    else
      log.warn(
        { code: "CALLBACK_FAILED", err: describeFailure(error), deadline_seconds: config.doneDeadlineSeconds },
        "done not delivered before the deadline",
      );
  }
}

/** `done`'s payload before stamping: long texts cut (the log tail keeps its end), the dropped reports counted. */
function doneBody(
  fields: DoneFields,
  dropped: Partial<Record<ReportKind, number>> | undefined,
): Record<string, unknown> {
  const body: Record<string, unknown> = { checkpoints: [], ...fields };
  if (typeof fields.log_tail === "string" && fields.log_tail.length > MAX_LOG_TAIL)
    body.log_tail = fields.log_tail.slice(-MAX_LOG_TAIL);
  if (typeof fields.reason === "string") body.reason = truncate(fields.reason, MAX_REASON);
  if (dropped !== undefined) body.dropped_reports = dropped;
  return body;
}

/** `text` cut to `max` characters, ending in "..." when cut. */
function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
