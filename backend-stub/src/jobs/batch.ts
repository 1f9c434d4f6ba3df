/**
 * `POST /v1/jobs/{id}/batch` (an extension of CONTRACT section 5): several heartbeats and events, each answered as it
 * would be alone. Reports are admitted one after the other in the body's order (each sees the state the previous
 * one left) and made durable together, so a batch of 200 epochs costs one request and one journal sync.
 */
import type { BatchPayload, BatchResult } from "../../../src/contract/index.ts";
import { HttpError } from "../../../src/http/index.ts";

type Report = BatchPayload["reports"][number];

export async function applyBatch(
  batch: BatchPayload,
  accept: (report: Report) => Promise<{ status: number; body: unknown }>,
): Promise<BatchResult[]> {
  // Each call runs its checks and applies its record before returning its promise: calling them in a loop keeps
  // the order; awaiting them together shares the journal's fsync.
  const pending = batch.reports.map((report) =>
    accept(report).then(
      (answer): BatchResult => ({ status: answer.status, accepted: report.kind }),
      (error: unknown): BatchResult => {
        if (!(error instanceof HttpError)) throw error;
        const e: BatchResult["error"] = { code: error.code, message: error.message };
        if (error.field !== undefined) e.field = error.field;
        return { status: error.status, error: e };
      },
    ),
  );
  return Promise.all(pending);
}
