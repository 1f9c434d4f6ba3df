/**
 * Journal records: every change to a job is one record. The same records are applied live (after validation) and
 * on replay at start-up, through the one reducer in store.ts, so a restarted stub rebuilds exactly what it answered.
 */
import type { CallbackKind, DonePayload, EventPayload, HeartbeatPayload } from "../../../src/contract/index.ts";

export const JOURNAL_VERSION = 1;

interface RecordBase {
  v: typeof JOURNAL_VERSION;
  /** Receive time, ISO-8601 (the stub's clock, not the sender's). */
  at: string;
  job_id: string;
}

export interface JobCreatedRecord extends RecordBase {
  type: "job_created";
  name?: string;
  /** How the job came to exist: the management API, or a validly signed callback for an unknown job. */
  via: "api" | "callback";
  /** The job's restart budget (`max_restarts`); absent = 0. */
  max_restarts?: number;
}
export interface JobQueuedRecord extends RecordBase {
  type: "job_queued";
}
export interface JobCancelledRecord extends RecordBase {
  type: "job_cancelled";
  reason?: string;
}

type ReportOf<K extends CallbackKind, P> = RecordBase & {
  type: "report";
  kind: K;
  payload: P;
  /** The Idempotency-Key and a hash of the request body, so a retry is answered the same after a restart. */
  idempotency_key?: string;
  body_hash?: string;
};
export type ReportRecord =
  ReportOf<"heartbeat", HeartbeatPayload> | ReportOf<"event", EventPayload> | ReportOf<"done", DonePayload>;

export type JournalRecord = JobCreatedRecord | JobQueuedRecord | JobCancelledRecord | ReportRecord;

export const RECORD_TYPES: ReadonlySet<string> = new Set(["job_created", "job_queued", "job_cancelled", "report"]);
