import type { Logger } from "pino";
import type { StorageConfig } from "../../config/agent.ts";
import type { RetryDeps } from "../../retry/index.ts";
import type { ObjectStore } from "../store/types.ts";
import type { UrlStore } from "../store/url.ts";
import type { PartBuffers, Pool } from "./pool.ts";
import type { ProgressSink } from "./progress.ts";
import type { RangeSource } from "./ranges.ts";

/** Knobs with production defaults; tests shorten the timeouts. */
export interface StorageTuning {
  /** Socket idle timeout of one request, ms. */
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  /** SDK attempts per request (standard retry mode). */
  maxAttempts: number;
  /** Re-requests of one range after a broken body. */
  rangeRetries: number;
  /** A response body silent for this long is dropped and re-requested, ms. */
  idleTimeoutMs: number;
  /** Bytes per ranged GET. */
  downloadPartSize: number;
  /** A watched checkpoint counts as written when its files kept size and mtime for this long, ms. */
  checkpointQuietMs: number;
  /** How often CHECKPOINT_DIR is rescanned besides fs.watch events, ms. */
  checkpointPollMs: number;
  /** In-place ranged reader, http and https alike (store/s3.ts): the socket client, or undici to compare. */
  rangeReader: "socket" | "undici";
}

export const DEFAULT_TUNING: StorageTuning = {
  requestTimeoutMs: 60_000,
  connectTimeoutMs: 10_000,
  maxAttempts: 5,
  rangeRetries: 5,
  idleTimeoutMs: 60_000,
  downloadPartSize: 8 * 1024 * 1024,
  checkpointQuietMs: 2_000,
  checkpointPollMs: 1_000,
  rangeReader: "socket",
};

export interface StorageContext {
  config: StorageConfig;
  jobId: string | undefined;
  nodeRank: number;
  /** The store for a bucket (STORAGE_TYPE=file: always the STORAGE_PATH directory). */
  storeFor(bucket: string | undefined): Promise<ObjectStore>;
  /** DATASET_URL's store (store/url.ts); only called when DATASET_URL is set. */
  datasetUrlStore(): Promise<UrlStore>;
  /** One pool bounds every GET and part upload in flight (STORAGE_CONCURRENCY). */
  pool: Pool;
  /** Reused download part buffers (tuning.downloadPartSize each), about one per pool slot. */
  buffers: PartBuffers;
  logger: Logger;
  now: () => number;
  stderr: ProgressSink | undefined;
  tuning: StorageTuning;
  /** The waits between re-requests of a broken body (abortableSleep and Math.random unless injected). */
  retryDeps: Pick<RetryDeps, "sleep" | "random">;
}

export function rangeSource(
  ctx: StorageContext,
  store: ObjectStore,
  obj: { key: string; size: number; etag: string },
  extra: { signal?: AbortSignal; onBytes?: (n: number) => void } = {},
): RangeSource {
  return {
    store,
    key: obj.key,
    size: obj.size,
    etag: obj.etag,
    pool: ctx.pool,
    buffers: ctx.buffers,
    partSize: ctx.tuning.downloadPartSize,
    retries: ctx.tuning.rangeRetries,
    idleTimeoutMs: ctx.tuning.idleTimeoutMs,
    retryDeps: ctx.retryDeps,
    ...extra,
  };
}

/** `s3://bucket/key` (or `file://bucket/key`) split into bucket and key. */
export function parseUri(uri: string): { bucket: string; key: string } {
  const m = /^(?:s3|file):\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new RangeError(`not an s3:// URI: ${uri}`);
  return { bucket: m[1] as string, key: m[2] as string };
}
