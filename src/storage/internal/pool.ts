/** A bounded concurrency limiter: at most `limit` tasks run at once; the rest wait in FIFO order. */
export class Pool {
  readonly limit: number;
  #active = 0;
  #peak = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`pool limit must be a positive integer, got ${limit}`);
    this.limit = limit;
  }

  /** Highest number of tasks that ran at the same time (tests assert it never exceeds the limit). */
  get peak(): number {
    return this.#peak;
  }

  /** Waits for a slot; call the returned function exactly once to give it back. */
  async acquire(): Promise<() => void> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active += 1;
    this.#peak = Math.max(this.#peak, this.#active);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active -= 1;
    };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await task();
    } finally {
      release();
    }
  }
}

/** Runs fn over items with at most `limit` in flight; the first failure aborts the rest and is rethrown. */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (error) {
        failed ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed.error;
}

/**
 * Reusable part buffers. A pull moves its GiBs through the same few part-sized buffers instead of allocating one per
 * part: no garbage for V8 to trace, and RSS stays flat. At most `keep` spares are held.
 */
export class PartBuffers {
  readonly size: number;
  readonly #keep: number;
  readonly #spare: ArrayBuffer[] = [];

  constructor(size: number, keep: number) {
    this.size = size;
    this.#keep = keep;
  }

  /** A buffer of exactly n bytes: a view on a pooled one when n <= size. Give it back with give(). */
  take(n: number): Buffer {
    if (n > this.size) return Buffer.allocUnsafeSlow(n);
    const ab = this.#spare.pop() ?? new ArrayBuffer(this.size);
    return Buffer.from(ab, 0, n);
  }

  /** Returns a buffer from take(); the caller must not use it afterwards. */
  give(b: Buffer): void {
    if (b.buffer.byteLength === this.size && b.buffer instanceof ArrayBuffer && this.#spare.length < this.#keep)
      this.#spare.push(b.buffer);
  }
}
