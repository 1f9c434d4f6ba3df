/**
 * The local runner's own display of its nodes' output: each line prefixed with its node (`[node0] `), colored on
 * a terminal. Only the display is prefixed; the agents relay the training's output unchanged, and every node's raw
 * bytes also go to its log file.
 */
import type { Writable } from "node:stream";

const COLORS = [36, 35, 33, 32, 34, 31];

export interface LinePrefixer {
  push(chunk: Buffer): void;
  /** Writes a last line that had no newline. */
  end(): void;
}

export function nodeLabel(node: number, nodes: number): string {
  return `node${String(node).padStart(String(nodes - 1).length, "0")}`;
}

const LEVELS: Readonly<Record<number, string>> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
/** Fields every agent log line carries; the display leaves them out (the raw line is in the node's log file). */
const BOUND = new Set([
  "level",
  "time",
  "msg",
  "name",
  "trace_id",
  "job_id",
  "node_rank",
  "pid",
  "hostname",
  "component",
]);

/**
 * An agent's JSON log line (pino) as one short readable line: `15:47:43 INFO  storage: dataset ready bytes=33868`.
 * Any other line comes back unchanged.
 */
export function readableLogLine(line: string): string {
  if (!line.startsWith('{"level":')) return line;
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof entry.msg !== "string") return line;
  const level = typeof entry.level === "number" ? (LEVELS[entry.level] ?? String(entry.level)) : String(entry.level);
  const time = typeof entry.time === "string" ? entry.time.slice(11, 19) : "";
  const component = typeof entry.component === "string" ? `${entry.component}: ` : "";
  const extra = Object.entries(entry)
    .filter(([k, v]) => !BOUND.has(k) && v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return `${time} ${level.padEnd(5)} ${component}${entry.msg}${extra === "" ? "" : ` ${extra}`}`;
}

export function createLinePrefixer(
  out: Writable,
  label: string,
  color: boolean,
  index: number,
  transform?: (line: string) => string,
): LinePrefixer {
  const code = COLORS[index % COLORS.length] ?? 36;
  const prefix = Buffer.from(color ? `\u001b[${code}m[${label}]\u001b[0m ` : `[${label}] `);
  let partial: Buffer | null = null;
  return {
    push(chunk) {
      let data = partial === null ? chunk : Buffer.concat([partial, chunk]);
      partial = null;
      const parts: Buffer[] = [];
      for (;;) {
        const nl = data.indexOf(0x0a);
        if (nl === -1) break;
        const line = data.subarray(0, nl + 1);
        parts.push(
          prefix,
          transform === undefined ? line : Buffer.from(`${transform(line.toString("utf8", 0, nl))}\n`),
        );
        data = data.subarray(nl + 1);
      }
      if (data.length > 0) partial = Buffer.from(data);
      if (parts.length > 0) out.write(Buffer.concat(parts));
    },
    end() {
      if (partial !== null) out.write(Buffer.concat([prefix, partial, Buffer.from("\n")]));
      partial = null;
    },
  };
}
