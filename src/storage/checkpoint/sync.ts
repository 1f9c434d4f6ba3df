/**
 * Background checkpoint upload. Two ways a checkpoint is found:
 * - a report (`::trainer::{"checkpoint": path}` -> notify(path)): the training says the file or folder is complete,
 *   so it is uploaded at once;
 * - watching CHECKPOINT_DIR (fs.watch plus a periodic rescan): each top-level file or folder is a checkpoint once
 *   all its files kept the same size and mtime for a quiet period. Once the training has reported a checkpoint,
 *   reports are the only source (a watched folder could otherwise publish half of what a report will name).
 * Either way a file that changes while it is read is not stored, and the manifest is written after the files.
 * Uploads run one checkpoint at a time (parts in parallel), so manifests appear in order.
 */
import { watch, type FSWatcher } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { StoredCheckpoint } from "../../contract/index.ts";
import { AgentError } from "../../errors/index.ts";
import type { StorageContext } from "../internal/context.ts";
import { startProgress } from "../internal/progress.ts";
import type { CheckpointSync } from "../types.ts";
import {
  manifestKey,
  MANIFEST_FORMAT,
  type CheckpointLocation,
  type CheckpointManifest,
  type ManifestFile,
} from "./layout.ts";
import { Md5Pool } from "../internal/md5-pool.ts";
import { FileChangedError, uploadFile } from "./upload.ts";

/** What is already in the bucket, by absolute local path (shared with restore, so a restored file is not re-sent). */
export type KnownFiles = Map<string, { size: number; mtimeMs: number; key: string; etag: string; partSize: number }>;

export interface FileStat {
  rel: string;
  abs: string;
  size: number;
  mtimeMs: number;
}

const IGNORED = /(^|\/)(\.|__pycache__)|(\.tmp|\.partial|\.part|\.lock|~)$/;

/** The files below `root` (`rel` "" for all), skipping dot files, caches and partial writes. */
export async function walk(root: string, rel: string, out: FileStat[]): Promise<void> {
  let entries;
  try {
    entries = await fs.readdir(rel === "" ? root : path.join(root, rel), { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return;
    throw error;
  }
  for (const e of entries) {
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    if (IGNORED.test(r)) continue;
    if (e.isDirectory()) await walk(root, r, out);
    else if (e.isFile()) {
      try {
        const st = await fs.stat(path.join(root, r));
        out.push({ rel: r, abs: path.join(root, r), size: st.size, mtimeMs: st.mtimeMs });
      } catch {
        // Deleted between readdir and stat: not a checkpoint any more.
      }
    }
  }
}

/** The files of one checkpoint (a file or a folder below CHECKPOINT_DIR). */
async function unitFiles(root: string, unit: string): Promise<{ kind: "file" | "dir"; files: FileStat[] }> {
  const abs = path.join(root, unit);
  const st = await fs.stat(abs).catch(() => null);
  if (st === null) return { kind: "file", files: [] };
  if (st.isFile()) return { kind: "file", files: [{ rel: unit, abs, size: st.size, mtimeMs: st.mtimeMs }] };
  const files: FileStat[] = [];
  await walk(root, unit, files);
  return { kind: "dir", files: files.sort((a, b) => (a.rel < b.rel ? -1 : 1)) };
}

const signature = (files: FileStat[]): string => files.map((f) => `${f.rel}:${f.size}:${f.mtimeMs}`).join("|");

export function startCheckpointSync(
  ctx: StorageContext,
  loc: CheckpointLocation,
  known: KnownFiles,
  opts: { onUploaded?: (c: StoredCheckpoint) => void },
): CheckpointSync {
  const root = path.resolve(ctx.config.checkpointDir);
  const log = ctx.logger.child({ checkpoints: `${loc.bucketLabel}/${loc.base}` });
  const stop = new AbortController();
  const stored = new Map<string, StoredCheckpoint>();
  const uploadedSig = new Map<string, string>();
  const seen = new Map<string, { sig: string; since: number }>();
  const queue: { unit: string; reported: boolean; force: boolean }[] = [];
  const failures = new Map<string, unknown>();
  let reportsSeen = false;
  let running: Promise<void> | undefined;
  let closed = false;
  let seq = 0;
  const md5 = new Md5Pool();

  const unitOf = (p: string): string | undefined => {
    const abs = path.resolve(root, p);
    const rel = path.relative(root, abs);
    if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) return undefined;
    return rel.split(path.sep).join("/");
  };

  const uploadUnit = async (unit: string, reported: boolean): Promise<void> => {
    const { kind, files } = await unitFiles(root, unit);
    if (files.length === 0) return;
    const sig = signature(files);
    if (uploadedSig.get(unit) === sig) return;
    const progress = startProgress({
      label: `checkpoint ${unit}`,
      total: files.reduce((n, f) => n + f.size, 0),
      logger: log,
      // Uploads run while the child writes to the same terminal: log lines, never a redrawn bar.
      stderr: undefined,
      now: ctx.now,
    });
    const listed: ManifestFile[] = [];
    for (const f of files) {
      const prior = known.get(f.abs);
      const key = `${loc.base}${f.rel}`;
      if (prior && prior.size === f.size && prior.mtimeMs === f.mtimeMs && prior.key === key) {
        listed.push({ path: f.rel, key, size: f.size, etag: prior.etag, part_size: prior.partSize });
        progress.add(f.size, 1);
        continue;
      }
      const up = await uploadFile({
        store: loc.store,
        pool: ctx.pool,
        file: f.abs,
        key,
        minPartSize: ctx.config.partSizeBytes,
        signal: stop.signal,
        onBytes: (n) => progress.add(n),
        md5,
      });
      progress.add(0, 1);
      known.set(f.abs, { size: up.size, mtimeMs: up.mtimeMs, key, etag: up.etag, partSize: up.partSize });
      listed.push({ path: f.rel, key, size: up.size, etag: up.etag, part_size: up.partSize });
    }
    progress.done();
    const bytes = listed.reduce((n, f) => n + f.size, 0);
    const manifest: CheckpointManifest = {
      format: MANIFEST_FORMAT,
      job_id: ctx.jobId ?? null,
      node_rank: ctx.nodeRank,
      name: unit,
      kind,
      reported,
      created_at: new Date(ctx.now()).toISOString(),
      bytes,
      files: listed,
    };
    const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    const { createHash } = await import("node:crypto");
    const mkey = manifestKey(loc, ctx.now(), seq++);
    await loc.store.putObject(mkey, body, createHash("md5").update(body).digest("base64"), stop.signal);
    uploadedSig.set(unit, sig);
    const entry: StoredCheckpoint =
      kind === "file"
        ? { key: `${loc.base}${unit}`, bytes, etag: (listed[0] as ManifestFile).etag }
        : { key: `${loc.base}${unit}/`, bytes };
    stored.set(entry.key, entry);
    log.info({ key: entry.key, bytes, files: listed.length, manifest: mkey, reported }, "checkpoint uploaded");
    opts.onUploaded?.(entry);
  };

  const drain = async (): Promise<void> => {
    while (queue.length > 0) {
      const job = queue.shift() as { unit: string; reported: boolean; force: boolean };
      for (let attempt = 1; ; attempt++) {
        try {
          await uploadUnit(job.unit, job.reported);
          failures.delete(job.unit);
          break;
        } catch (error) {
          if (stop.signal.aborted) return;
          if (error instanceof FileChangedError) {
            // Still being written: the watcher (or the next report / final sync) picks it up again.
            log.debug({ unit: job.unit }, "checkpoint changed during upload; will retry when it is stable");
            if (job.force || job.reported) {
              await delay(ctx.tuning.checkpointQuietMs, undefined, { signal: stop.signal }).catch(() => {});
              continue;
            }
            break;
          }
          if (attempt >= 3) {
            failures.set(job.unit, error);
            log.error(
              { unit: job.unit, err: { code: (error as AgentError).code, message: (error as Error).message } },
              "checkpoint upload failed",
            );
            break;
          }
          await delay(1_000 * attempt, undefined, { signal: stop.signal }).catch(() => {});
        }
      }
    }
  };

  const enqueue = (unit: string, reported: boolean, force = false): void => {
    if (queue.some((q) => q.unit === unit)) return;
    queue.push({ unit, reported, force });
    running ??= drain().finally(() => {
      running = undefined;
      const next = queue.shift();
      if (next !== undefined && !stop.signal.aborted) enqueue(next.unit, next.reported, next.force);
    });
  };

  /** One pass of the watcher: top-level entries whose files stayed unchanged for the quiet period get uploaded. */
  const scan = async (force: boolean): Promise<void> => {
    if (reportsSeen && !force) return;
    const files: FileStat[] = [];
    await walk(root, "", files);
    const units = new Map<string, FileStat[]>();
    for (const f of files) {
      const top = f.rel.split("/")[0] as string;
      units.set(top, [...(units.get(top) ?? []), f]);
    }
    const now = ctx.now();
    for (const [unit, fs_] of units) {
      const sig = signature(fs_);
      if (uploadedSig.get(unit) === sig) continue;
      if (fs_.every((f) => known.get(f.abs)?.mtimeMs === f.mtimeMs && known.get(f.abs)?.size === f.size)) {
        uploadedSig.set(unit, sig); // restored or already uploaded file by file: nothing new
        continue;
      }
      const prev = seen.get(unit);
      if (prev?.sig !== sig) seen.set(unit, { sig, since: now });
      const newestWrite = Math.max(...fs_.map((f) => f.mtimeMs));
      const quietSince = Math.max(prev?.sig === sig ? prev.since : now, newestWrite);
      if (force || now - quietSince >= ctx.tuning.checkpointQuietMs) enqueue(unit, false, force);
    }
  };

  let watcher: FSWatcher | undefined;
  let poll: NodeJS.Timeout | undefined;
  let scanning: Promise<void> | undefined;
  const kick = (): void => {
    if (closed || scanning) return;
    scanning = scan(false)
      .catch((error: unknown) =>
        log.warn({ err: { message: (error as Error).message } }, "scanning CHECKPOINT_DIR failed"),
      )
      .finally(() => {
        scanning = undefined;
      });
  };
  void fs.mkdir(root, { recursive: true }).then(
    () => {
      if (closed) return;
      try {
        watcher = watch(root, { recursive: true }, () => kick());
        watcher.on("error", () => {});
      } catch {
        // Polling alone still finds everything.
      }
    },
    () => {},
  );
  poll = setInterval(kick, ctx.tuning.checkpointPollMs);
  poll.unref();

  const halt = (): void => {
    closed = true;
    clearInterval(poll);
    poll = undefined;
    watcher?.close();
  };

  return {
    notify(p: string): void {
      if (closed) return;
      const unit = unitOf(p);
      if (unit === undefined) {
        log.warn({ path: p }, "checkpoint report names a path outside CHECKPOINT_DIR; not uploaded");
        return;
      }
      reportsSeen = true;
      enqueue(unit, true, true);
    },
    async finalSync(signal?: AbortSignal): Promise<StoredCheckpoint[]> {
      halt();
      const onAbort = (): void => stop.abort();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        await scanning;
        if (!reportsSeen) await scan(true);
        while (running) await running;
      } finally {
        await md5.close();
        signal?.removeEventListener("abort", onAbort);
      }
      const list = [...stored.values()];
      if (failures.size > 0 || signal?.aborted === true) {
        const names = [...failures.keys()];
        throw new AgentError(
          "CHECKPOINT_UPLOAD_FAILED",
          signal?.aborted === true
            ? "final checkpoint sync was cut short"
            : `checkpoint upload failed for ${names.join(", ")}: ${(failures.get(names[0] as string) as Error).message}`,
          { details: { stored: list, failed: names } },
        );
      }
      return list;
    },
    async close(): Promise<void> {
      halt();
      stop.abort();
      await running?.catch(() => {});
      await md5.close();
    },
  };
}
