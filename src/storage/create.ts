/**
 * createStorage: the agent's storage (src/storage/types.ts) built from the typed config. Heavy modules (the AWS SDK)
 * load here, on first use, so `trainer-agent run` without storage never pays for them.
 */
import type { Logger } from "pino";
import { requirePredict, type AgentConfig, type PredictConfig } from "../config/agent.ts";
import type { StoredCheckpoint } from "../contract/index.ts";
import { jobCheckpointPrefix } from "../contract/paths.ts";
import { AgentError } from "../errors/index.ts";
import type { RetryDeps } from "../retry/index.ts";
import { bucketMissing, checkpointLocation, locationIn, type CheckpointLocation } from "./checkpoint/layout.ts";
import { restoreLatestCheckpoint } from "./checkpoint/restore.ts";
import { startCheckpointSync, type KnownFiles } from "./checkpoint/sync.ts";
import { pullDataset } from "./dataset/pull.ts";
import { restoreModel } from "./predict/model.ts";
import { nodePrefix, predictionsRoot } from "./predict/layout.ts";
import { uploadPredictions } from "./predict/upload.ts";
import { DEFAULT_TUNING, type StorageContext, type StorageTuning } from "./internal/context.ts";
import { PartBuffers, Pool } from "./internal/pool.ts";
import type { ProgressSink } from "./internal/progress.ts";
import { createFileStore } from "./store/file.ts";
import type { ObjectStore } from "./store/types.ts";
import type { UrlStore } from "./store/url.ts";
import type { CheckpointSync, Storage } from "./types.ts";

export interface StorageDeps {
  logger: Logger;
  /** Clock in ms (Date.now). */
  now?: () => number;
  /** Where progress bars go when it is a TTY (process.stderr). */
  stderr?: ProgressSink;
  /** Timeouts and sizes; tests shorten them. */
  tuning?: Partial<StorageTuning>;
  /** The waits between re-requests of a broken body; tests inject them. */
  retry?: Pick<RetryDeps, "sleep" | "random">;
}

export interface ClosableStorage extends Storage {
  /** Releases sockets; the run loop may simply exit instead. */
  close(): void;
}

const NO_SYNC: CheckpointSync = {
  notify() {},
  finalSync: () => Promise.resolve([] as StoredCheckpoint[]),
  close: () => Promise.resolve(),
};

export async function createStorage(config: AgentConfig, deps: StorageDeps): Promise<ClosableStorage> {
  const sc = config.storage;
  const tuning: StorageTuning = { ...DEFAULT_TUNING, ...deps.tuning };
  // By bucket name; the stores that are no bucket's go under keys no bucket can have (upper case).
  const stores = new Map<string, Promise<ObjectStore>>();
  const storeFor = (bucket: string | undefined): Promise<ObjectStore> => {
    if (sc.type === "file") {
      if (sc.fileRoot === undefined)
        throw new AgentError("CONFIG_INVALID", "STORAGE_PATH must be set when STORAGE_TYPE is file");
      const key = "FILE";
      if (!stores.has(key)) stores.set(key, Promise.resolve(createFileStore(sc.fileRoot)));
      return stores.get(key) as Promise<ObjectStore>;
    }
    if (bucket === undefined)
      throw new AgentError(
        "CONFIG_INVALID",
        "S3_BUCKET must be set (or give DATASET_URI / CHECKPOINT_URI as s3://bucket/...)",
      );
    let s = stores.get(bucket);
    if (s === undefined) {
      s = import("./store/s3.ts").then((m) =>
        m.createS3Store(sc, bucket, {
          maxSockets: Math.max(sc.concurrency * 2, 16),
          requestTimeoutMs: tuning.requestTimeoutMs,
          connectTimeoutMs: tuning.connectTimeoutMs,
          maxAttempts: tuning.maxAttempts,
          rangeReader: tuning.rangeReader,
        }),
      );
      stores.set(bucket, s);
    }
    return s;
  };
  // One store for the storage's life: its pool keeps the connections, and storage.close() closes it once.
  let urlStore: Promise<UrlStore> | undefined;
  const datasetUrlStore = (): Promise<UrlStore> => {
    if (sc.datasetUrl === undefined) throw new AgentError("CONFIG_INVALID", "DATASET_URL is not set");
    if (urlStore === undefined) {
      const url = new URL(sc.datasetUrl.reveal());
      urlStore = import("./store/url.ts").then(
        (m) =>
          new m.UrlStore(url, {
            connections: Math.max(sc.concurrency * 2, 16),
            connectTimeoutMs: tuning.connectTimeoutMs,
            requestTimeoutMs: tuning.requestTimeoutMs,
          }),
      );
      stores.set("DATASET_URL", urlStore);
    }
    return urlStore;
  };
  const ctx: StorageContext = {
    config: sc,
    jobId: config.jobId,
    nodeRank: config.distributed.nodeRank,
    storeFor,
    datasetUrlStore,
    pool: new Pool(sc.concurrency),
    buffers: new PartBuffers(tuning.downloadPartSize, sc.concurrency),
    logger: deps.logger,
    now: deps.now ?? Date.now,
    stderr: deps.stderr ?? process.stderr,
    tuning,
    retryDeps: deps.retry ?? {},
  };
  const known: KnownFiles = new Map();
  let location: Promise<CheckpointLocation | string> | undefined;
  const where = (): Promise<CheckpointLocation | string> => {
    location ??=
      sc.checkpointStore === "backend"
        ? backendLocation(config, ctx, stores)
        : sc.type === undefined
          ? Promise.resolve("no storage is configured")
          : checkpointLocation(ctx);
    return location;
  };

  return {
    async restoreLatestCheckpoint(opts) {
      const loc = await where();
      if (typeof loc === "string") {
        deps.logger.info(`checkpoint restore off: ${loc}`);
        return null;
      }
      return restoreLatestCheckpoint(ctx, loc, known, opts);
    },
    async pullDataset(opts) {
      if (sc.type === undefined && sc.datasetUrl === undefined) return null;
      return pullDataset(ctx, opts);
    },
    startCheckpointSync(opts) {
      const mode = sc.checkpointUpload;
      if (mode === "off" || (sc.type === undefined && sc.checkpointStore !== "backend")) return NO_SYNC;
      if (mode === "rank0" && ctx.nodeRank !== 0) {
        deps.logger.info("checkpoint upload is done by node rank 0 (CHECKPOINT_UPLOAD=rank0)");
        return NO_SYNC;
      }
      // The location resolves asynchronously (it may load the SDK); reports that arrive before are queued.
      let sync: CheckpointSync | undefined;
      const early: string[] = [];
      let failed: unknown;
      const ready = where().then(
        (loc) => {
          if (typeof loc === "string") {
            deps.logger.warn(`checkpoint upload off: ${loc}`);
            return;
          }
          sync = startCheckpointSync(ctx, loc, known, opts);
          for (const p of early) sync.notify(p);
        },
        (error: unknown) => {
          failed = error;
        },
      );
      return {
        notify(p) {
          if (sync) sync.notify(p);
          else early.push(p);
        },
        async finalSync(signal) {
          await ready;
          if (failed !== undefined) throw failed;
          return sync ? sync.finalSync(signal) : [];
        },
        async close() {
          await ready;
          await sync?.close();
        },
      };
    },
    ...predictStorage(config, ctx),
    close() {
      for (const s of stores.values())
        void s.then(
          (x) => x.close(),
          () => {},
        );
    },
  };
}

/**
 * CHECKPOINT_STORE=backend: the job's checkpoints through URLs the backend presigns (store/presigned.ts), at the
 * prefix the backend allows this job (`checkpoints/job-{JOB_ID}/`; CHECKPOINT_URI does not apply).
 */
async function backendLocation(
  config: AgentConfig,
  ctx: StorageContext,
  stores: Map<string, Promise<ObjectStore>>,
): Promise<CheckpointLocation | string> {
  if (config.jobId === undefined) return "CHECKPOINT_STORE=backend needs JOB_ID";
  const [{ PresignedStore, backendCall }, { resolveTrace }] = await Promise.all([
    import("./store/presigned.ts"),
    import("../log/trace.ts"),
  ]);
  const backend = backendCall({
    callbacks: config.callbacks,
    jobId: config.jobId,
    traceparent: resolveTrace({ traceId: config.traceId, traceparent: config.traceparent }).traceparent,
    logger: ctx.logger,
    now: ctx.now,
    retryDeps: ctx.retryDeps,
  });
  const prefix = jobCheckpointPrefix(config.jobId);
  const store = new PresignedStore({
    call: backend.call,
    label: `backend:${prefix}`.replace(/\/$/, ""),
    reader: {
      connections: Math.max(config.storage.concurrency * 2, 16),
      connectTimeoutMs: ctx.tuning.connectTimeoutMs,
      requestTimeoutMs: ctx.tuning.requestTimeoutMs,
    },
    now: ctx.now,
    close: backend.close,
  });
  stores.set("BACKEND", Promise.resolve(store)); // not a valid bucket name, like "DATASET_URL"
  return locationIn(ctx, store, prefix);
}

/** The predict run's half of the storage: the model in, the predictions out. */
function predictStorage(config: AgentConfig, ctx: StorageContext): Pick<Storage, "restoreModel" | "uploadPredictions"> {
  const predict = (): PredictConfig => requirePredict(config);
  return {
    restoreModel: (opts) => restoreModel(ctx, predict(), opts),
    async uploadPredictions(opts) {
      const p = predict();
      const root = predictionsRoot({
        predictionsUri: p.predictionsUri,
        bucket: config.storage.bucket,
        jobId: ctx.jobId,
      });
      if (typeof root === "string") throw new AgentError("CONFIG_INVALID", `predictions: ${root}`);
      const missing = bucketMissing(root.bucket, config.storage.type);
      if (missing !== undefined)
        throw new AgentError("CONFIG_INVALID", `predictions: ${missing} (or give PREDICTIONS_URI)`);
      const store = await ctx.storeFor(root.bucket);
      const base = nodePrefix(root, config.distributed.nnodes, ctx.nodeRank);
      const up = await uploadPredictions(ctx, { store, base }, p.predictionsDir, opts);
      return { ...up, location: `${store.label}/${base}` };
    },
  };
}
