/**
 * The run mirrored to MLflow, in the background: the experiment got or created, the run created, its params, then
 * every rank-0 epoch's metrics in log-batch requests, and at the end the checkpoint keys as tags and the final
 * status. One worker sends one request at a time, in order.
 *
 * It never holds up the training: reports only go into a bounded queue (a metric beyond it is dropped and
 * counted, with one warning); 5xx, 429 and network failures are retried under the project's retry policy for as
 * long as the run lasts; `finish` waits at most `flushSeconds` and then abandons what is left. A 4xx (other than
 * 408/429, and the two the get-or-create expects) means the mirror cannot work: one warning naming MLflow's
 * `error_code`, and the mirror is off for the rest of the run.
 */
import type { Logger } from "pino";
import { describeFailure } from "../callbacks/send.ts";
import type { Report } from "../contract/report.ts";
import { abortableSleep, DEFAULT_RETRY_POLICY, retry, type RetryPolicy } from "../retry/index.ts";
import { isRetryableMlflowError, MlflowHttpError, type MlflowClient } from "./client.ts";
import {
  isValidKey,
  keyValues,
  logBatchBodies,
  LOG_BATCH_LIMITS,
  VALUE_LIMITS,
  type KeyValue,
  type Metric,
  type RunStatus,
} from "./rest.ts";

/** Metrics waiting at most (about 100 bytes each): beyond it, newer ones are dropped and counted. */
export const MAX_QUEUED_METRICS = 10_000;
/** One request's bound, ms: a hanging server costs a retry, never a stuck worker. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Waits between retries once the run ended: the flush deadline is short. */
const FINISHING_MAX_DELAY_MS = 1_000;

/** What the run is, from the job: fixed when the mirror starts (MLflow params never change). */
export interface MirroredRun {
  experimentName: string;
  /** Given (MLFLOW_EXPERIMENT_ID): no lookup. */
  experimentId: string | undefined;
  runName: string;
  /** ms since the epoch. */
  startTime: number;
  params: Readonly<Record<string, string | undefined>>;
  tags: Readonly<Record<string, string | undefined>>;
}

export interface MirrorEnd {
  status: RunStatus;
  /** Tags written last (checkpoint keys, the exit code). */
  tags: Readonly<Record<string, string | undefined>>;
}

export interface MlflowMirror {
  /** Takes a child report: rank 0's epochs become metrics; anything else is ignored. Never throws, never waits. */
  onReport(report: Report): void;
  /** Sends what is queued, the end tags and the status, for at most `flushSeconds`; never rejects. */
  finish(end: MirrorEnd): Promise<void>;
  /** The MLflow run id once created (tests, logs). */
  readonly runId: string | undefined;
}

export interface MirrorOptions {
  client: MlflowClient;
  run: MirroredRun;
  logger: Logger;
  flushSeconds: number;
  /** Changes to DEFAULT_RETRY_POLICY's waits (tests shorten them). */
  backoff?: Partial<Pick<RetryPolicy, "minDelayMs" | "maxDelayMs">>;
  maxQueued?: number;
  now?: () => number;
}

export function createMlflowMirror(options: MirrorOptions): MlflowMirror {
  const { client, run, flushSeconds } = options;
  const log = options.logger.child({ component: "mlflow" });
  const now = options.now ?? Date.now;
  const maxQueued = options.maxQueued ?? MAX_QUEUED_METRICS;
  const queue: Metric[] = [];
  let runId: string | undefined;
  let disabled = false;
  let dropped = 0;
  let skippedKeys = 0;
  let end: MirrorEnd | undefined;
  let flushBy = Infinity;
  /** Aborted at the flush deadline: the request in flight and any wait end there. */
  const stop = new AbortController();
  /** Aborted when the run ends: a long wait between retries is cut short then. */
  const ended = new AbortController();
  /** Wakes the idle worker when metrics arrive or the run ends. */
  let wakeUp: (() => void) | undefined;
  const kick = (): void => {
    wakeUp?.();
    wakeUp = undefined;
  };

  const policy: RetryPolicy = {
    ...DEFAULT_RETRY_POLICY,
    ...options.backoff,
    maxRetries: Infinity,
    retryOn: (error) => !disabled && isRetryableMlflowError(error),
    retryAfterMs: (error) => (error instanceof MlflowHttpError ? error.retryAfterMs : undefined),
  };
  let retryWarned = false;
  const attempt = <T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> =>
    retry(() => fn(AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), stop.signal])), policy, {
      now,
      signal: stop.signal,
      sleep: (ms, signal) => {
        const wait = end === undefined ? ms : Math.min(ms, FINISHING_MAX_DELAY_MS, Math.max(0, flushBy - now()));
        // A wait ends early when the run ends (the deadline is near); the stop still rejects it.
        const bound = signal ?? stop.signal;
        return abortableSleep(wait, end === undefined ? AbortSignal.any([bound, ended.signal]) : bound).catch(
          (e: unknown) => {
            if (bound.aborted) throw e;
          },
        );
      },
      onRetry: ({ error, delayMs }) => {
        const data = { request: what, error: describe(error), retry_in_ms: delayMs };
        if (retryWarned) return log.debug(data, "MLflow request failed; retrying");
        retryWarned = true;
        log.warn(data, "MLflow request failed; retrying in the background (training goes on)");
      },
    });

  const sendBatch = async (entities: { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] }) => {
    for (const body of logBatchBodies(runId as string, entities))
      await attempt("runs/log-batch", (s) => client.post("runs/log-batch", body, s));
  };

  const experimentId = async (): Promise<string> => {
    if (run.experimentId !== undefined) return run.experimentId;
    const byName = async (): Promise<string | undefined> => {
      try {
        const a = await attempt("experiments/get-by-name", (s) =>
          client.get("experiments/get-by-name", { experiment_name: run.experimentName }, s),
        );
        const exp = a.experiment as { experiment_id?: unknown; lifecycle_stage?: unknown } | undefined;
        if (exp?.lifecycle_stage === "deleted")
          throw new MlflowHttpError("experiments/get-by-name", 400, "EXPERIMENT_DELETED", "the experiment is deleted");
        return typeof exp?.experiment_id === "string" ? exp.experiment_id : undefined;
      } catch (error) {
        if (error instanceof MlflowHttpError && error.errorCode === "RESOURCE_DOES_NOT_EXIST") return undefined;
        throw error;
      }
    };
    const found = await byName();
    if (found !== undefined) return found;
    try {
      const a = await attempt("experiments/create", (s) =>
        client.post("experiments/create", { name: run.experimentName }, s),
      );
      if (typeof a.experiment_id === "string") return a.experiment_id;
    } catch (error) {
      // Another job created it between the two requests.
      if (!(error instanceof MlflowHttpError && error.errorCode === "RESOURCE_ALREADY_EXISTS")) throw error;
    }
    const again = await byName();
    if (again === undefined)
      throw new MlflowHttpError("experiments/create", 400, "MISSING_EXPERIMENT_ID", "no experiment_id in the answer");
    return again;
  };

  const work = async (): Promise<void> => {
    const tags = keyValues(run.tags, VALUE_LIMITS.tagValue);
    const params = keyValues(run.params, VALUE_LIMITS.paramValue);
    const experiment = await experimentId();
    const created = await attempt("runs/create", (s) =>
      client.post(
        "runs/create",
        { experiment_id: experiment, run_name: run.runName, start_time: run.startTime, tags },
        s,
      ),
    );
    const id = (created.run as { info?: { run_id?: unknown } } | undefined)?.info?.run_id;
    if (typeof id !== "string")
      throw new MlflowHttpError("runs/create", 400, "MISSING_RUN_ID", "no run.info.run_id in the answer");
    runId = id;
    log.info({ experiment: run.experimentName, run_id: id }, "mirroring the run to MLflow");
    if (params.length > 0) await sendBatch({ params });
    for (;;) {
      if (queue.length > 0) {
        const batch = queue.slice(0, LOG_BATCH_LIMITS.metrics);
        await sendBatch({ metrics: batch });
        queue.splice(0, batch.length);
        continue;
      }
      if (end !== undefined) break;
      await new Promise<void>((resolve) => (wakeUp = resolve));
    }
    const endTags = keyValues(end.tags, VALUE_LIMITS.tagValue);
    if (endTags.length > 0) await sendBatch({ tags: endTags });
    await attempt("runs/update", (s) =>
      client.post("runs/update", { run_id: id, status: end?.status, end_time: Math.round(now()) }, s),
    );
  };

  const worker = work().catch((error: unknown) => {
    if (stop.signal.aborted) return;
    disabled = true;
    queue.length = 0;
    const e = error instanceof MlflowHttpError ? error : undefined;
    const what =
      e === undefined ? "MLflow mirror failed" : `MLflow refused ${e.path} (${e.errorCode ?? `HTTP ${e.status}`})`;
    log.warn(
      { request: e?.path, status: e?.status, error_code: e?.errorCode, error: e?.message ?? describe(error) },
      `${what}; the mirror is off for the rest of the run (training goes on)`,
    );
  });

  return {
    get runId() {
      return runId;
    },
    onReport(report) {
      if (disabled || end !== undefined || report.kind !== "epoch") return;
      // Node 0 only mirrors (see open.ts): a report without a rank is its rank 0's.
      if (report.rank !== undefined && report.rank !== 0) return;
      const timestamp = Math.round(now());
      // MLflow's step is an int64: a plugin's report may carry anything.
      const step = [report.step, report.epoch].find((n) => Number.isSafeInteger(n)) ?? 0;
      for (const [key, value] of Object.entries(report.metrics)) {
        if (!isValidKey(key) || !Number.isFinite(value)) {
          if (skippedKeys++ === 0)
            log.warn(
              { key },
              "a metric MLflow does not take (its name or value) is not mirrored; further ones silently",
            );
          continue;
        }
        if (queue.length >= maxQueued) {
          if (dropped++ === 0)
            log.warn(
              { max_queued: maxQueued },
              "MLflow is not keeping up: newer metrics are dropped (counted; the total is logged at the end)",
            );
          continue;
        }
        queue.push({ key, value, timestamp, step });
      }
      kick();
    },
    async finish(ending) {
      if (end !== undefined) return;
      end = ending;
      flushBy = now() + flushSeconds * 1000;
      ended.abort();
      kick();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<"deadline">((resolve) => {
        timer = setTimeout(() => resolve("deadline"), flushSeconds * 1000);
      });
      try {
        if ((await Promise.race([worker.then(() => "done" as const), deadline])) === "deadline") {
          stop.abort(new Error("MLflow flush deadline"));
          await worker;
          log.warn(
            { flush_seconds: flushSeconds, metrics_not_sent: queue.length, run_id: runId },
            "MLflow did not take the end of the run within MLFLOW_FLUSH_SECONDS; the rest is abandoned",
          );
        }
      } finally {
        clearTimeout(timer);
      }
      if (dropped > 0 || skippedKeys > 0)
        log.warn({ dropped_metrics: dropped, skipped_metrics: skippedKeys }, "metrics not mirrored to MLflow");
    },
  };
}

/** A failure in a few words: the status and MLflow's code, or what the network said (never a header or body). */
function describe(error: unknown): string {
  if (error instanceof MlflowHttpError) return `HTTP ${error.status}${error.errorCode ? ` ${error.errorCode}` : ""}`;
  return describeFailure(error);
}
