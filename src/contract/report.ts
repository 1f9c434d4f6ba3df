/**
 * The progress protocol (CONTRACT section 4): `::trainer::{json}` lines from the child. The marker may be preceded
 * or followed by another process's text on the same line (torchrun workers share one pipe), so the finder scans
 * for the marker anywhere and takes exactly one balanced JSON object after it.
 */
export const REPORT_MARKER = "::trainer::";

export interface EpochReport {
  kind: "epoch";
  epoch: number;
  totalEpochs?: number;
  step?: number;
  metrics: Record<string, number>;
  /** Global rank of the writer when the line says so (the Python helper adds it); undefined = unknown. */
  rank?: number;
}
export interface CheckpointReport {
  kind: "checkpoint";
  path: string;
  rank?: number;
}
export interface EventReport {
  kind: "event";
  type: string;
  message?: string;
  data?: Record<string, unknown>;
  rank?: number;
}
export type Report = EpochReport | CheckpointReport | EventReport;
