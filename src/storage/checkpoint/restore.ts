/**
 * Resume: the newest manifest whose files are all still in the bucket with the recorded size and ETag is restored
 * into CHECKPOINT_DIR (downloaded into a temporary folder there, verified, then renamed into place) and its path
 * becomes RESUME_FROM. Older manifests are the fallback when the newest one's files were overwritten or deleted.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { AgentError } from "../../errors/index.ts";
import { rangeSource, type StorageContext } from "../internal/context.ts";
import { downloadObjects } from "../internal/objects.ts";
import { startProgress } from "../internal/progress.ts";
import { fetchRange } from "../internal/ranges.ts";
import type { RestoredCheckpoint, TransferProgress } from "../types.ts";
import { replaceDir } from "../dataset/place.ts";
import { MANIFEST_FORMAT, type CheckpointLocation, type CheckpointManifest } from "./layout.ts";
import type { KnownFiles } from "./sync.ts";
import { matchesEtag } from "./upload.ts";

function validName(name: string): boolean {
  return (
    name !== "" &&
    !name.startsWith("/") &&
    !name.split("/").includes("..") &&
    !name.includes("\\") &&
    !name.includes("\0")
  );
}

async function readManifest(
  ctx: StorageContext,
  loc: CheckpointLocation,
  key: string,
  signal?: AbortSignal,
): Promise<CheckpointManifest | null> {
  const head = await loc.store.head(key, signal);
  if (head === null || head.size === 0 || head.size > 16 * 1024 * 1024) return null;
  try {
    const body = await fetchRange(rangeSource(ctx, loc.store, head, { signal }), 0, head.size);
    const m = JSON.parse(body.toString("utf8")) as CheckpointManifest;
    if (m.format !== MANIFEST_FORMAT || !Array.isArray(m.files) || !validName(m.name)) return null;
    if (!m.files.every((f) => validName(f.path) && (f.path === m.name || f.path.startsWith(`${m.name}/`)))) return null;
    return m;
  } catch (error) {
    if (error instanceof SyntaxError) return null;
    throw error;
  }
}

export async function restoreLatestCheckpoint(
  ctx: StorageContext,
  loc: CheckpointLocation,
  known: KnownFiles,
  opts: { signal?: AbortSignal; onProgress?: (p: TransferProgress) => void },
): Promise<RestoredCheckpoint | null> {
  const log = ctx.logger.child({ checkpoints: `${loc.bucketLabel}/${loc.base}` });
  const manifests = (await loc.store.list(loc.manifests, opts.signal))
    .filter((o) => o.key.endsWith(".json"))
    .sort((a, b) => (a.key < b.key ? 1 : -1));
  for (const mo of manifests) {
    const m = await readManifest(ctx, loc, mo.key, opts.signal);
    if (m === null) {
      log.warn({ manifest: mo.key }, "skipping an unreadable checkpoint manifest");
      continue;
    }
    const heads = await Promise.all(m.files.map((f) => loc.store.head(f.key, opts.signal)));
    const stale = m.files.find(
      (f, i) => heads[i] === null || heads[i]?.size !== f.size || (f.etag !== "" && heads[i]?.etag !== f.etag),
    );
    if (stale !== undefined) {
      log.warn(
        { manifest: mo.key, file: stale.key },
        "checkpoint is incomplete in the bucket (file missing or replaced); trying an older one",
      );
      continue;
    }
    const root = path.resolve(ctx.config.checkpointDir);
    await fs.mkdir(root, { recursive: true });
    const tmp = await fs.mkdtemp(path.join(root, ".trainer-restore-"));
    const progress = startProgress({
      label: `restore ${m.name}`,
      total: m.bytes,
      logger: log,
      stderr: ctx.stderr,
      now: ctx.now,
      onProgress: opts.onProgress,
    });
    try {
      const targets = [];
      for (const f of m.files) {
        const file = path.join(tmp, ...f.path.split("/"));
        await fs.mkdir(path.dirname(file), { recursive: true });
        targets.push({ key: f.key, size: f.size, etag: f.etag, file });
      }
      // The MD5 check is done below against the manifest (part size aware), not per GET.
      await downloadObjects(ctx, loc.store, targets, {
        signal: opts.signal,
        verifyMd5: false,
        onBytes: (n) => progress.add(n),
        onFile: () => progress.add(0, 1),
      });
      for (const [i, f] of m.files.entries()) {
        const ok = await matchesEtag((targets[i] as { file: string }).file, f.etag, f.part_size);
        if (ok === false)
          throw new AgentError(
            "CHECKPOINT_RESTORE_FAILED",
            `${loc.bucketLabel}/${f.key}: downloaded bytes do not match the ETag in the manifest`,
          );
      }
      const dest = path.join(root, ...m.name.split("/"));
      await fs.mkdir(path.dirname(dest), { recursive: true });
      const from = path.join(tmp, ...m.name.split("/"));
      if (m.kind === "dir") await replaceDir(from, dest);
      else await fs.rename(from, dest);
      for (const f of m.files) {
        const abs = path.join(root, ...f.path.split("/"));
        const st = await fs.stat(abs);
        known.set(abs, { size: st.size, mtimeMs: st.mtimeMs, key: f.key, etag: f.etag, partSize: f.part_size });
      }
      progress.done();
      log.info({ manifest: mo.key, path: dest, bytes: m.bytes, files: m.files.length }, "checkpoint restored");
      return { path: dest, key: mo.key, bytes: m.bytes, files: m.files.length };
    } catch (error) {
      progress.done();
      if ((error as { name?: string }).name === "AbortError") throw error;
      if (
        error instanceof AgentError &&
        (error.code === "CHECKPOINT_RESTORE_FAILED" ||
          error.code === "STORAGE_UNAVAILABLE" ||
          error.code === "STORAGE_DENIED")
      )
        throw error;
      throw new AgentError(
        "CHECKPOINT_RESTORE_FAILED",
        `restoring ${m.name} from ${loc.bucketLabel}/${loc.base} failed: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }
  return null;
}
