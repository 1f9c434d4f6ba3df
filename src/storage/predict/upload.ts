/**
 * A predict run's output: every file in PREDICTIONS_DIR uploaded below the job's predictions prefix with the
 * checkpoint upload's code (Content-MD5, multipart, ETag checks), then `_manifest.json` listing them, written last
 * so that a reader that finds it knows the set is complete.
 */
import { createHash } from "node:crypto";
import type { StoredCheckpoint } from "../../contract/index.ts";
import { AgentError, isAgentError, messageOf } from "../../errors/index.ts";
import { walk, type FileStat } from "../checkpoint/sync.ts";
import { uploadFile } from "../checkpoint/upload.ts";
import type { StorageContext } from "../internal/context.ts";
import { Md5Pool } from "../internal/md5-pool.ts";
import { forEachLimit } from "../internal/pool.ts";
import { startProgress } from "../internal/progress.ts";
import type { ObjectStore } from "../store/types.ts";
import { PREDICTIONS_FORMAT, PREDICTIONS_MANIFEST } from "./layout.ts";

export interface UploadedPredictions {
  objects: StoredCheckpoint[];
  /** Key of `_manifest.json`; undefined when PREDICTIONS_DIR held nothing (nothing is written then). */
  manifest: string | undefined;
}

export async function uploadPredictions(
  ctx: StorageContext,
  where: { store: ObjectStore; base: string },
  dir: string,
  opts: { signal?: AbortSignal },
): Promise<UploadedPredictions> {
  const files: FileStat[] = [];
  await walk(dir, "", files);
  if (files.length === 0) return { objects: [], manifest: undefined };
  files.sort((a, b) => (a.rel < b.rel ? -1 : 1));
  const { store, base } = where;
  const progress = startProgress({
    label: "predictions",
    total: files.reduce((n, f) => n + f.size, 0),
    logger: ctx.logger,
    stderr: undefined,
    now: ctx.now,
  });
  const objects: StoredCheckpoint[] = new Array<StoredCheckpoint>(files.length);
  const md5 = new Md5Pool();
  try {
    await forEachLimit(files, ctx.pool.limit, async (f, i) => {
      const up = await uploadFile({
        store,
        pool: ctx.pool,
        file: f.abs,
        key: `${base}${f.rel}`,
        minPartSize: ctx.config.partSizeBytes,
        signal: opts.signal,
        onBytes: (n) => progress.add(n),
        md5,
      });
      progress.add(0, 1);
      objects[i] = { key: up.key, bytes: up.size, etag: up.etag };
    });
    const body = Buffer.from(
      `${JSON.stringify(
        {
          format: PREDICTIONS_FORMAT,
          job_id: ctx.jobId ?? null,
          node_rank: ctx.nodeRank,
          created_at: new Date(ctx.now()).toISOString(),
          files: objects.map((o, i) => ({ path: (files[i] as FileStat).rel, ...o })),
        },
        null,
        2,
      )}\n`,
    );
    const manifest = `${base}${PREDICTIONS_MANIFEST}`;
    await store.putObject(manifest, body, createHash("md5").update(body).digest("base64"), opts.signal);
    return { objects, manifest };
  } catch (error) {
    if (isAgentError(error) && error.code !== "CHECKPOINT_UPLOAD_FAILED") throw error;
    throw new AgentError(
      "PREDICTIONS_UPLOAD_FAILED",
      `uploading the predictions to ${store.label}/${base} failed: ${messageOf(error)}`,
      { cause: error },
    );
  } finally {
    progress.done();
    await md5.close();
  }
}
