/**
 * The one sender that delivers the report queue in order: the head goes as one report, or as one
 * `POST /v1/jobs/{id}/batch` when several wait (a backend without that endpoint gets them one by one from then
 * on). Failures worth another attempt are retried under the project's retry policy for as long as the job
 * runs; once `done` starts, only until the flush deadline and with short waits.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { batchPath, callbackPath } from "../contract/paths.ts";
import { DEFAULT_RETRY_POLICY, retry, type RetryPolicy } from "../retry/index.ts";
import { batchBody, readBatchAnswer, type Report, type ReportQueue } from "./queue.ts";
import {
  CallbackHttpError,
  describeFailure,
  isRetryableCallbackError,
  parseJson,
  type Send,
  type Stop,
} from "./send.ts";

/** The parts of the retry policy a caller may change (tests shorten the waits). */
export type Backoff = Partial<Pick<RetryPolicy, "minDelayMs" | "maxDelayMs" | "factor" | "jitter">>;

/** Retries while winding down wait at most this long: the deadline is short and the backend may be back. */
const FINISHING_MAX_DELAY_MS = 1_000;

export interface DeliveryOptions {
  jobId: string;
  queue: ReportQueue;
  send: Send;
  /** Shared with the requests: aborted on close, or to abandon a flush. */
  stop: Stop;
  /** Most reports per batch request. */
  maxBatch: number;
  /** Changes to DEFAULT_RETRY_POLICY's backoff. */
  backoff: Backoff;
  now: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  log: Logger;
}

export interface Delivery {
  /** Whether new reports are taken (not closed, `done` not started). */
  readonly accepting: boolean;
  /** Starts delivering (reports queued before are kept). */
  start(): void;
  /** Delivers what was just queued, unless a delivery is running or it has not started. */
  kick(): void;
  /**
   * `done` started: cuts the wait between retries short and delivers the queue until `flushBy`; a request still
   * in flight then is abandoned. What is left waits in the queue.
   */
  flush(flushBy: number): Promise<void>;
  /** Sends `done` with retries until `deadline`; throws the last failure. */
  sendDone(body: string, key: string, deadline: number): Promise<void>;
  close(): void;
}

export function createDelivery(options: DeliveryOptions): Delivery {
  const { jobId, queue, send, stop, maxBatch, now, sleep, log } = options;
  let started = false;
  let closed = false;
  let sending: Promise<void> | null = null;
  /** Set by `flush`: when the queue must be delivered by. */
  let flushBy: number | null = null;
  /** Aborted to cut a wait between retries short when `done` starts (its retries then wait less). */
  let wake = new AbortController();
  let batchSupported = true;

  /**
   * Retries `fn` while the failure is retryable and the client may still deliver (not closed; while winding
   * down, not past `until()`). Throws the last failure.
   */
  async function withRetries<T>(what: string, fn: () => Promise<T>, until: () => number): Promise<T> {
    const policy: RetryPolicy = {
      ...DEFAULT_RETRY_POLICY,
      ...options.backoff,
      maxRetries: Infinity,
      retryOn: (error) => !closed && !stop.signal.aborted && isRetryableCallbackError(error) && now() < until(),
      retryAfterMs: (e) => (e instanceof CallbackHttpError ? e.retryAfterMs : undefined),
    };
    return retry(fn, policy, {
      now,
      ...(options.random !== undefined && { random: options.random }),
      sleep: async (ms) => {
        const capped = flushBy === null ? ms : Math.min(ms, FINISHING_MAX_DELAY_MS, Math.max(0, until() - now()));
        // `done` starting cuts the wait short: the next attempt runs at once, under the shorter finishing delays.
        await sleep(capped, AbortSignal.any([wake.signal, stop.signal])).catch(() => undefined);
      },
      onRetry: ({ error, delayMs }) =>
        log.debug({ kind: what, err: describeFailure(error), delay_ms: delayMs }, "callback failed; will retry"),
    });
  }

  function rejected(reports: readonly Report[], error: { status: number; code?: string | undefined }): void {
    queue.dropped(reports, `HTTP ${error.status}`);
    log.warn(
      { code: "CALLBACK_REJECTED", status: error.status, reason: error.code, reports: reports.length },
      `backend rejected ${reports.length === 1 ? `a ${reports[0]!.kind}` : `${reports.length} reports`} (HTTP ${error.status}${error.code === undefined ? "" : ` ${error.code}`}); not retried`,
    );
  }

  /** Delivers the queue's head (one report, or a batch): how many reports it settled (0: none, send again; -1: gave up). */
  async function deliverHead(): Promise<number> {
    const reports = queue.head(batchSupported ? maxBatch : 1);
    const until = (): number => flushBy ?? Infinity;
    try {
      if (reports.length === 1) {
        const report = reports[0]!;
        await withRetries(report.kind, () => send(callbackPath(jobId, report.kind), report.json, report.key), until);
        queue.delivered(report);
        return 1;
      }
      const body = batchBody(jobId, reports);
      // The batch's own key: a replay of the same group; each report is deduplicated by its own key anyway.
      const key = randomUUID();
      const res = await withRetries("batch", () => send(batchPath(jobId), body, key), until);
      const { accepted, refused, firstRefusal } = readBatchAnswer(reports, parseJson(res.body));
      for (const report of accepted) queue.delivered(report);
      if (firstRefusal !== undefined) rejected(refused, firstRefusal);
      return reports.length;
    } catch (error) {
      if (error instanceof CallbackHttpError && !isRetryableCallbackError(error)) {
        if (reports.length > 1 && (error.status === 404 || error.status === 405) && error.code !== "job_not_found") {
          // A backend without the batch endpoint: one report per request from now on.
          batchSupported = false;
          log.info({ status: error.status }, "backend has no batch endpoint; sending reports one by one");
          return 0;
        }
        rejected(reports, error);
        return reports.length;
      }
      log.warn(
        { code: "CALLBACK_FAILED", err: describeFailure(error), reports: reports.length },
        "reports not delivered yet",
      );
      return -1;
    }
  }

  async function pump(): Promise<void> {
    while (!closed && queue.length > 0) {
      const settled = await deliverHead();
      if (settled < 0) return; // gave up: only when winding down past the flush deadline, or closed
      queue.settle(settled);
    }
  }

  function kick(): void {
    if (!started || closed || sending !== null) return;
    sending = pump().finally(() => {
      sending = null;
      if (flushBy === null && queue.length > 0) kick();
    });
  }

  return {
    get accepting() {
      return !closed && flushBy === null;
    },
    start() {
      started = true;
      kick();
    },
    kick,
    async flush(by) {
      flushBy = by;
      wake.abort(new Error("done started"));
      wake = new AbortController();
      started = true;
      // The sender may be between two rounds (a kick that found it busy): loop until the queue is empty.
      while (queue.length > 0 && !closed && now() < by) {
        kick();
        if (sending === null) break;
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = await Promise.race([
          sending.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, by - now()) + 50))),
        ]);
        clearTimeout(timer);
        if (gaveUp) {
          // Past the flush deadline with a request still in flight: abandon it (its reports may have arrived;
          // they are counted as dropped all the same, since nobody can know).
          stop.abort(new Error("flush deadline"));
          await sending?.catch(() => undefined);
          stop.reset();
          break;
        }
      }
    },
    async sendDone(body, key, deadline) {
      const bound = AbortSignal.timeout(Math.max(1, deadline - now()));
      await withRetries(
        "done",
        () => send(callbackPath(jobId, "done"), body, key, bound),
        () => deadline,
      );
    },
    close() {
      closed = true;
      stop.abort(new Error("closed"));
    },
  };
}
