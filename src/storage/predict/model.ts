/**
 * The model of a predict run, restored into CHECKPOINT_DIR: the newest complete checkpoint of a job (MODEL_JOB_ID,
 * or a checkpoint root MODEL_URI ending in "/") through the same manifests and checks as a training's resume, or
 * one object (MODEL_URI). Finding none is MODEL_NOT_FOUND, never a prediction from an untrained model.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { PredictConfig } from "../../config/agent.ts";
import { AgentError } from "../../errors/index.ts";
import { checkpointRoot, locationAt, rootOfUri, type CheckpointRoot } from "../checkpoint/layout.ts";
import { restoreLatestCheckpoint } from "../checkpoint/restore.ts";
import { parseUri, type StorageContext } from "../internal/context.ts";
import { downloadObjects } from "../internal/objects.ts";
import type { RestoredCheckpoint, TransferProgress } from "../types.ts";

type Model = Pick<PredictConfig, "modelJobId" | "modelUri">;

export async function restoreModel(
  ctx: StorageContext,
  model: Model,
  opts: { signal?: AbortSignal; onProgress?: (p: TransferProgress) => void },
): Promise<RestoredCheckpoint> {
  if (model.modelUri !== undefined && !model.modelUri.endsWith("/")) return restoreObject(ctx, model.modelUri, opts);
  const [variable, root]: [string, CheckpointRoot | string] =
    model.modelUri !== undefined
      ? [`MODEL_URI=${model.modelUri}`, rootOfUri(model.modelUri)]
      : [
          `MODEL_JOB_ID=${model.modelJobId}`,
          checkpointRoot({ checkpointUri: undefined, bucket: ctx.config.bucket, jobId: model.modelJobId }),
        ];
  const loc = typeof root === "string" ? root : await locationAt(ctx, root.bucket, root.prefix);
  if (typeof loc === "string") throw new AgentError("CONFIG_INVALID", `${variable}: ${loc}`);
  const restored = await restoreLatestCheckpoint(ctx, loc, new Map(), opts);
  if (restored === null)
    throw new AgentError(
      "MODEL_NOT_FOUND",
      `no complete checkpoint in ${loc.bucketLabel}/${loc.base} (${variable}): the job stored none (still ` +
        "running, failed before its first checkpoint, or another bucket or CHECKPOINT_URI); a sharded job's " +
        "parts are below node-{rank}/: name one with MODEL_URI",
      { details: { bucket: loc.bucketLabel, prefix: loc.base } },
    );
  return restored;
}

/** One object, into CHECKPOINT_DIR under its own name (through a temporary folder, like a resume). */
async function restoreObject(
  ctx: StorageContext,
  uri: string,
  opts: { signal?: AbortSignal; onProgress?: (p: TransferProgress) => void },
): Promise<RestoredCheckpoint> {
  const { bucket, key } = parseUri(uri);
  const store = await ctx.storeFor(bucket);
  const head = await store.head(key, opts.signal);
  if (head === null)
    throw new AgentError("MODEL_NOT_FOUND", `${store.label}/${key} does not exist (MODEL_URI=${uri})`, {
      details: { bucket: store.label, key },
    });
  const root = path.resolve(ctx.config.checkpointDir);
  await fs.mkdir(root, { recursive: true });
  const tmp = await fs.mkdtemp(path.join(root, ".trainer-restore-"));
  const name = path.posix.basename(key);
  let bytes = 0;
  try {
    await downloadObjects(ctx, store, [{ key, size: head.size, etag: head.etag, file: path.join(tmp, name) }], {
      signal: opts.signal,
      onBytes: (n) => {
        bytes += n;
        opts.onProgress?.({ bytes, totalBytes: head.size, files: 0 });
      },
      onFile: () => undefined,
    });
    const dest = path.join(root, name);
    await fs.rename(path.join(tmp, name), dest);
    ctx.logger.info({ key, path: dest, bytes: head.size }, "model restored");
    return { path: dest, key, bytes: head.size, files: 1 };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
