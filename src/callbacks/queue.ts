/**
 * The reports waiting for the backend, in the order the child made them, and the count of each report's fate
 * (queued, delivered, dropped). No I/O: the sender takes the head, one report or a batch, and settles it.
 *
 * Only liveness heartbeats merge: one is skipped while reports wait (they show the agent is alive), and a
 * liveness heartbeat is never counted. At most `maxPending` reports wait: a report beyond that is dropped and
 * counted (the count goes to `done`'s `dropped_reports`).
 *
 * A report is serialised once, when it is queued: its JSON text is what the batch sizing measures, what a single
 * request sends and what a batch body is joined from, on every attempt (it was serialised for each of these
 * before, and a single request again on each retry). A skipped or dropped report is never serialised.
 */
import type { Logger } from "pino";
import type { BatchAnswer, BatchResult } from "../contract/callbacks.ts";

export type ReportKind = "heartbeat" | "event";

/** A report as the client makes it. */
export interface NewReport {
  kind: ReportKind;
  /** The stamped payload. */
  body: Record<string, unknown>;
  /** Its Idempotency-Key, the same on every attempt. */
  key: string;
  liveness?: boolean;
}

/** A queued report: its payload kept only as the JSON text every attempt sends. */
export interface Report {
  kind: ReportKind;
  /** `JSON.stringify` of the stamped payload. */
  json: string;
  key: string;
  liveness?: boolean;
}

/** Reports by fate and kind (liveness heartbeats are not counted). */
export interface ReportCounts {
  queued: Record<ReportKind, number>;
  delivered: Record<ReportKind, number>;
  dropped: Record<ReportKind, number>;
}

/** Body bytes a batch stays under (the backend stub's default limit is 1 MiB). */
export const MAX_BATCH_BYTES = 256 * 1024;
/** Per-report bytes a batch adds around a payload (kind, key, punctuation). */
const BATCH_ENTRY_OVERHEAD = 96;

export class ReportQueue {
  readonly #waiting: Report[] = [];
  readonly #maxPending: number;
  readonly #log: Logger;
  readonly #counts: ReportCounts = {
    queued: { heartbeat: 0, event: 0 },
    delivered: { heartbeat: 0, event: 0 },
    dropped: { heartbeat: 0, event: 0 },
  };
  #boundWarned = false;

  constructor(options: { maxPending: number; log: Logger }) {
    this.#maxPending = options.maxPending;
    this.#log = options.log;
  }

  get length(): number {
    return this.#waiting.length;
  }

  /** Queues a report; false when it was dropped (the queue is full) or skipped (liveness while reports wait). */
  push(report: NewReport): boolean {
    if (report.liveness === true && this.#waiting.length > 0) return false;
    if (report.liveness !== true) this.#counts.queued[report.kind] += 1;
    if (this.#waiting.length >= this.#maxPending) {
      this.#drop(report, "bound");
      if (!this.#boundWarned) {
        this.#boundWarned = true;
        this.#log.warn(
          { code: "CALLBACK_FAILED", max_pending: this.#maxPending },
          "callback queue full (the backend is not taking reports): newer reports are dropped and counted in done",
        );
      }
      return false;
    }
    const { body, ...rest } = report;
    this.#waiting.push({ ...rest, json: JSON.stringify(body) });
    return true;
  }

  /**
   * The reports at the head that go in one request: at most `maxBatch`, and a body well under a backend's limit
   * (messages are capped at 16 KiB, so a batch of events could pass it otherwise). At least one when any wait.
   */
  head(maxBatch: number): Report[] {
    let n = 0;
    let bytes = 0;
    for (const report of this.#waiting) {
      if (n >= maxBatch) break;
      bytes += report.json.length + BATCH_ENTRY_OVERHEAD;
      if (n > 0 && bytes > MAX_BATCH_BYTES) break;
      n += 1;
    }
    return this.#waiting.slice(0, Math.max(1, n));
  }

  /** Removes the first `n` reports, whose fate was recorded with `delivered` or `dropped`. */
  settle(n: number): void {
    this.#waiting.splice(0, n);
  }

  delivered(report: Pick<Report, "kind" | "liveness">): void {
    if (report.liveness !== true) this.#counts.delivered[report.kind] += 1;
  }

  /** Counts reports that will never reach the backend. */
  dropped(reports: readonly Report[], why: string): void {
    for (const report of reports) this.#drop(report, why);
  }

  /** Drops and counts every waiting report; how many there were. */
  dropAll(why: string): number {
    const n = this.#waiting.length;
    this.dropped(this.#waiting, why);
    this.#waiting.length = 0;
    return n;
  }

  /** `done`'s `dropped_reports`: the kinds with a drop; undefined when nothing was dropped. */
  droppedReports(): Partial<Record<ReportKind, number>> | undefined {
    const dropped = Object.fromEntries(Object.entries(this.#counts.dropped).filter(([, n]) => n > 0));
    return Object.keys(dropped).length > 0 ? dropped : undefined;
  }

  counts(): ReportCounts {
    return structuredClone(this.#counts);
  }

  #drop(report: Pick<Report, "kind" | "liveness">, why: string): void {
    if (report.liveness === true) return;
    this.#counts.dropped[report.kind] += 1;
    this.#log.debug({ kind: report.kind, why }, "report dropped");
  }
}

/**
 * The body of `POST /v1/jobs/{id}/batch`: each report with its own Idempotency-Key. Joined from the reports'
 * texts, the same bytes as `JSON.stringify({job_id, reports: [{kind, idempotency_key, payload}]})`.
 */
export function batchBody(jobId: string, reports: readonly Report[]): string {
  const entries = reports.map(
    (r) => `{"kind":${JSON.stringify(r.kind)},"idempotency_key":${JSON.stringify(r.key)},"payload":${r.json}}`,
  );
  return `{"job_id":${JSON.stringify(jobId)},"reports":[${entries.join(",")}]}`;
}

/**
 * Splits a batch by the backend's per-report answers into accepted and refused reports (with the first
 * refusal, for the log). A 2xx answer without per-report results accepted the whole batch.
 */
export function readBatchAnswer(
  reports: readonly Report[],
  answer: unknown,
): { accepted: Report[]; refused: Report[]; firstRefusal?: { status: number; code?: string } } {
  const results = (answer as BatchAnswer | undefined)?.results;
  if (!Array.isArray(results)) return { accepted: [...reports], refused: [] };
  const accepted: Report[] = [];
  const refused: Report[] = [];
  let firstRefusal: { status: number; code?: string } | undefined;
  reports.forEach((report, i) => {
    const r: BatchResult | undefined = results[i];
    if (r !== undefined && r.status >= 200 && r.status < 300) accepted.push(report);
    else {
      refused.push(report);
      firstRefusal ??= { status: r?.status ?? 0, ...(r?.error?.code !== undefined && { code: r.error.code }) };
    }
  });
  return { accepted, refused, ...(firstRefusal !== undefined && { firstRefusal }) };
}
