/**
 * Ranged reads of one object version: every GET carries If-Match on the ETag seen first, so a replaced object
 * fails with DATASET_CHANGED instead of mixing two versions. A body that breaks off (connection reset, stall
 * past the idle timeout, short body) is re-requested from the byte where it stopped; the SDK retries 5xx itself.
 * Bytes land in buffers the caller owns (readRangeInto), straight from the socket where the store allows it.
 */
import type { FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import { AgentError, isAgentError } from "../../errors/index.ts";
import { abortableSleep, backoffDelay, type RetryDeps, type RetryPolicy } from "../../retry/index.ts";
import { isResumableNetworkError } from "../store/errors.ts";
import type { ObjectStore } from "../store/types.ts";
import type { PartBuffers, Pool } from "./pool.ts";
import { noteBytes } from "./scavenge.ts";

export interface RangeSource {
  store: ObjectStore;
  key: string;
  size: number;
  etag: string;
  pool: Pool;
  /** Reused buffers of partSize for withRange. */
  buffers: PartBuffers;
  /** Bytes per ranged GET. */
  partSize: number;
  /** Attempts per range after a broken body (the SDK retries failed requests on its own). */
  retries: number;
  /** A body that sends nothing for this long is dropped and re-requested, ms. */
  idleTimeoutMs: number;
  /** The waits between re-requests (tests inject them). */
  retryDeps?: Pick<RetryDeps, "sleep" | "random">;
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

/** Bytes an attempt must deliver before a later failure counts as a fresh one. */
const MIN_PROGRESS = 256 * 1024;

/**
 * Re-requests of a broken body: 200 ms doubling to 5 s, each ±50 % (the SDK retries failed requests on its own).
 * Broken bodies, stalls and sockets that broke are worth another try; a refusal, a changed object, a missing host
 * or an abort is not.
 */
export function rangeRetryPolicy(retries: number): RetryPolicy {
  return {
    maxRetries: retries,
    // backoffDelay draws from [base / 3, base] at this jitter: 100-300 ms first, 2.5-7.5 s at the cap.
    minDelayMs: 300,
    maxDelayMs: 7_500,
    factor: 2,
    jitter: 2 / 3,
    retryOn: (error) =>
      isAgentError(error)
        ? error.code === "STORAGE_FAILED" || isResumableNetworkError(error)
        : (error as { name?: string } | undefined)?.name !== "AbortError",
  };
}

async function* withIdleTimeout(stream: Readable, idleMs: number, what: string): AsyncGenerator<Buffer> {
  // Counts only time spent waiting for the server, not time the consumer holds a chunk (a slow disk).
  let consuming = false;
  const timer = setTimeout(function check() {
    if (consuming) timer.refresh();
    else stream.destroy(new AgentError("STORAGE_FAILED", `${what}: no data for ${Math.round(idleMs / 1000)} s`));
  }, idleMs);
  try {
    for await (const chunk of stream) {
      consuming = true;
      yield chunk as Buffer;
      consuming = false;
      timer.refresh(); // re-arms the same timer: cheaper than a new one per chunk
    }
  } finally {
    clearTimeout(timer);
    stream.destroy();
  }
}

/** One attempt through getRange (the SDK or a file): the chunks of [pos, end) as they arrive. */
async function* streamAttempt(src: RangeSource, pos: number, end: number, where: string): AsyncGenerator<Buffer> {
  const body = await src.store.getRange(src.key, pos, end, src.etag, src.signal);
  for await (const chunk of withIdleTimeout(body, src.idleTimeoutMs, `GET ${where}`)) {
    pos += chunk.length;
    if (pos > end) throw new AgentError("DATASET_CORRUPT", `GET ${where} returned more bytes than requested`);
    yield chunk;
  }
}

/**
 * After a failed attempt: rethrows what retrying cannot fix, gives up after src.retries failures in a row, else
 * waits (rangeRetryPolicy) and returns the new count. `progressed` = bytes the attempt delivered. The count lives
 * here rather than in retry(): it restarts after real progress, and each attempt resumes where the last stopped.
 */
async function afterFailure(
  src: RangeSource,
  where: string,
  error: unknown,
  failures: number,
  progressed: number,
): Promise<number> {
  const policy = rangeRetryPolicy(src.retries);
  // Reset only after real progress: a server that trickles a few bytes per attempt must still fail in bounded time.
  const n = (progressed >= MIN_PROGRESS ? 0 : failures) + 1;
  if (!policy.retryOn(error, n)) throw error;
  if (n > policy.maxRetries)
    throw new AgentError("STORAGE_FAILED", `GET ${where} failed ${n} times in a row: ${(error as Error).message}`, {
      cause: error,
    });
  const sleep = src.retryDeps?.sleep ?? abortableSleep;
  await sleep(backoffDelay(policy, n, src.retryDeps?.random), src.signal);
  return n;
}

/** The bytes [start, end) of the object as they arrive, resuming a broken body where it stopped. No pool slot. */
export async function* rangeChunks(src: RangeSource, start: number, end: number): AsyncGenerator<Buffer> {
  let pos = start;
  let failures = 0;
  const where = `${src.store.label}/${src.key} bytes ${start}-${end - 1}`;
  while (pos < end) {
    const before = pos;
    try {
      src.signal?.throwIfAborted();
      for await (const chunk of streamAttempt(src, pos, end, where)) {
        pos += chunk.length;
        src.onBytes?.(chunk.length);
        noteBytes(chunk.length);
        yield chunk;
      }
      if (pos < end) throw new AgentError("STORAGE_FAILED", `GET ${where}: body ended after ${pos - start} bytes`);
    } catch (error) {
      failures = await afterFailure(src, where, error, failures, pos - before);
    }
  }
}

/** Whether the store lands ranged reads straight in a buffer (store.readInto): then use withRange over rangeChunks. */
export function readsInPlace(src: RangeSource): boolean {
  return src.store.readInto !== undefined;
}

/**
 * Reads [start, end) of the object into `into` (from its byte 0), resuming a broken body from the byte where it
 * stopped. A store with a zero-copy path (store.readInto) lands the bytes in place; otherwise, or when that path
 * declines an attempt, they are copied from getRange's stream. No pool slot.
 */
export async function readRangeInto(src: RangeSource, start: number, end: number, into: Buffer): Promise<void> {
  let pos = start;
  let failures = 0;
  const where = `${src.store.label}/${src.key} bytes ${start}-${end - 1}`;
  const landed = (n: number): void => {
    pos += n;
    src.onBytes?.(n);
  };
  while (pos < end) {
    const before = pos;
    try {
      src.signal?.throwIfAborted();
      const inPlace =
        src.store.readInto !== undefined &&
        (await src.store.readInto({
          key: src.key,
          start: pos,
          end,
          etag: src.etag,
          into: into.subarray(pos - start, end - start),
          onBytes: landed,
          idleTimeoutMs: src.idleTimeoutMs,
          signal: src.signal,
        }));
      if (!inPlace)
        for await (const chunk of streamAttempt(src, pos, end, where)) {
          chunk.copy(into, pos - start);
          landed(chunk.length);
        }
      if (pos < end) throw new AgentError("STORAGE_FAILED", `GET ${where}: body ended after ${pos - start} bytes`);
    } catch (error) {
      failures = await afterFailure(src, where, error, failures, pos - before);
    }
  }
}

/** Reads [start, end) into a new buffer under a pool slot (the caller keeps it). */
export async function fetchRange(src: RangeSource, start: number, end: number): Promise<Buffer> {
  const release = await src.pool.acquire();
  try {
    const out = Buffer.allocUnsafe(end - start);
    await readRangeInto(src, start, end, out);
    return out;
  } finally {
    release();
  }
}

/**
 * Runs use() on [start, end) read into a reused part buffer, all under one pool slot. The buffer goes back to the
 * pool when use() settles: use() must not keep it (or views on it) past that.
 */
export async function withRange<T>(
  src: RangeSource,
  start: number,
  end: number,
  use: (bytes: Buffer) => Promise<T>,
): Promise<T> {
  const release = await src.pool.acquire();
  const buf = src.buffers.take(end - start);
  try {
    await readRangeInto(src, start, end, buf);
    return await use(buf);
  } finally {
    src.buffers.give(buf);
    release();
  }
}

/** Parts of an ordered stream are buffered whole, so they are kept smaller than plain download parts. */
const ORDERED_PART = 4 * 1024 * 1024;

/**
 * [start, end) in order, fetched as parallel ranged GETs of at most 4 MiB with at most `window` parts buffered
 * (memory about window x 4 MiB). For streaming formats (tar, gzip, a large zip entry).
 */
export async function* orderedChunks(
  src: RangeSource,
  start: number,
  end: number,
  window: number,
): AsyncGenerator<Buffer> {
  const stop = new AbortController();
  const part: RangeSource = { ...src, signal: src.signal ? AbortSignal.any([src.signal, stop.signal]) : stop.signal };
  const queue: Promise<Buffer>[] = [];
  let next = start;
  const fill = (): void => {
    while (queue.length < window && next < end) {
      const s = next;
      const e = Math.min(end, s + Math.min(src.partSize, ORDERED_PART));
      next = e;
      const p = fetchRange(part, s, e);
      p.catch(() => {});
      queue.push(p);
    }
  };
  try {
    fill();
    while (queue.length > 0) {
      const buf = await (queue.shift() as Promise<Buffer>);
      fill();
      yield buf;
    }
  } finally {
    stop.abort();
  }
}

/**
 * Downloads the whole object into fh, parts in parallel through the pool, each written at its offset: read whole
 * into reused part buffers where the store reads in place, else streamed in ~1 MiB writes.
 */
export async function downloadToFile(src: RangeSource, fh: FileHandle): Promise<void> {
  const parts: [number, number][] = [];
  for (let s = 0; s < src.size; s += src.partSize) parts.push([s, Math.min(src.size, s + src.partSize)]);
  const stop = new AbortController();
  const part: RangeSource = { ...src, signal: src.signal ? AbortSignal.any([src.signal, stop.signal]) : stop.signal };
  const inPlace = readsInPlace(src);
  const out = oneWriteAtATime(fh);
  try {
    await Promise.all(
      parts.map(async ([s, e]) => {
        if (inPlace) return landAndWrite(part, s, e, out);
        const release = await src.pool.acquire();
        try {
          await writeChunksAt(out, rangeChunks(part, s, e), s);
        } finally {
          release();
        }
      }),
    );
  } catch (error) {
    stop.abort();
    throw error;
  }
}

/** Bytes of a part that are written as soon as they have landed, while they are still in the CPU's cache. */
const WRITE_SLICE = 1024 * 1024;

/**
 * Reads [start, end) in place into a reused part buffer and writes it at start, a WRITE_SLICE at a time as the
 * bytes land: written whole after the last byte, a part has left the CPU's caches, and the kernel's copy into the
 * page cache reads it back from memory (docs/storage.md has the measurements). Under one pool slot; the buffer
 * goes back only after every write that reads it has settled.
 */
async function landAndWrite(src: RangeSource, start: number, end: number, out: PositionalWrites): Promise<void> {
  const release = await src.pool.acquire();
  const buf = src.buffers.take(end - start);
  let landed = 0;
  let written = 0;
  let writes: Promise<void> = Promise.resolve();
  const flush = (): void => {
    const [from, to] = [written, landed];
    written = to;
    const prev = writes;
    writes = prev.then(() => writeAt(out, buf.subarray(from, to), start + from));
    writes.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
  };
  try {
    await readRangeInto(
      {
        ...src,
        onBytes: (n) => {
          src.onBytes?.(n);
          landed += n;
          if (landed - written >= WRITE_SLICE) flush();
        },
      },
      start,
      end,
      buf,
    );
    if (landed > written) flush();
    await writes;
  } finally {
    await writes.catch(() => {});
    src.buffers.give(buf);
    release();
  }
}

/** The positional writes the download writers make (a FileHandle has them). */
export interface PositionalWrites {
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
}

/**
 * fh's writes, one at a time. A buffered write holds the file's inode lock, so parts of one file written in
 * parallel from the thread pool only spin on it (docs/storage.md); queued here they cost one thread and no
 * spinning, and the reads go on meanwhile.
 */
function oneWriteAtATime(fh: FileHandle): PositionalWrites {
  let tail: Promise<unknown> = Promise.resolve();
  const queue = <T>(op: () => Promise<T>): Promise<T> => {
    const p = tail.then(op, op);
    tail = p.catch(() => {});
    return p;
  };
  return {
    write: (buffer, offset, length, position) => queue(() => fh.write(buffer, offset, length, position)),
    writev: (buffers, position) => queue(() => fh.writev(buffers, position)),
  };
}

/** Writes all of bytes at pos (a short write, rare on regular files, is finished). */
export async function writeAt(fh: PositionalWrites, bytes: Buffer, pos: number): Promise<void> {
  for (let done = 0; done < bytes.length;)
    done += (await fh.write(bytes, done, bytes.length - done, pos + done)).bytesWritten;
}

const WRITE_BATCH = 1024 * 1024;

/**
 * Writes a stream of chunks at consecutive positions, batched into ~1 MiB writev calls that overlap with the
 * next reads: one thread-pool round trip per MiB instead of one per socket chunk.
 */
export async function writeChunksAt(
  fh: PositionalWrites,
  chunks: AsyncIterable<Buffer>,
  start: number,
): Promise<number> {
  let at = start;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let inFlight: Promise<void> = Promise.resolve();
  const flush = async (bufs: Buffer[], pos: number, len: number): Promise<void> => {
    const { bytesWritten } = await fh.writev(bufs, pos);
    // Short vectored write (rare on regular files): finish it plainly.
    if (bytesWritten !== len) await writeAt(fh, Buffer.concat(bufs).subarray(bytesWritten), pos + bytesWritten);
  };
  for await (const chunk of chunks) {
    batch.push(chunk);
    batchBytes += chunk.length;
    if (batchBytes >= WRITE_BATCH) {
      await inFlight;
      inFlight = flush(batch, at, batchBytes);
      at += batchBytes;
      batch = [];
      batchBytes = 0;
    }
  }
  await inFlight;
  if (batchBytes > 0) await flush(batch, at, batchBytes);
  return at + batchBytes - start;
}
