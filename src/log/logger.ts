/**
 * The agent's root logger: pino JSON lines on stderr (fd 2, synchronous: pods get killed and buffered lines
 * would be lost), readable through pino-pretty when stderr is a terminal. The child's stdout stays the child's.
 * Bindings carry trace_id, job_id and node_rank; `redact` removes tokens and authorization headers wherever a
 * caller might pass them.
 */
import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerOptions {
  level?: string;
  traceId: string;
  jobId?: string | undefined;
  nodeRank?: number | undefined;
  /** Where lines go (default: fd 2, synchronous). Tests pass a stream. */
  destination?: DestinationStream;
  /** Pretty-print (default: when stderr is a TTY and no destination is given). */
  pretty?: boolean;
  /** Extra bindings (e.g. `{ name: "trainer-agent" }`). */
  base?: Record<string, unknown>;
}

/** Paths pino removes (censors as "[redacted]") in every log line. */
export const REDACT_PATHS = [
  "authorization",
  "Authorization",
  "token",
  "secret",
  "password",
  "secretAccessKey",
  "accessKeyId",
  "headers.authorization",
  "headers.Authorization",
  "*.authorization",
  "*.Authorization",
  "*.token",
  "*.secret",
  "*.password",
  "*.secretAccessKey",
  "*.accessKeyId",
  "*.headers.authorization",
  "*.headers.Authorization",
  "req.headers.authorization",
  "request.headers.authorization",
];

/**
 * Creates the root logger. Async only because pino-pretty is imported lazily (and only for a terminal).
 * Level from `level` (default "info"; "debug" shows retries and report details).
 */
export async function createLogger(options: LoggerOptions): Promise<Logger> {
  const pretty = options.pretty ?? (options.destination === undefined && process.stderr.isTTY === true);
  let destination: DestinationStream;
  if (options.destination !== undefined) destination = options.destination;
  else if (pretty) {
    const { default: pinoPretty } = await import("pino-pretty");
    // One line per entry; the run's ids (the same on every line) are left out of the terminal view.
    destination = pinoPretty({
      destination: 2,
      sync: true,
      colorize: true,
      translateTime: "SYS:HH:MM:ss.l",
      singleLine: true,
      ignore: "pid,hostname,name,trace_id,job_id,node_rank,component",
      messageFormat: "[{component}] {msg}",
    });
  } else destination = pino.destination({ fd: 2, sync: true });

  const bindings: Record<string, unknown> = { ...options.base, trace_id: options.traceId };
  if (options.jobId !== undefined) bindings.job_id = options.jobId;
  if (options.nodeRank !== undefined) bindings.node_rank = options.nodeRank;
  return pino(
    {
      level: options.level ?? "info",
      base: bindings,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
