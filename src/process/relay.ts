/**
 * Relays one of the child's streams to the agent's stream of the same name, byte for byte, and takes the
 * `::trainer::{json}` reports out of it on the way.
 *
 * - Works on Buffers: a chunk without the marker is written as it came (one `indexOf` per chunk), so invalid
 *   UTF-8, partial last lines and lines of any length pass untouched. Strings are made only for report JSON and,
 *   when a plugin parses lines, for each line.
 * - A report is found anywhere in a line (torchrun workers share one pipe and glue lines). Exactly the marker and
 *   its one balanced JSON object are consumed; the text around it on the same line is relayed. When the report
 *   was all of its line, the line's newline goes too, so a report line leaves no empty line behind.
 * - A malformed report (no object, not closed on its line, bad JSON, unknown shape, over 1 MiB) is relayed
 *   unchanged and reported through `onMalformed`; training goes on.
 * - Bytes that may still turn into a report (a marker prefix at the end of a chunk, an object not closed yet) are
 *   held until the next chunk decides; `end()` writes what is held unchanged.
 */
import { REPORT_MARKER, type Report } from "../contract/report.ts";
import { parseReportJson, scanJsonObject } from "./reports.ts";

const MARKER = Buffer.from(REPORT_MARKER);
const ML = MARKER.length;
const LF = 0x0a;
const CR = 0x0d;
const MARKER_BYTES = new Set(MARKER);
/** Longest report accepted; a longer "report" is relayed as ordinary output. */
export const MAX_REPORT_BYTES = 1024 * 1024;
/** Longest line handed to a plugin's parseLine; longer lines keep their last bytes (the relay itself never cuts). */
export const MAX_PARSED_LINE_BYTES = 64 * 1024;

export interface RelayHandlers {
  /** Writes bytes to the destination; false asks the producer to wait for 'drain'. */
  write(chunk: Buffer): boolean;
  onReport(report: Report): void;
  onMalformed(problem: string, text: string): void;
  /** Every complete line that was relayed (reports removed), without its line ending. Only when needed. */
  onLine?: ((line: string) => void) | undefined;
  /** Every relayed piece, for the log tail. */
  onRelayed?: ((chunk: Buffer) => void) | undefined;
}

export class ReportRelay {
  readonly #h: RelayHandlers;
  #held: Buffer | null = null;
  /** Some bytes of the current line were relayed already. */
  #lineHasText = false;
  /** A report took its whole line so far; if the next byte ends the line, it goes with the report. */
  #dropLineEnd = false;
  #lineParts: Buffer[] = [];
  #lineBytes = 0;

  constructor(handlers: RelayHandlers) {
    this.#h = handlers;
  }

  /** Processes one chunk; false when the destination wants the producer paused. */
  push(chunk: Buffer): boolean {
    let data = chunk;
    if (this.#held !== null) {
      data = Buffer.concat([this.#held, chunk]);
      this.#held = null;
    }
    let pos = 0;
    if (this.#dropLineEnd && data.length > 0) {
      if (data[0] === LF) pos = 1;
      else if (data[0] === CR && data[1] === LF) pos = 2;
      else if (data[0] === CR && data.length === 1) {
        this.#held = Buffer.from(data);
        return true;
      }
      this.#dropLineEnd = false;
    }
    let ok = true;
    for (;;) {
      const idx = data.indexOf(MARKER, pos);
      if (idx === -1) {
        const keep = markerPrefixAtEnd(data, pos);
        ok = this.#emit(data, pos, data.length - keep) && ok;
        if (keep > 0) this.#held = Buffer.from(data.subarray(data.length - keep));
        return ok;
      }
      ok = this.#emit(data, pos, idx) && ok;
      const scan = scanJsonObject(data, idx + ML);
      if (scan.status === "incomplete") {
        if (data.length - idx <= MAX_REPORT_BYTES) {
          this.#held = Buffer.from(data.subarray(idx));
          return ok;
        }
        this.#h.onMalformed(`report longer than ${MAX_REPORT_BYTES} bytes`, preview(data, idx));
        ok = this.#emit(data, idx, idx + ML) && ok;
        pos = idx + ML;
        continue;
      }
      if (scan.status === "complete" && scan.end - idx > MAX_REPORT_BYTES) {
        this.#h.onMalformed(`report longer than ${MAX_REPORT_BYTES} bytes`, preview(data, idx));
        ok = this.#emit(data, idx, scan.end) && ok;
        pos = scan.end;
        continue;
      }
      if (scan.status === "invalid") {
        this.#h.onMalformed(scan.problem, preview(data, idx));
        ok = this.#emit(data, idx, idx + ML) && ok;
        pos = idx + ML;
        continue;
      }
      const parsed = parseReportJson(data.toString("utf8", idx + ML, scan.end));
      if (!parsed.ok) {
        this.#h.onMalformed(parsed.problem, preview(data, idx));
        ok = this.#emit(data, idx, scan.end) && ok;
        pos = scan.end;
        continue;
      }
      this.#h.onReport(parsed.report);
      pos = scan.end;
      if (!this.#lineHasText) {
        if (pos === data.length) this.#dropLineEnd = true;
        else if (data[pos] === LF) pos += 1;
        else if (data[pos] === CR && data[pos + 1] === LF) pos += 2;
        else if (data[pos] === CR && pos + 1 === data.length) {
          this.#held = Buffer.from(data.subarray(pos));
          this.#dropLineEnd = true;
          return ok;
        }
      }
    }
  }

  /**
   * True when the only bytes held back are a possible start of the marker (a chunk ended in ':' or '::tr'):
   * the caller flushes them after a short quiet time, so a prompt such as `Password:` is not kept from the user.
   */
  get holdsMarkerPrefix(): boolean {
    return this.#held !== null && this.#held.length < ML && !this.#dropLineEnd;
  }

  /** Writes held marker-prefix bytes now (see holdsMarkerPrefix); false on backpressure. */
  flushMarkerPrefix(): boolean {
    if (!this.holdsMarkerPrefix) return true;
    const held = this.#held as Buffer;
    this.#held = null;
    return this.#emit(held, 0, held.length);
  }

  /** The stream ended: writes whatever was held back unchanged and hands a last unterminated line to onLine. */
  end(): boolean {
    let ok = true;
    if (this.#held !== null) {
      const held = this.#held;
      this.#held = null;
      // A lone CR held after a whole-line report is that line's ending: it goes with the report.
      if (!(this.#dropLineEnd && held.length === 1 && held[0] === CR)) {
        if (held.indexOf(MARKER) !== -1) this.#h.onMalformed("stream ended inside a report", preview(held, 0));
        ok = this.#emit(held, 0, held.length);
      }
    }
    this.#dropLineEnd = false;
    if (this.#h.onLine !== undefined && this.#lineBytes > 0) this.#flushLine();
    return ok;
  }

  #emit(data: Buffer, from: number, to: number): boolean {
    if (to <= from) return true;
    const part = from === 0 && to === data.length ? data : data.subarray(from, to);
    this.#lineHasText = part[part.length - 1] !== LF;
    if (this.#h.onLine !== undefined) this.#collectLines(part);
    this.#h.onRelayed?.(part);
    return this.#h.write(part);
  }

  #collectLines(part: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = part.indexOf(LF, start);
      if (nl === -1) {
        if (start < part.length) this.#addLinePart(part.subarray(start));
        return;
      }
      this.#addLinePart(part.subarray(start, nl));
      this.#flushLine();
      start = nl + 1;
    }
  }

  /**
   * Keeps the END of an over-long line: progress bars redraw in place with `\r`, so the newest state of a
   * Keras or tqdm line is its last bytes.
   */
  #addLinePart(piece: Buffer): void {
    if (piece.length === 0) return;
    const kept = piece.length > MAX_PARSED_LINE_BYTES ? piece.subarray(piece.length - MAX_PARSED_LINE_BYTES) : piece;
    this.#lineParts.push(kept);
    this.#lineBytes += kept.length;
    while (
      this.#lineParts.length > 1 &&
      this.#lineBytes - (this.#lineParts[0] as Buffer).length >= MAX_PARSED_LINE_BYTES
    )
      this.#lineBytes -= (this.#lineParts.shift() as Buffer).length;
  }

  #flushLine(): void {
    const parts = this.#lineParts;
    let line =
      parts.length === 0
        ? ""
        : parts.length === 1
          ? (parts[0] as Buffer).toString("utf8")
          : Buffer.concat(parts).subarray(-MAX_PARSED_LINE_BYTES).toString("utf8");
    this.#lineParts = [];
    this.#lineBytes = 0;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    this.#h.onLine?.(line);
  }
}

/** Length of the longest proper prefix of the marker that ends `data` (from `pos` on); 0 for most chunks. */
function markerPrefixAtEnd(data: Buffer, pos: number): number {
  const len = data.length;
  if (len === pos || !MARKER_BYTES.has(data[len - 1] as number)) return 0;
  for (let k = Math.min(ML - 1, len - pos); k > 0; k--) {
    if (data.compare(MARKER, 0, k, len - k, len) === 0) return k;
  }
  return 0;
}

function preview(data: Buffer, from: number): string {
  const nl = data.indexOf(LF, from);
  const to = Math.min(nl === -1 ? data.length : nl, from + 200);
  return data.toString("utf8", from, to);
}
