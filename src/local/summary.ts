/** The one summary a local run prints at the end. */
import { count, formatBytes } from "../log/units.ts";
import { isManifestKey } from "../storage/checkpoint/layout.ts";
import type { JobSnapshot } from "./backend.ts";

export interface NodeOutcome {
  label: string;
  exitCode: number | undefined;
  signal: NodeJS.Signals | undefined;
  /** The runner sent it SIGTERM (another node failed, or Ctrl-C). */
  terminatedByRunner: boolean;
}

export interface SummaryInput {
  jobId: string;
  dashboardUrl: string;
  snapshot: JobSnapshot | undefined;
  nodes: readonly NodeOutcome[];
  checkpointKeys: ReadonlyArray<{ key: string; bytes: number }>;
  /** A predict job's stored predictions (shown instead of the checkpoints). */
  predictionKeys?: ReadonlyArray<{ key: string; bytes: number }>;
  bucket: string | undefined;
  exitCode: number;
  interrupted: NodeJS.Signals | undefined;
  /** Shown when the run folder is kept (failure or --keep). */
  runDir: string | undefined;
  kept: boolean;
}

export function formatSummary(s: SummaryInput): string {
  const lines: string[] = ["", "── summary ──────────────────────────────────────────────"];
  const snap = s.snapshot;
  lines.push(`job        ${s.jobId}  state ${snap?.state ?? "unknown (backend not reachable)"}`);
  if (snap?.reason !== null && snap?.reason !== undefined) lines.push(`reason     ${snap.reason}`);
  if (snap !== undefined) {
    const epochs =
      snap.epoch === null ? "none reported" : `${snap.epoch}${snap.totalEpochs !== null ? `/${snap.totalEpochs}` : ""}`;
    lines.push(`epochs     ${epochs}  (${count(snap.heartbeats, "heartbeat")})`);
    const metrics = Object.entries(snap.metrics);
    if (metrics.length > 0) lines.push(`metrics    ${metrics.map(([k, v]) => `${k}=${formatNumber(v)}`).join("  ")}`);
  }
  lines.push(
    `nodes      ${s.nodes
      .map((n) => `${n.label}: exit ${n.exitCode ?? "?"}${n.terminatedByRunner ? " (stopped)" : ""}`)
      .join(", ")}`,
  );
  const files = s.checkpointKeys.filter((k) => !isManifestKey(k.key));
  const manifests = s.checkpointKeys.length - files.length;
  if (s.predictionKeys !== undefined) lines.push(...predictionLines(s.predictionKeys, s.bucket));
  else if (s.checkpointKeys.length === 0) lines.push("checkpoints none in the bucket");
  else {
    lines.push(
      `checkpoints ${count(files.length, "object")} in bucket ${s.bucket ?? "?"}` +
        (manifests > 0 ? ` (+ ${count(manifests, "manifest")} under _manifests/)` : "") +
        ":",
    );
    const shown = files.slice(-8);
    if (files.length > shown.length) lines.push(`  ... ${files.length - shown.length} more`);
    for (const k of shown) lines.push(`  s3://${s.bucket ?? "?"}/${k.key}  (${formatBytes(k.bytes)})`);
  }
  lines.push(`dashboard  ${s.dashboardUrl}${s.kept ? "" : " (closed when this command ends; --keep keeps it up)"}`);
  if (s.runDir !== undefined) lines.push(`run folder ${s.runDir} (per-node output.log, dataset, checkpoints)`);
  const failed = s.nodes.filter((n) => n.exitCode !== 0 && n.exitCode !== undefined && !n.terminatedByRunner);
  if (snap?.state === "SUCCEEDED" && failed.length > 0)
    lines.push(
      `warning    the backend kept the first node's done (succeeded), but ${failed.map((n) => n.label).join(", ")} failed`,
    );
  if (s.interrupted !== undefined) lines.push(`interrupted by ${s.interrupted}`);
  lines.push(`exit code  ${s.exitCode}`);
  return `${lines.join("\n")}\n`;
}

function predictionLines(keys: ReadonlyArray<{ key: string; bytes: number }>, bucket: string | undefined): string[] {
  if (keys.length === 0) return ["predictions none in the bucket"];
  const shown = keys.slice(0, 8);
  return [
    `predictions ${count(keys.length, "object")} in bucket ${bucket ?? "?"}:`,
    ...shown.map((k) => `  s3://${bucket ?? "?"}/${k.key}  (${formatBytes(k.bytes)})`),
    ...(keys.length > shown.length ? [`  ... ${keys.length - shown.length} more`] : []),
  ];
}

function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? v.toExponential(3) : String(Number(v.toPrecision(5)));
}
