/**
 * Where a predict run's output goes: `PREDICTIONS_URI` or `s3://{bucket}/predictions/job-{JOB_ID}/`; with more
 * than one node, each node below `node-{rank}/` (their files would otherwise overwrite each other's). A node's
 * upload is complete when its `_manifest.json` exists: it is written after every file it lists.
 */
import { rootOfUri, type CheckpointRoot } from "../checkpoint/layout.ts";

export const PREDICTIONS_MANIFEST = "_manifest.json";
export const PREDICTIONS_FORMAT = "astrago-predictions/1";

/**
 * A job's predictions root (the whole job's, without the node part), or why there is none. The agent and
 * `trainer-agent local` (which lists what the agents stored) both ask here.
 */
export function predictionsRoot(where: {
  predictionsUri: string | undefined;
  bucket: string | undefined;
  jobId: string | undefined;
}): CheckpointRoot | string {
  if (where.predictionsUri !== undefined) return rootOfUri(where.predictionsUri);
  if (where.jobId === undefined) return "neither PREDICTIONS_URI nor JOB_ID is set";
  return { bucket: where.bucket, prefix: `predictions/job-${where.jobId}/` };
}

/** This node's prefix below the job's root. */
export function nodePrefix(root: CheckpointRoot, nnodes: number, nodeRank: number): string {
  return nnodes > 1 ? `${root.prefix}node-${nodeRank}/` : root.prefix;
}
