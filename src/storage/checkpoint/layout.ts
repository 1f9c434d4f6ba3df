/**
 * Where checkpoints live: `CHECKPOINT_URI` or `s3://{bucket}/checkpoints/job-{JOB_ID}/`; in sharded mode each node
 * writes below `node-{rank}/`. A checkpoint is complete when its manifest exists under `_manifests/`: manifests are
 * written after every file they list, named so that the newest sorts last.
 */
import type { StorageType } from "../../config/agent.ts";
import { jobCheckpointPrefix } from "../../contract/paths.ts";
import { parseUri, type StorageContext } from "../internal/context.ts";
import type { ObjectStore } from "../store/types.ts";

export const MANIFEST_FORMAT = "astrago-checkpoint/1";

/** The folder of manifests, in the job's root or in each node's part of it (sharded mode). */
const MANIFESTS = "_manifests/";

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

/** A job's checkpoints: a bucket (undefined: the store's own, as for STORAGE_TYPE=file) and a key prefix. */
export interface CheckpointRoot {
  bucket: string | undefined;
  /** Key prefix of the whole job ("" or ending in "/"); sharded nodes write below `node-{rank}/` in it. */
  prefix: string;
}

/**
 * Where a job's checkpoints live: CHECKPOINT_URI's bucket and prefix, else `checkpoints/job-{jobId}/` in `bucket`;
 * a reason when neither names a place. The one place that knows this layout: the agent and `trainer-agent local`
 * (which lists what the agents stored) both ask here.
 */
export function checkpointRoot(where: {
  checkpointUri: string | undefined;
  bucket: string | undefined;
  jobId: string | undefined;
}): CheckpointRoot | string {
  if (where.checkpointUri !== undefined) return rootOfUri(where.checkpointUri);
  if (where.jobId === undefined) return "neither CHECKPOINT_URI nor JOB_ID is set";
  return { bucket: where.bucket, prefix: jobCheckpointPrefix(where.jobId) };
}

/** An `s3://bucket/prefix` URI as a root: its bucket and its key prefix, ending in "/" (or ""). */
export function rootOfUri(uri: string): CheckpointRoot {
  const parsed = parseUri(uri);
  const prefix = parsed.key === "" || parsed.key.endsWith("/") ? parsed.key : `${parsed.key}/`;
  return { bucket: parsed.bucket, prefix };
}

/** Whether a key below a checkpoint root is a manifest (the rest are the checkpoints' files). */
export function isManifestKey(key: string): boolean {
  return key.includes(`/${MANIFESTS}`) || key.startsWith(MANIFESTS);
}

/** This node's checkpoint location, or a reason why checkpoints are off. */
export async function checkpointLocation(ctx: StorageContext): Promise<CheckpointLocation | string> {
  const { checkpointUri, bucket, type } = ctx.config;
  const root = checkpointRoot({ checkpointUri, bucket, jobId: ctx.jobId });
  if (typeof root === "string") return root;
  return bucketMissing(root.bucket, type) ?? locationIn(ctx, await ctx.storeFor(root.bucket), root.prefix);
}

/**
 * Why nothing can be stored without a bucket: a bucket service needs one (a `file` store does not). Checkpoints and
 * a predict run's model and predictions all say it with these words.
 */
export function bucketMissing(bucket: string | undefined, type: StorageType | undefined): string | undefined {
  return bucket === undefined && type !== "file" ? "S3_BUCKET is not set" : undefined;
}

/** This node's part of a job's checkpoints under prefix in store (below `node-{rank}/` in sharded mode). */
export function locationIn(ctx: StorageContext, store: ObjectStore, prefix: string): CheckpointLocation {
  const base = ctx.config.checkpointUpload === "sharded" ? `${prefix}node-${ctx.nodeRank}/` : prefix;
  return locationOf(store, base);
}

/** The checkpoints below `base` in `bucket` (a predict run reads another job's this way), or why there are none. */
export async function locationAt(
  ctx: StorageContext,
  bucket: string | undefined,
  base: string,
): Promise<CheckpointLocation | string> {
  return bucketMissing(bucket, ctx.config.type) ?? locationOf(await ctx.storeFor(bucket), base);
}

function locationOf(store: ObjectStore, base: string): CheckpointLocation {
  return { store, bucketLabel: store.label, base, manifests: `${base}${MANIFESTS}` };
}

/** Manifest key: zero-padded time (ms) then a sequence number, so lexical order is creation order. */
export function manifestKey(loc: CheckpointLocation, now: number, seq: number): string {
  return `${loc.manifests}${String(Math.floor(now)).padStart(15, "0")}-${String(seq % 10_000).padStart(4, "0")}.json`;
}
