/**
 * Writes many small files from worker threads with plain synchronous calls, handed over in batches; a zip entry is
 * inflated and checked (size, CRC32) there too, just before it is written.
 *
 * `fs.promises.writeFile` costs three thread-pool round trips per file (open, write, close), and each one wakes a
 * sleeping pool thread (on a VM vCPU, an inter-processor interrupt): for a many-file dataset the largest CPU cost
 * of a zip pull after the bytes themselves (docs/storage.md has the numbers). A worker that receives 64 files in
 * one message and writes them one after the other makes one wake-up per batch.
 *
 * Each file's bytes are copied at once into the batch's staging slot: a few SharedArrayBuffers per worker, handed
 * to it once at its start, reused batch after batch; a message names the slot. No caller memory is ever shared or
 * transferred (a transferred slice of Node's shared buffer pool would break every other user of it), and no
 * buffer changes hands per batch: a transferred ArrayBuffer counts as new external memory on each side until a
 * collection, and transferring 1 GiB of batches ran ~60 full collections in the worker (docs/storage.md). A batch
 * that finds no free slot, or a file larger than one, travels in a buffer of its own. A file name always goes to
 * the same worker, so two writes of one name land in order. Where workers cannot start, files are written inline
 * with fs.promises.
 *
 * Inflating and checking on the writer's thread takes CRC32 and inflate (about a third of a zip pull's CPU on the
 * event loop, docs/storage.md) off the thread that receives the next entries, and with them the inflated buffers,
 * the main thread's largest source of garbage.
 */
import fs from "node:fs/promises";
import { Worker } from "node:worker_threads";
import zlib from "node:zlib";

/** What an archive declares of a file: checked before a byte of it is written. */
export interface EntryCheck {
  /** The bytes are raw deflate (zip method 8) to inflate first. */
  inflate: boolean;
  /** Size and CRC32 of the file's contents. */
  size: number;
  crc: number;
}

/** Node's zlib engine as its own sync path drives it (lib/zlib.js, processChunkSync): not a public API. */
interface ZlibEngine {
  _handle?: {
    reset(): void;
    writeSync(
      flush: number,
      input: Uint8Array,
      inOff: number,
      inLen: number,
      out: Uint8Array,
      outOff: number,
      outLen: number,
    ): void;
    onerror: (message: string, errno: number, code: string) => void;
  };
  _writeState?: Uint32Array;
}

/**
 * Makes the function that turns the bytes handed over into a file's contents: inflated where asked, then checked
 * against the declared size and CRC32; a mismatch throws with code ECORRUPT. It runs in the workers as source text
 * (so it names nothing outside itself: zlib comes in as an argument) and inline without workers: one definition.
 *
 * With `reuse` (the workers, which write each result before the next call) one zlib engine and one output buffer
 * serve every entry: `inflateRawSync` makes a stream object, a native engine and a fresh output buffer per entry,
 * and inflating 1 GiB of 100 KiB entries that way ran ~70 full collections of the worker's heap for their
 * external memory (docs/storage.md). That path drives the engine the way Node's own sync inflate does, through
 * fields Node does not document; where they are missing it falls back to `inflateRawSync`.
 */
export function makeUnpack(
  z: typeof zlib,
  reuse: boolean,
): (data: Uint8Array, check: EntryCheck | undefined) => Uint8Array {
  const corrupt = (why: string): Error => Object.assign(new Error(why), { code: "ECORRUPT" });
  let engine: ZlibEngine | undefined;
  let out: Buffer | undefined;
  let failure: string | undefined;
  const inflateReused = (data: Uint8Array, size: number): Uint8Array | undefined => {
    if (engine === undefined) {
      engine = new z.InflateRaw() as unknown as ZlibEngine;
      // Node's handler would destroy the engine on a bad entry; keep it for the next one, take the message.
      if (engine._handle !== undefined)
        engine._handle.onerror = (message) => {
          failure = message;
        };
    }
    const handle = engine._handle;
    const state = engine._writeState;
    if (typeof handle?.writeSync !== "function" || typeof handle.reset !== "function" || state === undefined)
      return undefined;
    // One byte more than declared, so that an entry inflating past its size shows as too long.
    if (out === undefined || out.length < size + 1) out = Buffer.allocUnsafe(Math.max(size + 1, 1024 * 1024));
    failure = undefined;
    handle.reset();
    handle.writeSync(z.constants.Z_FINISH, data, 0, data.length, out, 0, size + 1);
    if (failure !== undefined) throw corrupt(failure);
    return out.subarray(0, size + 1 - (state[0] as number));
  };
  return (data, check) => {
    if (check === undefined) return data;
    let result = data;
    if (check.inflate) {
      const reused = reuse ? inflateReused(data, check.size) : undefined;
      try {
        // One output buffer of the declared size (+1 so that inflate ends inside it) instead of 16 KiB chunks
        // joined by a copy: half the allocation, 2.4x less CPU per entry (docs/storage.md).
        result =
          reused ??
          z.inflateRawSync(data, { maxOutputLength: Math.max(check.size, 1), chunkSize: Math.max(check.size + 1, 64) });
      } catch (error) {
        const past = (error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE";
        throw corrupt(past ? `inflates past its declared size ${check.size}` : (error as Error).message);
      }
    }
    if (result.length > check.size) throw corrupt(`inflates past its declared size ${check.size}`); // reused path
    if (result.length !== check.size) throw corrupt(`size ${result.length} differs from the declared ${check.size}`);
    if (z.crc32(result) !== check.crc) throw corrupt("CRC32 mismatch");
    return result;
  };
}

/** For callers that keep the result past the next call (inline writes, links): a fresh buffer per entry. */
export const unpackOnce = makeUnpack(zlib, false);

const WORKER_CODE = `
const { parentPort, workerData } = require("node:worker_threads");
const fs = require("node:fs");
const zlib = require("node:zlib");
const unpack = (${makeUnpack.toString()})(zlib, true);
parentPort.on("message", ({ id, slot, ab, files }) => {
  let error;
  let done = 0;
  if (ab === undefined) ab = workerData.slots[slot];
  try {
    let offset = 0;
    for (const f of files) {
      const at = offset;
      offset += f.length;
      let data;
      try {
        data = unpack(new Uint8Array(ab, at, f.length), f.check);
      } catch (e) {
        e.path = f.path;
        throw e;
      }
      const fd = fs.openSync(f.path, "w", f.mode);
      try {
        for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at, data.length - at);
      } finally {
        fs.closeSync(fd);
      }
      done++;
    }
  } catch (e) {
    error = { message: e.message, code: e.code, path: e.path, failed: done };
  }
  parentPort.postMessage({ id, error });
});
`;

export interface FileToWrite {
  path: string;
  /** The file's bytes, one buffer or its chunks in order; copied before write() returns. */
  data: Buffer | readonly Buffer[];
  mode: number;
  /** Inflate and check the bytes first; a mismatch fails the write with code ECORRUPT and writes nothing. */
  check?: EntryCheck;
}

interface Pending {
  resolve: () => void;
  /** `failed`: for a batch, the index of the file that failed (those before it were written). */
  reject: (e: unknown, failed?: number) => void;
}

/**
 * Copies src into a staging slot at byte `at` with one memmove; returns the bytes copied. Node 24's Buffer#copy of a
 * whole source goes through TypedArray#set, which into shared memory moves bytes one at a time at unaligned offsets
 * (1.4 vs 7.5 GB/s; ~0.5 s of a 1 GiB pull), while a copy of part of a source is a memmove: so all but the last
 * byte go as a part, the last by index. (A DataView target also takes the memmove, but V8 then intermittently
 * failed node's `ArrayBuffer.isView` check on it in a pull, one run in three.)
 */
export function copyInto(src: Buffer, into: Buffer, at: number): number {
  const n = src.length;
  if (n === 0) return 0;
  src.copy(into, at, 0, n - 1);
  into[at + n - 1] = src[n - 1] as number;
  return n;
}

interface Lane {
  worker: Worker;
  /** The worker's staging slots (shared with it) and the indexes of those not holding a batch. */
  slots: SharedArrayBuffer[];
  free: number[];
  /** The batch being filled: its slot (or a buffer of its own), bytes used, and the files in it. */
  stage: { slot: number; view: Buffer } | { ab: ArrayBuffer; view: Buffer } | undefined;
  used: number;
  files: { path: string; mode: number; length: number; check: EntryCheck | undefined }[];
  ids: number[];
}

/**
 * The worker only loops over synchronous writes, so a small heap is plenty; V8's defaults for a worker only give
 * its garbage room to pile up in the agent's RSS (docs/storage.md, "Memory and garbage collection").
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 32, stackSizeMb: 1 };

const BATCH_FILES = 64;
const BATCH_BYTES = 1024 * 1024;
/**
 * Staging slots per worker: SafeTree keeps at most 2 MiB outstanding, so two full batches and the one being
 * filled; one more spare.
 */
const SLOTS = 4;

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export class FileWriter {
  readonly #lanes: Lane[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #last = new Map<string, Promise<void>>();
  #id = 0;

  constructor(workers: number) {
    try {
      for (let i = 0; i < workers; i++) {
        const slots = Array.from({ length: SLOTS }, () => new SharedArrayBuffer(BATCH_BYTES));
        const worker = new Worker(WORKER_CODE, { eval: true, resourceLimits: WORKER_LIMITS, workerData: { slots } });
        worker.unref();
        type Answer = { id: number; error?: { message: string; code?: string; path?: string; failed: number } };
        worker.on("message", (m: Answer) => {
          const p = this.#pending.get(m.id);
          if (!p) return;
          this.#pending.delete(m.id);
          if (m.error === undefined) p.resolve();
          else
            p.reject(
              Object.assign(new Error(m.error.message), { code: m.error.code, path: m.error.path }),
              m.error.failed,
            );
        });
        worker.on("error", (e) => {
          for (const [id, p] of this.#pending) {
            this.#pending.delete(id);
            p.reject(e);
          }
        });
        this.#lanes.push({
          worker,
          slots,
          free: slots.map((_, n) => n),
          stage: undefined,
          used: 0,
          files: [],
          ids: [],
        });
      }
    } catch {
      void this.close(); // no lanes left: every write goes inline
    }
  }

  /**
   * Queues one file; the promise settles when the batch holding it is written (or fails). Batches leave when they
   * reach BATCH_FILES files or BATCH_BYTES bytes, or on flush().
   */
  write(file: FileToWrite): Promise<void> {
    if (this.#lanes.length === 0) return this.#writeInline(file);
    const lane = this.#lanes[hash(file.path) % this.#lanes.length] as Lane;
    const id = this.#id++;
    const done = new Promise<void>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    const chunks = Buffer.isBuffer(file.data) ? [file.data] : file.data;
    let length = 0;
    for (const c of chunks) length += c.length;
    if (lane.stage !== undefined && lane.used + length > lane.stage.view.length) this.#send(lane);
    if (lane.stage === undefined) {
      const slot = length <= BATCH_BYTES ? lane.free.pop() : undefined;
      if (slot === undefined) {
        const ab = new ArrayBuffer(Math.max(length, BATCH_BYTES));
        lane.stage = { ab, view: Buffer.from(ab) };
      } else lane.stage = { slot, view: Buffer.from(lane.slots[slot] as SharedArrayBuffer) };
      lane.used = 0;
    }
    for (const c of chunks) lane.used += copyInto(c, lane.stage.view, lane.used);
    // Only the declared fields travel: a caller's check may carry more (a function would fail the clone).
    const check = file.check && { inflate: file.check.inflate, size: file.check.size, crc: file.check.crc };
    lane.files.push({ path: file.path, mode: file.mode, length, check });
    lane.ids.push(id);
    if (lane.files.length >= BATCH_FILES || lane.used >= BATCH_BYTES) this.#send(lane);
    return done;
  }

  /** Without workers: fs.promises, chained per name so two writes of one name land in order. */
  #writeInline(file: FileToWrite): Promise<void> {
    const copy = Buffer.concat(Buffer.isBuffer(file.data) ? [file.data] : file.data); // a copy, as with workers
    const before = this.#last.get(file.path);
    const p = (before ?? Promise.resolve())
      .catch(() => {})
      .then(() => fs.writeFile(file.path, unpackOnce(copy, file.check), { mode: file.mode }));
    this.#last.set(file.path, p);
    void p
      .finally(() => {
        if (this.#last.get(file.path) === p) this.#last.delete(file.path);
      })
      .catch(() => {});
    return p;
  }

  /** Sends every partly filled batch now. */
  flush(): void {
    for (const lane of this.#lanes) if (lane.files.length > 0) this.#send(lane);
  }

  #send(lane: Lane): void {
    const { stage, files, ids } = lane;
    lane.stage = undefined;
    lane.files = [];
    lane.ids = [];
    if (stage === undefined) return;
    const slot = "slot" in stage ? stage.slot : undefined;
    const freeSlot = (): void => {
      if (slot !== undefined) lane.free.push(slot);
    };
    if (files.length === 0) return freeSlot();
    const id = this.#id++;
    // One message per batch; its answer settles each file's promise (a failure fails the whole batch) and frees the
    // slot: the worker is done reading it.
    this.#pending.set(id, {
      resolve: () => {
        freeSlot();
        for (const i of ids) this.#settle(i);
      },
      reject: (e, failed = 0) => {
        freeSlot();
        // The files before the one that failed are written; it and those after it fail with its error, in order, so
        // a caller that keeps the first error names the file at fault.
        for (const [k, i] of ids.entries()) this.#settle(i, k < failed ? undefined : e);
      },
    });
    try {
      if ("ab" in stage) lane.worker.postMessage({ id, ab: stage.ab, files }, [stage.ab]);
      else lane.worker.postMessage({ id, slot, files });
    } catch (error) {
      this.#settle(id, error); // a batch that cannot be sent fails its files instead of leaving them waiting
    }
  }

  #settle(id: number, error?: unknown): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (error === undefined) p.resolve();
    else p.reject(error);
  }

  async close(): Promise<void> {
    await Promise.all(this.#lanes.splice(0).map((l) => l.worker.terminate()));
  }
}
