/**
 * Writes many small files from worker threads with plain synchronous calls, handed over in batches.
 *
 * `fs.promises.writeFile` costs three thread-pool round trips per file (open, write, close), and each one wakes a
 * sleeping pool thread (on a VM vCPU, an inter-processor interrupt): for a many-file dataset the largest CPU cost
 * of a zip pull after the bytes themselves (docs/storage.md has the numbers). A worker that receives 64 files in
 * one message and writes them one after the other makes one wake-up per batch.
 *
 * Each file's bytes are copied at once into the batch's staging buffer, which moves to the worker and comes back
 * with the answer: no caller memory is ever transferred (a transferred slice of Node's shared buffer pool would
 * break every other user of it), the caller's buffer dies young (cheap to collect), and staging buffers are
 * reused. A file name always goes to the same worker, so two writes of one name land in order. Where workers
 * cannot start, files are written inline with fs.promises.
 */
import fs from "node:fs/promises";
import { Worker } from "node:worker_threads";

const WORKER_CODE = `
const { parentPort } = require("node:worker_threads");
const fs = require("node:fs");
parentPort.on("message", ({ id, ab, files }) => {
  let error;
  try {
    let offset = 0;
    for (const f of files) {
      const data = new Uint8Array(ab, offset, f.length);
      offset += f.length;
      const fd = fs.openSync(f.path, "w", f.mode);
      try {
        for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at, data.length - at);
      } finally {
        fs.closeSync(fd);
      }
    }
  } catch (e) {
    error = { message: e.message, code: e.code, path: e.path };
  }
  parentPort.postMessage({ id, ab, error }, [ab]);
});
`;

export interface FileToWrite {
  path: string;
  /** The file's bytes, one buffer or its chunks in order; copied before write() returns. */
  data: Buffer | readonly Buffer[];
  mode: number;
}

interface Pending {
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Lane {
  worker: Worker;
  /** The batch being filled: its staging buffer, bytes used, and the files in it. */
  stage: ArrayBuffer | undefined;
  used: number;
  files: { path: string; mode: number; length: number }[];
  ids: number[];
}

/**
 * The worker only loops over synchronous writes, so a small heap is plenty; V8's defaults for a worker only give
 * its garbage room to pile up in the agent's RSS (docs/storage.md, "Memory and garbage collection").
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 32, stackSizeMb: 1 };

const BATCH_FILES = 64;
const BATCH_BYTES = 1024 * 1024;

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export class FileWriter {
  readonly #lanes: Lane[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #last = new Map<string, Promise<void>>();
  /** Staging buffers (BATCH_BYTES each) back from the workers, reused for the next batches. */
  readonly #spare: ArrayBuffer[] = [];
  #id = 0;

  constructor(workers: number) {
    try {
      for (let i = 0; i < workers; i++) {
        const worker = new Worker(WORKER_CODE, { eval: true, resourceLimits: WORKER_LIMITS });
        worker.unref();
        worker.on(
          "message",
          (m: { id: number; ab: ArrayBuffer; error?: { message: string; code?: string; path?: string } }) => {
            if (this.#spare.length < 2 && m.ab.byteLength === BATCH_BYTES) this.#spare.push(m.ab);
            const p = this.#pending.get(m.id);
            if (!p) return;
            this.#pending.delete(m.id);
            if (m.error === undefined) p.resolve();
            else p.reject(Object.assign(new Error(m.error.message), { code: m.error.code, path: m.error.path }));
          },
        );
        worker.on("error", (e) => {
          for (const [id, p] of this.#pending) {
            this.#pending.delete(id);
            p.reject(e);
          }
        });
        this.#lanes.push({ worker, stage: undefined, used: 0, files: [], ids: [] });
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
    if (lane.stage !== undefined && lane.used + length > lane.stage.byteLength) this.#send(lane);
    if (lane.stage === undefined) {
      lane.stage =
        (length <= BATCH_BYTES ? this.#spare.pop() : undefined) ?? new ArrayBuffer(Math.max(length, BATCH_BYTES));
      lane.used = 0;
    }
    const stage = new Uint8Array(lane.stage);
    for (const c of chunks) {
      stage.set(c, lane.used);
      lane.used += c.length;
    }
    lane.files.push({ path: file.path, mode: file.mode, length });
    lane.ids.push(id);
    if (lane.files.length >= BATCH_FILES || lane.used >= BATCH_BYTES) this.#send(lane);
    return done;
  }

  /** Without workers: fs.promises, chained per name so two writes of one name land in order. */
  #writeInline(file: FileToWrite): Promise<void> {
    const data = Buffer.concat(Buffer.isBuffer(file.data) ? [file.data] : file.data); // a copy, as with workers
    const before = this.#last.get(file.path);
    const p = (before ?? Promise.resolve())
      .catch(() => {})
      .then(() => fs.writeFile(file.path, data, { mode: file.mode }));
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
    const { stage: ab, files, ids } = lane;
    lane.stage = undefined;
    lane.files = [];
    lane.ids = [];
    if (ab === undefined || files.length === 0) return;
    const id = this.#id++;
    // One message per batch; its answer settles each file's promise (a failure fails the whole batch).
    this.#pending.set(id, {
      resolve: () => {
        for (const i of ids) this.#settle(i);
      },
      reject: (e) => {
        for (const i of ids) this.#settle(i, e);
      },
    });
    lane.worker.postMessage({ id, ab, files }, [ab]);
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
