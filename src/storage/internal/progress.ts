/**
 * Progress of a long transfer: a redrawn bar when stderr is a terminal, otherwise a structured log line every
 * few seconds (pods' logs are not terminals). Never prints keys, URLs with signatures or credentials.
 */
import type { Logger } from "pino";
import { count, formatBytes, significant } from "../../log/units.ts";

export interface ProgressSink {
  isTTY?: boolean;
  write(s: string): boolean;
}

export interface Progress {
  add(bytes: number, files?: number): void;
  setTotal(total: number | undefined): void;
  readonly bytes: number;
  readonly files: number;
  done(): void;
}

const MB = 1024 * 1024;

export function startProgress(opts: {
  label: string;
  total?: number;
  logger: Logger;
  stderr?: ProgressSink;
  now: () => number;
  intervalMs?: number;
  onProgress?: (p: { bytes: number; totalBytes: number | undefined; files: number }) => void;
}): Progress {
  const tty = opts.stderr?.isTTY === true;
  const started = opts.now();
  let bytes = 0;
  let files = 0;
  let total = opts.total;
  let last = started;
  const interval = opts.intervalMs ?? (tty ? 200 : 5_000);
  const render = (final: boolean): void => {
    const secs = Math.max((opts.now() - started) / 1000, 0.001);
    const rate = bytes / MB / secs;
    if (tty) {
      const frac = total ? Math.min(bytes / total, 1) : 0;
      const width = 28;
      const bar = total ? "#".repeat(Math.round(frac * width)).padEnd(width, ".") : "";
      const size = total ? `${formatBytes(bytes)}/${formatBytes(total)}` : formatBytes(bytes);
      opts.stderr?.write(
        `\r${opts.label} [${bar}] ${size} ${formatBytes(Math.round(bytes / secs))}/s ${count(files, "file")}${final ? "\n" : ""}`,
      );
    } else {
      opts.logger.info(
        { bytes, total_bytes: total, files, mb_per_s: significant(rate), seconds: Number(secs.toFixed(1)) },
        `${opts.label}: ${formatBytes(bytes)}${total ? ` of ${formatBytes(total)}` : ""}`,
      );
    }
  };
  return {
    get bytes() {
      return bytes;
    },
    get files() {
      return files;
    },
    setTotal(t) {
      total = t;
    },
    add(n, f = 0) {
      bytes += n;
      files += f;
      opts.onProgress?.({ bytes, totalBytes: total, files });
      const t = opts.now();
      if (t - last >= interval) {
        last = t;
        render(false);
      }
    },
    done() {
      if (tty || opts.now() - started >= interval) render(true);
    },
  };
}
