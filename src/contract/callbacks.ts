/**
 * The callback API payloads (CONTRACT section 5), shared by the agent (which sends them) and the backend stub
 * (which validates them). The zod schemas are the single definition; the TypeScript types are inferred from them.
 */
import { z } from "zod";

const isoTimestamp = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), { message: "must be an ISO-8601 timestamp" });
const metrics = z.record(z.string(), z.number());
const nonNegativeInt = z.number().int().nonnegative();

/**
 * Which run of the job sent a report. `attempt` is JobSet's restart attempt (the pod annotation
 * `jobset.sigs.k8s.io/restart-attempt`, 0 when absent); `container_restart` counts earlier runs of the agent in the
 * same pod (a kubelet restart of the container). The backend orders runs by the pair, so a report of an older run
 * after a newer one reported is refused (409). Both are optional: a sender that omits them is run (0, 0).
 */
const runFields = {
  attempt: nonNegativeInt.optional(),
  container_restart: nonNegativeInt.optional(),
};

export const HeartbeatPayload = z.object({
  job_id: z.string().min(1),
  trace_id: z.string().min(1),
  epoch: nonNegativeInt.optional(),
  total_epochs: nonNegativeInt.optional(),
  step: nonNegativeInt.optional(),
  progress: z.number().min(0).max(1).optional(),
  eta_seconds: z.number().nonnegative().optional(),
  metrics: metrics.default({}),
  /** A liveness heartbeat (no new report from the child): the only kind a sender may merge or skip. */
  liveness: z.boolean().optional(),
  ...runFields,
  timestamp: isoTimestamp,
});
export type HeartbeatPayload = z.infer<typeof HeartbeatPayload>;

export const EVENT_TYPES = [
  "started",
  "code_ready",
  "dataset_ready",
  "checkpoint_restored",
  "checkpoint_uploaded",
  "model_restored",
  "predictions_uploaded",
  "warning",
  "error",
  "terminating",
  /** The hung-rank watchdog: no output or report for longer than the stall limit (data: node_rank, quiet_seconds...). */
  "stalled",
  /** Output resumed after a `stalled` (data: the whole quiet_seconds). */
  "recovered",
] as const;

export const EventPayload = z.object({
  job_id: z.string().min(1),
  trace_id: z.string().min(1),
  /** One of EVENT_TYPES, or a custom type a plugin or the training script reports. */
  type: z.string().min(1).max(64),
  message: z.string().max(16_384).optional(),
  data: z.record(z.string(), z.unknown()).optional(),
  ...runFields,
  timestamp: isoTimestamp,
});
export type EventPayload = z.infer<typeof EventPayload>;

export const DONE_STATUSES = ["succeeded", "failed", "cancelled"] as const;
export type DoneStatus = (typeof DONE_STATUSES)[number];

export const StoredCheckpoint = z.object({
  /** Object key (or file path for STORAGE_TYPE=file) relative to the bucket. */
  key: z.string().min(1),
  bytes: nonNegativeInt,
  etag: z.string().optional(),
});
export type StoredCheckpoint = z.infer<typeof StoredCheckpoint>;

export const DonePayload = z.object({
  job_id: z.string().min(1),
  trace_id: z.string().min(1),
  status: z.enum(DONE_STATUSES),
  exit_code: z.number().int(),
  reason: z.string().max(4_096).optional(),
  log_tail: z.string().max(65_536).optional(),
  final_metrics: metrics.optional(),
  checkpoints: z.array(StoredCheckpoint).default([]),
  /** A predict run (`--mode predict`): the prediction objects it stored, its manifest last. */
  predictions: z.array(StoredCheckpoint).optional(),
  duration_seconds: z.number().nonnegative(),
  /**
   * Multi-node jobs: the sending node's rank (PET_NODE_RANK) and the node count (PET_NNODES). With them the
   * backend ends the job when every node has reported `succeeded`, or at the first `failed`/`cancelled`; without
   * them the first `done` ends the job.
   */
  node_rank: nonNegativeInt.optional(),
  nnodes: z.number().int().positive().optional(),
  /** Reports the sender could not deliver (a bound was hit, the backend refused them, the deadline passed), by kind. */
  dropped_reports: z.record(z.enum(["heartbeat", "event"]), nonNegativeInt).optional(),
  ...runFields,
  timestamp: isoTimestamp,
});
export type DonePayload = z.infer<typeof DonePayload>;

/** Most reports in one batch. */
export const MAX_BATCH_REPORTS = 500;

/**
 * `POST /v1/jobs/{id}/batch`: several heartbeats and events in the order the child made them, each with its own
 * Idempotency-Key (a retried batch may regroup them). The backend applies them in order and answers each.
 * `payload` is validated by the backend against its kind's schema, one answer per report.
 */
export const BatchPayload = z.object({
  job_id: z.string().min(1),
  reports: z
    .array(
      z.object({
        kind: z.enum(["heartbeat", "event"]),
        idempotency_key: z.string().min(1).max(255),
        payload: z.record(z.string(), z.unknown()),
      }),
    )
    .min(1)
    .max(MAX_BATCH_REPORTS),
});
export type BatchPayload = z.infer<typeof BatchPayload>;

/** One report's answer in a batch: the status it would have got alone, and the answer body or the error. */
export interface BatchResult {
  status: number;
  accepted?: string;
  error?: { code: string; message: string; field?: string };
}
export interface BatchAnswer {
  job_id: string;
  state: string;
  results: BatchResult[];
}

export {
  CALLBACK_KINDS,
  batchPath,
  callbackPath,
  checkpointUrlsPath,
  jobCheckpointPrefix,
  type CallbackKind,
} from "./paths.ts";

export const CALLBACK_SCHEMAS = {
  heartbeat: HeartbeatPayload,
  event: EventPayload,
  done: DonePayload,
} as const;

/** Claims of the callback JWT (HS256). */
export interface CallbackTokenClaims {
  job_id: string;
  iat: number;
  exp: number;
}
