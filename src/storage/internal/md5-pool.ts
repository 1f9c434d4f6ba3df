/**
 * MD5 of upload parts on worker threads, so Content-MD5 for a multi-GiB checkpoint uses the pod's spare cores
 * instead of the agent's event loop. A part in shared memory (the uploader's reused part buffers) is read by the
 * worker in place; another part's memory is transferred to the worker and back (no copy), which costs garbage
 * collections: each transfer counts as new external memory on both sides (docs/storage.md).
 * Falls back to hashing inline when workers cannot start.
 */
import { createHash } from "node:crypto";
import os from "node:os";
import { Worker } from "node:worker_threads";

const WORKER_CODE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
parentPort.on("message", ({ id, ab, offset, length }) => {
  const digest = createHash("md5").update(new Uint8Array(ab, offset, length)).digest();
  if (ab instanceof SharedArrayBuffer) parentPort.postMessage({ id, digest });
  else parentPort.postMessage({ id, ab, digest }, [ab]);
});
`;

interface Job {
  resolve: (r: { digest: Buffer; body: Buffer }) => void;
  reject: (e: unknown) => void;
  /** A part in shared memory: it stays where it is. */
  shared: Buffer | undefined;
  offset: number;
  length: number;
}

export class Md5Pool {
  readonly #size: number;
  readonly #workers: Worker[] = [];
  readonly #jobs = new Map<number, Job>();
  #next = 0;
  #id = 0;
  #broken = false;

  constructor(size = Math.max(1, Math.min(4, os.availableParallelism() - 1))) {
    this.#size = size;
  }

  #worker(): Worker | undefined {
    if (this.#broken) return undefined;
    try {
      if (this.#workers.length < this.#size) {
        const w = new Worker(WORKER_CODE, { eval: true });
        w.unref();
        w.on("message", (m: { id: number; ab?: ArrayBuffer; digest: Uint8Array }) => {
          const job = this.#jobs.get(m.id);
          if (!job) return;
          this.#jobs.delete(m.id);
          const body = job.shared ?? Buffer.from(m.ab as ArrayBuffer, job.offset, job.length);
          job.resolve({ digest: Buffer.from(m.digest), body });
        });
        w.on("error", (e) => {
          this.#broken = true;
          for (const [id, job] of this.#jobs) {
            this.#jobs.delete(id);
            job.reject(e);
          }
        });
        this.#workers.push(w);
      }
      return this.#workers[this.#next++ % this.#workers.length];
    } catch {
      this.#broken = true;
      return undefined;
    }
  }

  /**
   * MD5 of body. A body in shared memory stays readable; any other body's memory moves to the worker while hashing:
   * use the returned `body` afterwards. Buffers that share their ArrayBuffer with others (small, pooled) are
   * hashed inline.
   */
  async digest(body: Buffer): Promise<{ digest: Buffer; body: Buffer }> {
    const ab = body.buffer;
    const shared = ab instanceof SharedArrayBuffer;
    const owned = shared || (ab instanceof ArrayBuffer && ab.byteLength === body.byteLength);
    const w = owned && body.byteLength >= 1024 * 1024 ? this.#worker() : undefined;
    if (w === undefined) return { digest: createHash("md5").update(body).digest(), body };
    const id = this.#id++;
    return new Promise((resolve, reject) => {
      this.#jobs.set(id, {
        resolve,
        reject,
        shared: shared ? body : undefined,
        offset: body.byteOffset,
        length: body.byteLength,
      });
      const message = { id, ab, offset: body.byteOffset, length: body.byteLength };
      if (shared) w.postMessage(message);
      else w.postMessage(message, [ab as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.splice(0).map((w) => w.terminate()));
  }
}
