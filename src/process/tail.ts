/**
 * The last lines of the child's output (both streams, in arrival order) for the done report and the ending's
 * classification. It keeps references to the relayed chunks up to a byte budget and only splits them into lines
 * when asked, so the relay's hot path costs one array push per chunk.
 */
type Source = "stdout" | "stderr";

/** Longest line kept in the tail; longer lines are cut with a marker. */
const MAX_TAIL_LINE = 2_000;

export class LogTail {
  readonly #lines: number;
  readonly #budget: number;
  #chunks: { source: Source; data: Buffer }[] = [];
  #bytes = 0;

  /** Keeps at least the last `lines` lines when they fit in `budgetBytes` (default 64 KiB or 1 KiB per line). */
  constructor(lines: number, budgetBytes = Math.max(64 * 1024, lines * 1024)) {
    this.#lines = lines;
    this.#budget = budgetBytes;
  }

  record(source: Source, data: Buffer): void {
    if (this.#lines === 0) return;
    this.#chunks.push({ source, data });
    this.#bytes += data.length;
    while (this.#chunks.length > 1 && this.#bytes - (this.#chunks[0] as { data: Buffer }).data.length >= this.#budget) {
      this.#bytes -= (this.#chunks.shift() as { data: Buffer }).data.length;
    }
  }

  /** The last lines, oldest first, line endings removed, each at most 2,000 characters. */
  lines(): string[] {
    if (this.#lines === 0) return [];
    const out: string[] = [];
    const partial: Record<Source, Buffer[]> = { stdout: [], stderr: [] };
    const finish = (parts: Buffer[]): void => {
      let line = Buffer.concat(parts).toString("utf8");
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line.length > MAX_TAIL_LINE)
        line = `${line.slice(0, MAX_TAIL_LINE)} [... ${line.length - MAX_TAIL_LINE} more]`;
      out.push(line);
    };
    for (const { source, data } of this.#chunks) {
      let start = 0;
      for (;;) {
        const nl = data.indexOf(0x0a, start);
        if (nl === -1) {
          if (start < data.length) partial[source].push(data.subarray(start));
          break;
        }
        partial[source].push(data.subarray(start, nl));
        finish(partial[source]);
        partial[source] = [];
        start = nl + 1;
      }
    }
    for (const source of ["stdout", "stderr"] as const) if (partial[source].length > 0) finish(partial[source]);
    return out.slice(-this.#lines);
  }
}
