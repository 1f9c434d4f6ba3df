/**
 * Where checkpoints live: `CHECKPOINT_URI` or `s3://{bucket}/checkpoints/job-{JOB_ID}/`; in sharded mode each node
 * writes below `node-{rank}/`. A checkpoint is complete when its manifest exists under `_manifests/`: manifests are
 * written after every file they list, named so that the newest sorts last.
 */
import { parseUri, type StorageContext } from "../internal/context.ts";
import type { ObjectStore } from "../store/types.ts";

export const MANIFEST_FORMAT = "astrago-checkpoint/1";

export interface ManifestFile {
  /** Path relative to CHECKPOINT_DIR. */
  path: string;
  key: string;
  size: number;
  etag: string;
  /** Multipart part size (to recompute the ETag); the size for a single PUT. */
  part_size: number;
}

export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT;
  job_id: string | null;
  node_rank: number;
  /** The checkpoint: a file or folder relative to CHECKPOINT_DIR; restored there and exported as RESUME_FROM. */
  name: string;
  kind: "file" | "dir";
  /** True when the training reported it (::trainer::{"checkpoint":...}); false when found by watching. */
  reported: boolean;
  created_at: string;
  bytes: number;
  files: ManifestFile[];
}

export interface CheckpointLocation {
  store: ObjectStore;
  bucketLabel: string;
  /** Key prefix of this node's part, ending in "/". */
  base: string;
  manifests: string;
}

/** This node's checkpoint location, or a reason why checkpoints are off. */
export async function checkpointLocation(ctx: StorageContext): Promise<CheckpointLocation | string> {
  const { checkpointUri, bucket, type } = ctx.config;
  let b: string | undefined;
  let prefix: string;
  if (checkpointUri !== undefined) {
    const parsed = parseUri(checkpointUri);
    b = parsed.bucket;
    prefix = parsed.key === "" || parsed.key.endsWith("/") ? parsed.key : `${parsed.key}/`;
  } else {
    if (ctx.jobId === undefined) return "neither CHECKPOINT_URI nor JOB_ID is set";
    if (bucket === undefined && type !== "file") return "S3_BUCKET is not set";
    b = bucket;
    prefix = `checkpoints/job-${ctx.jobId}/`;
  }
  const store = await ctx.storeFor(b);
  const base = ctx.config.checkpointUpload === "sharded" ? `${prefix}node-${ctx.nodeRank}/` : prefix;
  return { store, bucketLabel: store.label, base, manifests: `${base}_manifests/` };
}

/** Manifest key: zero-padded time (ms) then a sequence number, so lexical order is creation order. */
export function manifestKey(loc: CheckpointLocation, now: number, seq: number): string {
  return `${loc.manifests}${String(Math.floor(now)).padStart(15, "0")}-${String(seq % 10_000).padStart(4, "0")}.json`;
}
