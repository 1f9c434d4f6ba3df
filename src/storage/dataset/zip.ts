/**
 * Zip extraction over ranged GETs. The central directory is the authority (as in yauzl): it is read by explicit
 * ranges first (EOCD, ZIP64), then entries are fetched in parallel: neighbouring small entries share one GET,
 * a large entry is split into parallel ranges reassembled in order and inflated while the bytes arrive.
 * Every entry's size and CRC32 are checked; overlapping entries, encryption and unknown methods are refused.
 */
import { createWriteStream } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { AgentError } from "../../errors/index.ts";
import { ChunkReader } from "../internal/chunk-reader.ts";
import { unpackOnce } from "../internal/file-writer.ts";
import { forEachLimit, PartBuffers } from "../internal/pool.ts";
import {
  fetchRange,
  orderedChunks,
  rangeChunks,
  readsInPlace,
  withRange,
  type RangeSource,
} from "../internal/ranges.ts";
import { safeMode, type SafeTree } from "./safe-tree.ts";

interface ZipEntry {
  name: string;
  flags: number;
  method: number;
  crc: number;
  csize: number;
  usize: number;
  offset: number;
  kind: "file" | "dir" | "symlink";
  mode: number | undefined;
  /** End of the bytes that belong to this entry: the next entry's local header, or the central directory. */
  spanEnd: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD64_LOCATOR_SIG = 0x07064b50;
const EOCD64_SIG = 0x06064b50;
const CEN_SIG = 0x02014b50;
const LOC_SIG = 0x04034b50;
const SMALL_ENTRY = 4 * 1024 * 1024;
const MAX_CENTRAL_DIRECTORY = 512 * 1024 * 1024;

function corrupt(src: RangeSource, why: string, cause?: unknown): AgentError {
  return new AgentError("DATASET_CORRUPT", `${src.store.label}/${src.key} is not a valid zip archive: ${why}`, {
    cause,
  });
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
function decodeName(raw: Buffer, flags: number): string {
  if ((flags & 0x800) !== 0) return raw.toString("utf8");
  try {
    return utf8.decode(raw);
  } catch {
    return raw.toString("latin1");
  }
}

async function readCentralDirectory(src: RangeSource): Promise<{ entries: ZipEntry[]; cdOffset: number }> {
  const size = src.size;
  if (size < 22) throw corrupt(src, `only ${size} bytes`);
  const tailLen = Math.min(size, 65_535 + 22 + 20);
  const tail = await fetchRange(src, size - tailLen, size);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + 22 + tail.readUInt16LE(i + 20) <= tail.length) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw corrupt(src, "no end-of-central-directory record (truncated?)");
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== EOCD64_LOCATOR_SIG) throw corrupt(src, "ZIP64 locator missing");
    const at = Number(tail.readBigUInt64LE(loc + 8));
    if (at + 56 > size) throw corrupt(src, "ZIP64 record out of range");
    const rec = await fetchRange(src, at, at + 56);
    if (rec.readUInt32LE(0) !== EOCD64_SIG) throw corrupt(src, "bad ZIP64 end record");
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOffset = Number(rec.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > size) throw corrupt(src, "central directory lies past the end (truncated?)");
  if (cdSize > MAX_CENTRAL_DIRECTORY) throw corrupt(src, `central directory of ${cdSize} bytes is too large`);
  const cd = cdSize === 0 ? Buffer.alloc(0) : await fetchRange(src, cdOffset, cdOffset + cdSize);

  const entries: ZipEntry[] = [];
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CEN_SIG)
      throw corrupt(src, `central directory entry ${n} is damaged`);
    const madeBy = cd.readUInt16LE(p + 4);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let csize = cd.readUInt32LE(p + 20);
    let usize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const external = cd.readUInt32LE(p + 38);
    let offset = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length)
      throw corrupt(src, `central directory entry ${n} overruns`);
    const name = decodeName(cd.subarray(p + 46, p + 46 + nameLen), flags);
    const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
    for (let x = 0; x + 4 <= extra.length;) {
      const id = extra.readUInt16LE(x);
      const len = extra.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        const next = (): number => {
          if (q + 8 > x + 4 + len) throw corrupt(src, `bad ZIP64 field for ${name}`);
          const v = Number(extra.readBigUInt64LE(q));
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next();
        if (csize === 0xffffffff) csize = next();
        if (offset === 0xffffffff) offset = next();
      }
      x += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;
    if ((flags & 0x1) !== 0) throw corrupt(src, `entry ${name} is encrypted (not supported)`);
    const unixMode = madeBy >> 8 === 3 ? external >>> 16 : 0;
    const type = unixMode & 0o170000;
    let kind: ZipEntry["kind"];
    if (name.endsWith("/") || type === 0o040000) kind = "dir";
    else if (type === 0o120000) kind = "symlink";
    else if (type === 0 || type === 0o100000) kind = "file";
    else
      throw new AgentError(
        "ARCHIVE_UNSAFE_ENTRY",
        `archive entry ${JSON.stringify(name)} refused: not a regular file, folder or link (mode ${type.toString(8)})`,
        {
          details: { entry: name },
        },
      );
    if (kind !== "dir" && method !== 0 && method !== 8)
      throw corrupt(src, `entry ${name} uses compression method ${method} (only stored and deflate are supported)`);
    if (method === 0 && kind !== "dir" && csize !== usize)
      throw corrupt(src, `stored entry ${name} has mismatched sizes`);
    entries.push({
      name,
      flags,
      method,
      crc,
      csize,
      usize,
      offset,
      kind,
      mode: unixMode & 0o777 || undefined,
      spanEnd: 0,
    });
  }
  const sorted = [...entries].sort((a, b) => a.offset - b.offset);
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i] as ZipEntry;
    e.spanEnd = i + 1 < sorted.length ? (sorted[i + 1] as ZipEntry).offset : cdOffset;
    if (e.offset + 30 + e.csize > e.spanEnd) throw corrupt(src, `entry ${e.name} overlaps the next one`);
  }
  return { entries: sorted, cdOffset };
}

class Crc extends Transform {
  crc = 0;
  bytes = 0;
  readonly limit: number;
  readonly onBytes: (n: number) => void;
  constructor(limit: number, onBytes: (n: number) => void) {
    super();
    this.limit = limit;
    this.onBytes = onBytes;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return cb(new Error("entry inflates past its declared size"));
    try {
      this.onBytes(chunk.length);
    } catch (error) {
      return cb(error as Error);
    }
    this.crc = zlib.crc32(chunk, this.crc);
    cb(null, chunk);
  }
}

/** Extracts one entry whose local header is next in reader; returns the bytes of the entry read (header + data). */
async function extractEntry(src: RangeSource, tree: SafeTree, e: ZipEntry, reader: ChunkReader): Promise<number> {
  const h = await reader.read(30);
  if (h === null) throw corrupt(src, `entry ${e.name}: data ends early (truncated?)`);
  if (h.readUInt32LE(0) !== LOC_SIG) throw corrupt(src, `entry ${e.name}: bad local header`);
  const skip = h.readUInt16LE(26) + h.readUInt16LE(28);
  if (e.offset + 30 + skip + e.csize > e.spanEnd) throw corrupt(src, `entry ${e.name} overlaps the next one`);
  if (skip > 0 && (await reader.read(skip)) === null) throw corrupt(src, `entry ${e.name}: data ends early`);
  const used = 30 + skip + e.csize;
  const rel = tree.clean(e.name);
  if (e.kind === "dir") {
    await tree.mkdir(rel);
    if (e.csize > 0 && (await reader.read(e.csize)) === null) throw corrupt(src, `entry ${e.name}: data ends early`);
    return used;
  }
  const mismatch = (what: string): AgentError => corrupt(src, `entry ${e.name}: ${what}`);
  if (e.kind === "symlink" || e.usize <= SMALL_ENTRY) {
    // The entry's bytes stay in the socket's chunks; the writer copies them once into its batch.
    const raw = await reader.readChunks(e.csize);
    if (raw === null) throw mismatch("data ends early (truncated?)");
    const check = { inflate: e.method === 8, size: e.usize, crc: e.crc };
    if (e.kind === "symlink") {
      let target: Uint8Array;
      try {
        target = unpackOnce(Buffer.concat(raw), check);
      } catch (error) {
        throw mismatch((error as Error).message);
      }
      tree.symlink(rel, Buffer.from(target).toString("utf8"));
      return used;
    }
    tree.account(e.usize); // the writer writes exactly e.usize bytes or nothing
    // Inflated, checked and written on the writer's thread, off the event loop that receives the next entries.
    await tree.writeFile(rel, raw, safeMode(e.mode, 0o644), { ...check, corrupt: mismatch });
    return used;
  }
  const file = await tree.prepareFile(rel);
  const crc = new Crc(e.usize, (n) => tree.account(n));
  const body = Readable.from(reader.take(e.csize));
  try {
    const out = createWriteStream(file, { mode: safeMode(e.mode, 0o644) });
    if (e.method === 8) await pipeline(body, zlib.createInflateRaw(), crc, out);
    else await pipeline(body, crc, out);
  } catch (error) {
    if (error instanceof AgentError) throw error;
    throw corrupt(src, `entry ${e.name}: ${(error as Error).message}`, error);
  }
  if (crc.bytes !== e.usize) throw mismatch(`size ${crc.bytes} differs from the declared ${e.usize} (truncated?)`);
  if (crc.crc !== e.crc) throw mismatch("CRC32 mismatch");
  return used;
}

/**
 * Runs of small entries read whole into one buffer, where the store reads in place: one buffer per pool slot, so
 * together at most RUN_MEMORY, each between 1 and 4 MiB. Each run is one ranged GET, and a GET costs the server
 * about as much as a MiB of body: at 8 slots, 4 MiB runs instead of 1 MiB cut RGW's CPU for a 1 GiB pull from
 * 2.8 to 1.7 s (docs/storage.md).
 */
const RUN_MEMORY = 32 * 1024 * 1024;
const MIN_RUN = 1024 * 1024;
const MAX_RUN = 4 * 1024 * 1024;

/** Extracts the zip object `src` into tree. `window` = parts in flight for one large entry. */
export async function extractZip(src: RangeSource, tree: SafeTree, window: number): Promise<void> {
  const { entries } = await readCentralDirectory(src);
  tree.checkDeclared(entries.reduce((n, e) => n + (e.kind === "file" ? e.usize : 0), 0));
  for (const e of entries) tree.clean(e.name);

  // Runs of small entries are fetched as one ranged GET each. Where the store reads in place, a run lands whole in a
  // reused buffer, so runs are kept to a few MiB (memory: one buffer per pool slot); otherwise they stream, up to a
  // part.
  const inPlace = readsInPlace(src);
  const runCap = inPlace
    ? Math.min(src.partSize, Math.max(MIN_RUN, Math.min(MAX_RUN, Math.floor(RUN_MEMORY / src.pool.limit))))
    : src.partSize;
  const groups: ZipEntry[][] = [];
  const large: ZipEntry[] = [];
  let group: ZipEntry[] = [];
  let groupBytes = 0;
  for (const e of entries) {
    const span = e.spanEnd - e.offset;
    if (span > src.partSize) {
      large.push(e);
      continue;
    }
    if (group.length > 0 && (groupBytes + span > runCap || (group.at(-1) as ZipEntry).spanEnd !== e.offset)) {
      groups.push(group);
      group = [];
      groupBytes = 0;
    }
    group.push(e);
    groupBytes += span;
  }
  if (group.length > 0) groups.push(group);

  const stop = new AbortController();
  const s: RangeSource = { ...src, signal: src.signal ? AbortSignal.any([src.signal, stop.signal]) : stop.signal };
  const extractGroup = async (g: ZipEntry[], reader: ChunkReader): Promise<void> => {
    for (let i = 0; i < g.length; i++) {
      const e = g[i] as ZipEntry;
      const used = await extractEntry(s, tree, e, reader);
      // A data descriptor (or a gap) may sit between this entry's data and the next local header.
      const gap = e.spanEnd - e.offset - used;
      if (i + 1 < g.length && gap > 0 && (await reader.read(gap)) === null)
        throw corrupt(s, `entry ${e.name}: data ends early`);
    }
  };
  const runBuffers = new PartBuffers(runCap, src.pool.limit);
  const smallWork = forEachLimit(groups, src.pool.limit, async (g) => {
    const start = (g[0] as ZipEntry).offset;
    const end = (g.at(-1) as ZipEntry).spanEnd;
    if (inPlace) {
      await withRange({ ...s, buffers: runBuffers }, start, end, (bytes) => extractGroup(g, new ChunkReader([bytes])));
      return;
    }
    const release = await s.pool.acquire();
    const reader = new ChunkReader(rangeChunks(s, start, end));
    try {
      await extractGroup(g, reader);
    } finally {
      release();
      await reader.close();
    }
  });
  const largeWork = (async () => {
    for (const e of large) {
      const reader = new ChunkReader(orderedChunks(s, e.offset, e.spanEnd, window));
      try {
        await extractEntry(s, tree, e, reader);
      } finally {
        await reader.close();
      }
    }
  })();
  const results = await Promise.allSettled([smallWork, largeWork]);
  stop.abort();
  for (const r of results) if (r.status === "rejected") throw r.reason;
}
