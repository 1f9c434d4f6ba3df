/**
 * The end of a local run: its exit code, the job closed on the backend when no agent reported `done`, and the
 * checkpoint objects the agents stored (listed where the storage module's layout puts them).
 */
import type { S3Client } from "@aws-sdk/client-s3";
import { isTerminal } from "../contract/job-state.ts";
import type { CheckpointRoot } from "../storage/checkpoint/layout.ts";
import type { JobSnapshot, LocalBackend } from "./backend.ts";
import type { RunningNode } from "./nodes.ts";
import { listKeys } from "./s3.ts";
import type { NodeOutcome } from "./summary.ts";

/**
 * 0 when every node exited 0; otherwise the exit code of the node that failed first (the cause; the nodes stopped
 * after it only follow); 128+signal when interrupted.
 */
export function runExitCode(
  nodes: readonly RunningNode[],
  firstFailure: NodeOutcome | undefined,
  interrupted: NodeJS.Signals | undefined,
): number {
  if (interrupted !== undefined) return interrupted === "SIGINT" ? 130 : 143;
  return firstFailure?.exitCode ?? nodes.find((n) => n.outcome.exitCode !== 0)?.outcome.exitCode ?? 0;
}

/** The job's state, ended on the backend first when the run failed before any agent reported `done`. */
export async function settleJob(
  backend: LocalBackend,
  run: {
    exitCode: number;
    nodes: readonly RunningNode[];
    firstFailure: NodeOutcome | undefined;
    interrupted: NodeJS.Signals | undefined;
    traceId: string;
  },
): Promise<JobSnapshot | undefined> {
  const snapshot = await backend.snapshot().catch(() => undefined);
  if (run.exitCode === 0 || snapshot === undefined || isTerminal(snapshot.state)) return snapshot;
  const failed = run.firstFailure ?? run.nodes.find((n) => n.outcome.exitCode !== 0)?.outcome;
  await backend.endJob({
    status: run.interrupted !== undefined ? "cancelled" : "failed",
    exitCode: run.exitCode,
    reason:
      run.interrupted !== undefined
        ? `trainer-agent local interrupted by ${run.interrupted}`
        : `${failed?.label ?? "a node"} exited ${run.exitCode} before reporting done (see its output.log)`,
    traceId: run.traceId,
  });
  return (await backend.snapshot().catch(() => undefined)) ?? snapshot;
}

/** Every object below a job's root (checkpoints: all nodes' parts in sharded mode; predictions), with its bucket. */
export async function storedUnder(
  client: S3Client | undefined,
  root: CheckpointRoot | string,
): Promise<{ bucket: string | undefined; keys: Array<{ key: string; bytes: number }> }> {
  if (typeof root === "string" || root.bucket === undefined) return { bucket: undefined, keys: [] };
  if (client === undefined) return { bucket: root.bucket, keys: [] };
  const keys = await listKeys(client, root.bucket, root.prefix).catch(() => []);
  return { bucket: root.bucket, keys };
}
