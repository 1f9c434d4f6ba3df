/** The in-memory job and the JSON views the API answers with. */
import type { DonePayload, EventPayload, HeartbeatPayload, JobState } from "../../../src/contract/index.ts";
import { newAttemptState, type AttemptState, type AttemptView } from "./attempts.ts";

export type StoredHeartbeat = HeartbeatPayload & { received_at: string };
export type StoredEvent = EventPayload & { received_at: string };
export type StoredDone = DonePayload & { received_at: string };

export interface Transition {
  from: JobState | null;
  to: JobState;
  at: string;
  /**
   * What caused it: `created`, `queued`, `heartbeat`, `event:started`, `done`, `cancelled`; entries with `from`
   * equal to `to` are notes on the timeline (`attempt 0 failed: <reason>`, `attempt 1 started`).
   */
  cause: string;
}

/** The answer to a callback; kept per Idempotency-Key so a retry gets the same one. */
export interface CallbackAnswer {
  status: number;
  body: { accepted: string; job_id: string; state: JobState };
}

export interface IdempotencyEntry {
  bodyHash: string;
  answer: CallbackAnswer;
  /** Settles when the report that produced the answer is on disk; a retry waits for it. */
  durable: Promise<void>;
}

export interface Job {
  id: string;
  name: string | undefined;
  state: JobState;
  createdAt: string;
  updatedAt: string;
  via: "api" | "callback";
  traceId: string | undefined;
  heartbeats: StoredHeartbeat[];
  events: StoredEvent[];
  transitions: Transition[];
  done: StoredDone | undefined;
  /** Multi-node jobs: each node's own `done` (by node rank) while the job waits for the rest. */
  nodeDone: Map<number, StoredDone>;
  nnodes: number | undefined;
  lastHeartbeatAt: string | undefined;
  idempotency: Map<string, IdempotencyEntry>;
  attempts: AttemptState;
}

/** Per-epoch metric series for charts: one x array and one y array per metric name (null where absent). */
export interface MetricSeries {
  x_label: "epoch" | "step" | "report";
  x: number[];
  series: Record<string, (number | null)[]>;
}

export interface JobSummary {
  id: string;
  name: string | null;
  state: JobState;
  created_at: string;
  updated_at: string;
  trace_id: string | null;
  last_heartbeat_at: string | null;
  epoch: number | null;
  total_epochs: number | null;
  step: number | null;
  progress: number | null;
  eta_seconds: number | null;
  latest_metrics: Record<string, number>;
  heartbeat_count: number;
  event_count: number;
  exit_code: number | null;
  /** The newest attempt that reported (null before any report). */
  attempt: number | null;
  max_restarts: number;
}

export interface JobView extends JobSummary {
  heartbeats: StoredHeartbeat[];
  events: StoredEvent[];
  transitions: Transition[];
  done: StoredDone | null;
  /** Multi-node jobs: every node's `done`, by node rank. */
  node_done: StoredDone[];
  metric_series: MetricSeries;
  /** Every run of the job (attempt, container restart), oldest first. */
  attempts: AttemptView[];
}

export function newJob(
  id: string,
  name: string | undefined,
  at: string,
  via: "api" | "callback",
  maxRestarts = 0,
): Job {
  return {
    id,
    name,
    state: "PENDING",
    createdAt: at,
    updatedAt: at,
    via,
    traceId: undefined,
    heartbeats: [],
    events: [],
    transitions: [{ from: null, to: "PENDING", at, cause: via === "api" ? "created" : "created_by_callback" }],
    done: undefined,
    nodeDone: new Map(),
    nnodes: undefined,
    lastHeartbeatAt: undefined,
    idempotency: new Map(),
    attempts: newAttemptState(maxRestarts),
  };
}

export function summarize(job: Job): JobSummary {
  // Progress comes from the newest heartbeat that reports some: a liveness beat (another node's, or one sent while
  // the child is quiet) says the pod is alive, not that the job went back to "no epoch".
  const last = job.heartbeats.findLast(
    (h) => h.epoch !== undefined || h.step !== undefined || h.progress !== undefined,
  );
  let latest: Record<string, number> = {};
  for (let i = job.heartbeats.length - 1; i >= 0; i--) {
    const m = job.heartbeats[i]!.metrics;
    if (Object.keys(m).length > 0) {
      latest = m;
      break;
    }
  }
  return {
    id: job.id,
    name: job.name ?? null,
    state: job.state,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
    trace_id: job.traceId ?? null,
    last_heartbeat_at: job.lastHeartbeatAt ?? null,
    epoch: last?.epoch ?? null,
    total_epochs: last?.total_epochs ?? null,
    step: last?.step ?? null,
    progress: last?.progress ?? null,
    eta_seconds: last?.eta_seconds ?? null,
    latest_metrics: latest,
    heartbeat_count: job.heartbeats.length,
    event_count: job.events.length,
    exit_code: job.done?.exit_code ?? null,
    attempt: job.attempts.current ?? null,
    max_restarts: job.attempts.maxRestarts,
  };
}

export function viewOf(job: Job): JobView {
  return {
    ...summarize(job),
    heartbeats: job.heartbeats,
    events: job.events,
    transitions: job.transitions,
    done: job.done ?? null,
    node_done: [...job.nodeDone.values()].sort((a, b) => (a.node_rank ?? 0) - (b.node_rank ?? 0)),
    metric_series: metricSeries(job.heartbeats),
    attempts: job.attempts.runs,
  };
}

/**
 * Metric series from the heartbeats that carry metrics, keyed by epoch (or step, or arrival order when neither is
 * reported). A resumed job (the next attempt, from the last checkpoint) reports some epochs again; the latest value
 * of an epoch wins, so the attempts make one continuous curve, and x stays ascending (uPlot needs sorted x).
 */
export function metricSeries(heartbeats: readonly StoredHeartbeat[]): MetricSeries {
  const withMetrics = heartbeats.filter((h) => Object.keys(h.metrics).length > 0);
  const xLabel: MetricSeries["x_label"] = withMetrics.some((h) => h.epoch !== undefined)
    ? "epoch"
    : withMetrics.some((h) => h.step !== undefined)
      ? "step"
      : "report";
  const byX = new Map<number, Record<string, number>>();
  withMetrics.forEach((h, i) => {
    const x = xLabel === "epoch" ? h.epoch : xLabel === "step" ? h.step : i + 1;
    if (x === undefined) return;
    byX.set(x, { ...byX.get(x), ...h.metrics });
  });
  const x = [...byX.keys()].sort((a, b) => a - b);
  const names = [...new Set([...byX.values()].flatMap((m) => Object.keys(m)))].sort();
  const series: Record<string, (number | null)[]> = {};
  for (const name of names) series[name] = x.map((k) => byX.get(k)?.[name] ?? null);
  return { x_label: xLabel, x, series };
}
