/** Pull-style reads over an async stream of buffers: exact-length headers, then bounded bodies. */
export class ChunkReader {
  readonly #it: AsyncIterator<Buffer>;
  /** Unread chunks; bytes are copied once, when a read spans several of them. */
  readonly #chunks: Buffer[] = [];
  #length = 0;
  #done = false;

  /** Over a stream of buffers, or over buffers already in memory. */
  constructor(source: AsyncIterable<Buffer> | readonly Buffer[]) {
    if (Array.isArray(source)) {
      this.#chunks.push(...(source as readonly Buffer[]));
      this.#length = this.#chunks.reduce((n, c) => n + c.length, 0);
      this.#done = true;
      this.#it = { next: async () => ({ done: true, value: undefined }) };
    } else this.#it = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async #more(): Promise<boolean> {
    if (this.#done) return false;
    const r = await this.#it.next();
    if (r.done === true) {
      this.#done = true;
      return false;
    }
    this.#chunks.push(r.value);
    this.#length += r.value.length;
    return true;
  }

  #take(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.#chunks[0] as Buffer;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#length -= n;
    return out;
  }

  /** Exactly n bytes, or null when the source ends first. */
  async read(n: number): Promise<Buffer | null> {
    if (n === 0) return Buffer.alloc(0);
    while (this.#length < n) if (!(await this.#more())) return null;
    return this.#take(n);
  }

  /** Exactly n bytes as views on the arrived chunks (no copy), or null when the source ends first. */
  async readChunks(n: number): Promise<Buffer[] | null> {
    while (this.#length < n) if (!(await this.#more())) return null;
    const out: Buffer[] = [];
    for (let left = n; left > 0;) {
      const b = this.#take(Math.min(left, (this.#chunks[0] as Buffer).length));
      out.push(b);
      left -= b.length;
    }
    return out;
  }

  /** The next n bytes as they arrive; returns early (short) when the source ends. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#length === 0 && !(await this.#more())) return;
      const out = this.#take(Math.min(left, (this.#chunks[0] as Buffer).length));
      left -= out.length;
      yield out;
    }
  }

  async close(): Promise<void> {
    await this.#it.return?.();
  }
}
