/**
 * Downloads plain objects (a dataset prefix, a single object, checkpoint files) into files: small objects one GET
 * each (MD5-checked when the ETag is a plain MD5), large ones as parallel ranged GETs written at their offsets.
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import { AgentError } from "../../errors/index.ts";
import type { ObjectStore } from "../store/types.ts";
import type { StorageContext } from "./context.ts";
import { rangeSource } from "./context.ts";
import { forEachLimit } from "./pool.ts";
import { downloadToFile, rangeChunks, readsInPlace, withRange, writeAt, writeChunksAt } from "./ranges.ts";

export interface ObjectToFile {
  key: string;
  size: number;
  etag: string;
  /** Absolute destination path (its folder exists). */
  file: string;
  mode?: number;
}

export async function downloadObjects(
  ctx: StorageContext,
  store: ObjectStore,
  objects: readonly ObjectToFile[],
  opts: { signal?: AbortSignal; onBytes: (n: number) => void; onFile: () => void; verifyMd5?: boolean },
): Promise<void> {
  const part = ctx.tuning.downloadPartSize;
  // Large objects first, so the long ones start early and small ones fill the gaps.
  const ordered = [...objects].sort((a, b) => b.size - a.size);
  await forEachLimit(ordered, ctx.pool.limit, async (o) => {
    const src = rangeSource(ctx, store, o, { signal: opts.signal, onBytes: opts.onBytes });
    const fh = await fs.open(o.file, "w", o.mode ?? 0o644);
    try {
      if (o.size > part) {
        await downloadToFile(src, fh);
      } else if (o.size > 0) {
        const md5 = opts.verifyMd5 !== false && /^[0-9a-f]{32}$/.test(o.etag) ? createHash("md5") : undefined;
        if (readsInPlace(src))
          await withRange(src, 0, o.size, async (bytes) => {
            md5?.update(bytes);
            await writeAt(fh, bytes, 0);
          });
        else
          await ctx.pool.run(async () => {
            const hashed = async function* (): AsyncGenerator<Buffer> {
              for await (const chunk of rangeChunks(src, 0, o.size)) {
                md5?.update(chunk);
                yield chunk;
              }
            };
            await writeChunksAt(fh, hashed(), 0);
          });
        if (md5 !== undefined && md5.digest("hex") !== o.etag)
          throw new AgentError("DATASET_CORRUPT", `${store.label}/${o.key}: content does not match its ETag (MD5)`);
      }
    } finally {
      await fh.close();
    }
    opts.onFile();
  });
}
