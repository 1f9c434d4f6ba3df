/**
 * Ranged reads of one object version: every GET carries If-Match on the ETag seen first, so a replaced object
 * fails with DATASET_CHANGED instead of mixing two versions. A body that breaks off (connection reset, stall
 * past the idle timeout, short body) is re-requested from the byte where it stopped; the SDK retries 5xx itself.
 */
import type { FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { AgentError, isAgentError } from "../../errors/index.ts";
import type { ObjectStore } from "../store/types.ts";
import type { Pool } from "./pool.ts";
import { noteBytes } from "./scavenge.ts";

export interface RangeSource {
  store: ObjectStore;
  key: string;
  size: number;
  etag: string;
  pool: Pool;
  /** Bytes per ranged GET. */
  partSize: number;
  /** Attempts per range after a broken body (the SDK retries failed requests on its own). */
  retries: number;
  /** A body that sends nothing for this long is dropped and re-requested, ms. */
  idleTimeoutMs: number;
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

/** Bytes an attempt must deliver before a later failure counts as a fresh one. */
const MIN_PROGRESS = 256 * 1024;

function isFatal(error: unknown): boolean {
  if (!isAgentError(error)) return (error as { name?: string } | undefined)?.name === "AbortError";
  return (
    error.code !== "STORAGE_FAILED" &&
    !(error.code === "STORAGE_UNAVAILABLE" && /ECONN|ETIMEDOUT|EPIPE/.test(error.message))
  );
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

/** The bytes [start, end) of the object as they arrive, resuming a broken body where it stopped. No pool slot. */
export async function* rangeChunks(src: RangeSource, start: number, end: number): AsyncGenerator<Buffer> {
  let pos = start;
  let failures = 0;
  const where = `${src.store.label}/${src.key} bytes ${start}-${end - 1}`;
  while (pos < end) {
    const before = pos;
    try {
      src.signal?.throwIfAborted();
      const body = await src.store.getRange(src.key, pos, end, src.etag, src.signal);
      for await (const chunk of withIdleTimeout(body, src.idleTimeoutMs, `GET ${where}`)) {
        if (pos + chunk.length > end)
          throw new AgentError("DATASET_CORRUPT", `GET ${where} returned more bytes than requested`);
        pos += chunk.length;
        src.onBytes?.(chunk.length);
        noteBytes(chunk.length);
        yield chunk;
      }
      if (pos < end) throw new AgentError("STORAGE_FAILED", `GET ${where}: body ended after ${pos - start} bytes`);
    } catch (error) {
      if (isFatal(error)) throw error;
      // Reset only after real progress: a server that trickles a few bytes per attempt must still fail in bounded time.
      if (pos - before >= MIN_PROGRESS) failures = 0;
      failures += 1;
      if (failures > src.retries)
        throw new AgentError(
          "STORAGE_FAILED",
          `GET ${where} failed ${failures} times in a row: ${(error as Error).message}`,
          { cause: error },
        );
      await delay(Math.min(200 * 2 ** (failures - 1), 5_000) * (0.5 + Math.random()), undefined, {
        signal: src.signal,
      });
    }
  }
}

/** Reads [start, end) into one buffer under a pool slot. */
export async function fetchRange(src: RangeSource, start: number, end: number): Promise<Buffer> {
  const release = await src.pool.acquire();
  try {
    const out = Buffer.allocUnsafe(end - start);
    let at = 0;
    for await (const chunk of rangeChunks(src, start, end)) {
      chunk.copy(out, at);
      at += chunk.length;
    }
    return out;
  } finally {
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

/** Downloads the whole object into fh at fileOffset + object offset, parts in parallel through the pool. */
export async function downloadToFile(src: RangeSource, fh: FileHandle): Promise<void> {
  const parts: [number, number][] = [];
  for (let s = 0; s < src.size; s += src.partSize) parts.push([s, Math.min(src.size, s + src.partSize)]);
  const stop = new AbortController();
  const part: RangeSource = { ...src, signal: src.signal ? AbortSignal.any([src.signal, stop.signal]) : stop.signal };
  try {
    await Promise.all(
      parts.map(async ([s, e]) => {
        const release = await src.pool.acquire();
        try {
          await writeChunksAt(fh, rangeChunks(part, s, e), s);
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

const WRITE_BATCH = 1024 * 1024;

/**
 * Writes a stream of chunks at consecutive positions, batched into ~1 MiB writev calls that overlap with the
 * next reads: one thread-pool round trip per MiB instead of one per socket chunk.
 */
export async function writeChunksAt(fh: FileHandle, chunks: AsyncIterable<Buffer>, start: number): Promise<number> {
  let at = start;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let inFlight: Promise<void> = Promise.resolve();
  const flush = async (bufs: Buffer[], pos: number, len: number): Promise<void> => {
    const { bytesWritten } = await fh.writev(bufs, pos);
    if (bytesWritten !== len) {
      // Short vectored write (rare on regular files): finish it plainly.
      const rest = Buffer.concat(bufs).subarray(bytesWritten);
      for (let done = 0; done < rest.length;)
        done += (await fh.write(rest, done, rest.length - done, pos + bytesWritten + done)).bytesWritten;
    }
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
