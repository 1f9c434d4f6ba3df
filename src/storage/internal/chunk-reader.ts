/** Pull-style reads over an async stream of buffers: exact-length headers, then bounded bodies. */
export class ChunkReader {
  readonly #it: AsyncIterator<Buffer>;
  #buf: Buffer = Buffer.alloc(0);
  #done = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  async #more(): Promise<boolean> {
    if (this.#done) return false;
    const r = await this.#it.next();
    if (r.done === true) {
      this.#done = true;
      return false;
    }
    this.#buf = this.#buf.length === 0 ? r.value : Buffer.concat([this.#buf, r.value]);
    return true;
  }

  /** Exactly n bytes, or null when the source ends first. */
  async read(n: number): Promise<Buffer | null> {
    while (this.#buf.length < n) if (!(await this.#more())) return null;
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /** The next n bytes as they arrive; returns early (short) when the source ends. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#more())) return;
      const out = this.#buf.subarray(0, Math.min(left, this.#buf.length));
      this.#buf = this.#buf.subarray(out.length);
      left -= out.length;
      yield out;
    }
  }

  async close(): Promise<void> {
    await this.#it.return?.();
  }
}
