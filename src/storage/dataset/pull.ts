/**
 * DATASET_ID / DATASET_URI -> DATASET_DIR. Finds which form exists (archive object or prefix), skips the download
 * when the marker beside DATASET_DIR names the same source and ETag, otherwise extracts into a temporary folder
 * beside DATASET_DIR and moves it into place only when everything was checked: a failed pull leaves the previous
 * state (or nothing), never a partial dataset.
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { dirsOverlap } from "../../config/index.ts";
import { AgentError } from "../../errors/index.ts";
import { significant } from "../../log/units.ts";
import type { DatasetResult, TransferProgress } from "../types.ts";
import { parseUri, rangeSource, type StorageContext } from "../internal/context.ts";
import { downloadObjects } from "../internal/objects.ts";
import { startProgress } from "../internal/progress.ts";
import type { ObjectInfo, ObjectStore } from "../store/types.ts";
import { replaceDir, tempDirBeside } from "./place.ts";
import { SafeTree } from "./safe-tree.ts";
import { extractTar } from "./tar.ts";
import { extractZip } from "./zip.ts";

type Kind = "zip" | "tar" | "tgz" | "object" | "prefix";

interface Source {
  store: ObjectStore;
  /** Printable origin, e.g. s3://bucket/datasets/x.zip */
  label: string;
  kind: Kind;
  /** The archive/object, or every object of the prefix. */
  objects: ObjectInfo[];
  prefix: string;
  /** Identity of this exact content: the ETag, or a digest of the prefix listing. */
  version: string;
}

export interface DatasetMarker {
  /** Written before the folder is replaced: the folder belongs to the pull even if the pod dies before the end. */
  pending?: true;
  source: string;
  version: string;
  bytes: number;
  files: number;
  completed_at: string;
}

const ARCHIVE_SUFFIXES: [string, Kind][] = [
  [".zip", "zip"],
  [".tar", "tar"],
  [".tar.gz", "tgz"],
  [".tgz", "tgz"],
];

function kindOf(key: string): Kind {
  const lower = key.toLowerCase();
  for (const [suffix, kind] of ARCHIVE_SUFFIXES) if (lower.endsWith(suffix)) return kind;
  return "object";
}

export function markerPath(datasetDir: string): string {
  return path.join(
    path.dirname(path.resolve(datasetDir)),
    `.${path.basename(path.resolve(datasetDir))}.trainer-dataset.json`,
  );
}

async function fromPrefix(store: ObjectStore, prefix: string, signal?: AbortSignal): Promise<Source | null> {
  const objects = (await store.list(prefix, signal)).filter((o) => !(o.key.endsWith("/") && o.size === 0));
  if (objects.length === 0) return null;
  const digest = createHash("sha256");
  for (const o of objects) digest.update(`${o.key}\0${o.size}\0${o.etag}\n`);
  return { store, label: `${store.label}/${prefix}`, kind: "prefix", objects, prefix, version: digest.digest("hex") };
}

/** Archive kinds by Content-Type, for a DATASET_URL whose path has no archive suffix. */
const ARCHIVE_TYPES: Record<string, Kind> = {
  "application/zip": "zip",
  "application/x-zip-compressed": "zip",
  "application/x-tar": "tar",
  "application/gzip": "tgz",
  "application/x-gzip": "tgz",
  "application/x-gtar": "tgz",
  "application/x-compressed-tar": "tgz",
};

/**
 * DATASET_URL: one object behind a URL, read as an archive or file in a bucket is. Its kind comes from the path's
 * suffix, else its Content-Type; its identity (the marker's version) from its ETag, else Last-Modified.
 */
async function urlSource(ctx: StorageContext, signal?: AbortSignal): Promise<Source> {
  const store = await ctx.datasetUrlStore();
  const found = await store.probe(signal);
  const byPath = kindOf(store.key);
  const byType = ARCHIVE_TYPES[(found.contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? ""];
  return {
    store,
    label: store.source,
    kind: byPath === "object" ? (byType ?? "object") : byPath,
    objects: [{ key: store.key, size: found.size, etag: found.etag }],
    prefix: "",
    // Without a version the marker can never prove the same content is in place: every pull downloads.
    version: found.etag || found.lastModified || `unversioned ${ctx.now()}`,
  };
}

async function resolveSource(ctx: StorageContext, signal?: AbortSignal): Promise<Source | null> {
  const { datasetId, datasetUri, bucket, datasetUrl } = ctx.config;
  if (datasetUrl !== undefined) return urlSource(ctx, signal);
  if (datasetUri !== undefined) {
    const { bucket: b, key } = parseUri(datasetUri);
    const store = await ctx.storeFor(b);
    if (key !== "" && !key.endsWith("/")) {
      const head = await store.head(key, signal);
      if (head !== null)
        return {
          store,
          label: `${store.label}/${key}`,
          kind: kindOf(key),
          objects: [head],
          prefix: "",
          version: head.etag,
        };
    }
    const prefix = key === "" || key.endsWith("/") ? key : `${key}/`;
    const found = await fromPrefix(store, prefix, signal);
    if (found) return found;
    throw new AgentError(
      "DATASET_NOT_FOUND",
      `DATASET_URI ${datasetUri}: no object or prefix with that name in ${store.label}`,
    );
  }
  if (datasetId === undefined) return null;
  const store = await ctx.storeFor(bucket);
  const keys = ARCHIVE_SUFFIXES.map(([suffix]) => `datasets/${datasetId}${suffix}`);
  const heads = await Promise.all(keys.map((k) => store.head(k, signal)));
  for (const h of heads)
    if (h !== null)
      return {
        store,
        label: `${store.label}/${h.key}`,
        kind: kindOf(h.key),
        objects: [h],
        prefix: "",
        version: h.etag,
      };
  const found = await fromPrefix(store, `datasets/${datasetId}/`, signal);
  if (found) return found;
  throw new AgentError(
    "DATASET_NOT_FOUND",
    `DATASET_ID ${datasetId}: none of ${[...keys, `datasets/${datasetId}/`].join(", ")} exists in ${store.label}`,
    { details: { tried: [...keys, `datasets/${datasetId}/`] } },
  );
}

async function readMarker(file: string): Promise<DatasetMarker | null> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as DatasetMarker;
  } catch {
    return null;
  }
}

/** p with symbolic links resolved, as far as it exists (the rest appended unchanged). */
async function realPath(p: string): Promise<string> {
  try {
    return await fs.realpath(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(await realPath(parent), path.basename(p));
  }
}

/**
 * The pull may replace DATASET_DIR only when it is absent, empty, or was put there by an earlier pull (its marker
 * exists), and never when it holds CHECKPOINT_DIR through a symbolic link (the config checks the paths as written).
 */
async function checkReplaceable(dir: string, checkpointDir: string, marker: string): Promise<void> {
  const [realDir, realCk] = await Promise.all([realPath(dir), realPath(path.resolve(checkpointDir))]);
  if (dirsOverlap(realDir, realCk))
    throw new AgentError(
      "CONFIG_INVALID",
      `DATASET_DIR (${JSON.stringify(dir)}, really ${JSON.stringify(realDir)}) and CHECKPOINT_DIR ` +
        `(${JSON.stringify(checkpointDir)}, really ${JSON.stringify(realCk)}) are the same folder or one holds the ` +
        "other through a symbolic link: a dataset pull would replace the checkpoints",
    );
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    if (code === "ENOTDIR")
      throw new AgentError("CONFIG_INVALID", `DATASET_DIR must be a folder, got the file ${JSON.stringify(dir)}`);
    throw error;
  }
  // Temporary folders of an earlier pull (made inside when the parent is read-only) do not count.
  if (names.every((n) => n.startsWith(".trainer-tmp-"))) return;
  try {
    await fs.access(marker);
  } catch {
    throw new AgentError(
      "CONFIG_INVALID",
      `DATASET_DIR ${JSON.stringify(dir)} holds ${names.length} entries that no dataset pull put there (no ` +
        `${path.basename(marker)} beside it); a pull replaces the folder, so it refuses: empty it or set DATASET_DIR ` +
        "to a folder of its own",
      { details: { entries: names.length } },
    );
  }
}

async function writeMarker(marker: string, value: DatasetMarker): Promise<void> {
  const tmpMarker = `${marker}.tmp`;
  await fs.writeFile(tmpMarker, `${JSON.stringify(value, null, 2)}\n`);
  await fs.rename(tmpMarker, marker);
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

export async function pullDataset(
  ctx: StorageContext,
  opts: { signal?: AbortSignal; onProgress?: (p: TransferProgress) => void },
): Promise<DatasetResult | null> {
  const started = ctx.now();
  const source = await resolveSource(ctx, opts.signal);
  if (source === null) return null;
  const dir = path.resolve(ctx.config.datasetDir);
  const marker = markerPath(dir);
  const log = ctx.logger.child({ dataset: source.label });

  const previous = await readMarker(marker);
  if (
    previous &&
    previous.pending !== true &&
    previous.source === source.label &&
    previous.version === source.version &&
    (await isDir(dir))
  ) {
    log.info({ version: source.version }, "dataset already in place (same source and ETag): download skipped");
    return {
      dir,
      source: source.label,
      bytes: previous.bytes,
      files: previous.files,
      seconds: (ctx.now() - started) / 1000,
      skipped: true,
    };
  }

  await checkReplaceable(dir, ctx.config.checkpointDir, marker);
  const totalIn = source.objects.reduce((n, o) => n + o.size, 0);
  if (source.kind === "prefix" || source.kind === "object") {
    if (totalIn > ctx.config.maxDatasetBytes)
      throw new AgentError(
        "DATASET_TOO_LARGE",
        `${source.label} holds ${totalIn} bytes, more than DATASET_MAX_BYTES (${ctx.config.maxDatasetBytes})`,
      );
  }
  const progress = startProgress({
    label: `dataset ${source.label}`,
    total: totalIn,
    logger: log,
    stderr: ctx.stderr,
    now: ctx.now,
    onProgress: opts.onProgress,
  });
  const tmp = await tempDirBeside(dir);
  const archive =
    source.kind === "zip" || source.kind === "tar" || source.kind === "tgz" ? source.objects[0] : undefined;
  const tree = new SafeTree(tmp, {
    maxBytes: ctx.config.maxDatasetBytes,
    maxExpansionRatio: ctx.config.maxExpansionRatio,
    archiveBytes: archive?.size,
  });
  try {
    log.info({ kind: source.kind, bytes: totalIn, objects: source.objects.length }, "pulling dataset");
    if (archive !== undefined) {
      const src = rangeSource(ctx, source.store, archive, { signal: opts.signal, onBytes: (n) => progress.add(n) });
      if (source.kind === "zip") await extractZip(src, tree, ctx.pool.limit);
      else await extractTar(src, tree, source.kind === "tgz", ctx.pool.limit);
      await tree.finish();
    } else {
      const files = [];
      for (const o of source.objects) {
        const rel = tree.clean(
          source.kind === "object" ? path.posix.basename(o.key) : o.key.slice(source.prefix.length),
        );
        tree.account(o.size);
        files.push({ ...o, file: await tree.prepareFile(rel) });
      }
      await downloadObjects(ctx, source.store, files, {
        signal: opts.signal,
        onBytes: (n) => progress.add(n),
        onFile: () => progress.add(0, 1),
      });
    }
    await tree.close();
    await writeMarker(marker, {
      pending: true,
      source: source.label,
      version: source.version,
      bytes: 0,
      files: 0,
      completed_at: "",
    });
    await replaceDir(tmp, dir);
  } catch (error) {
    await tree.flush().catch(() => {}); // no background write may land after the removal
    await tree.close();
    await fs.rm(tmp, { recursive: true, force: true });
    progress.done();
    if (error instanceof AgentError) throw error;
    if ((error as { name?: string }).name === "AbortError") throw error;
    throw new AgentError("STORAGE_FAILED", `pulling ${source.label} into ${dir} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  progress.done();
  const seconds = (ctx.now() - started) / 1000;
  const result: DatasetMarker = {
    source: source.label,
    version: source.version,
    bytes: tree.bytes,
    files: tree.files,
    completed_at: new Date(ctx.now()).toISOString(),
  };
  await writeMarker(marker, result);
  log.info(
    {
      bytes: tree.bytes,
      files: tree.files,
      seconds: Number(seconds.toFixed(2)),
      mb_per_s: significant(totalIn / 1048576 / Math.max(seconds, 0.001)),
    },
    "dataset ready",
  );
  return { dir, source: source.label, bytes: tree.bytes, files: tree.files, seconds, skipped: false };
}
