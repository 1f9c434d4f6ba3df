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

export const HeartbeatPayload = z.object({
  job_id: z.string().min(1),
  trace_id: z.string().min(1),
  epoch: nonNegativeInt.optional(),
  total_epochs: nonNegativeInt.optional(),
  step: nonNegativeInt.optional(),
  progress: z.number().min(0).max(1).optional(),
  eta_seconds: z.number().nonnegative().optional(),
  metrics: metrics.default({}),
  timestamp: isoTimestamp,
});
export type HeartbeatPayload = z.infer<typeof HeartbeatPayload>;

export const EVENT_TYPES = [
  "started",
  "dataset_ready",
  "checkpoint_restored",
  "checkpoint_uploaded",
  "warning",
  "error",
  "terminating",
] as const;

export const EventPayload = z.object({
  job_id: z.string().min(1),
  trace_id: z.string().min(1),
  /** One of EVENT_TYPES, or a custom type a plugin or the training script reports. */
  type: z.string().min(1).max(64),
  message: z.string().max(16_384).optional(),
  data: z.record(z.string(), z.unknown()).optional(),
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
  duration_seconds: z.number().nonnegative(),
  /**
   * Multi-node jobs: the sending node's rank (PET_NODE_RANK) and the node count (PET_NNODES). With them the
   * backend ends the job when every node has reported `succeeded`, or at the first `failed`/`cancelled`; without
   * them the first `done` ends the job.
   */
  node_rank: nonNegativeInt.optional(),
  nnodes: z.number().int().positive().optional(),
  timestamp: isoTimestamp,
});
export type DonePayload = z.infer<typeof DonePayload>;

export { CALLBACK_KINDS, callbackPath, type CallbackKind } from "./paths.ts";

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
