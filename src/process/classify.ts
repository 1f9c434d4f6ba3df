/**
 * Says in one line why the child ended, from its exit code, signal and last lines, the way an on-call engineer
 * would read them: an OOM kill, the last line of a Python traceback, an NCCL or CUDA error, a missing command.
 */
export interface EndingFacts {
  exitCode: number;
  signal: NodeJS.Signals | null;
  logTail: readonly string[];
  /** The agent SIGKILLed the group after the grace period. */
  killedAfterGrace?: boolean;
  graceSeconds?: number;
  /** Why the agent asked the child to stop (first reason only), e.g. "SIGTERM received". */
  terminationReason?: string | undefined;
  /** Spawning failed (the child never ran). */
  spawnError?: NodeJS.ErrnoException | undefined;
  command?: string;
}

const NCCL =
  /\bNCCL\b.*\b(error|failure|timeout|timed out|abort)|\bnccl\w*Error\b|Watchdog caught collective operation timeout/i;
const CUDA =
  /\bCUDA (error|out of memory)|\bCUDNN_STATUS_\w+|\bcuda runtime error\b|CUBLAS_STATUS_(?!SUCCESS)\w+|OutOfMemoryError/i;
const NOT_FOUND = /(command not found|: not found|No such file or directory)/;
/** The wrapper exception torchrun raises after a worker failed: the worker's own traceback says more. */
const WRAPPER = /^(torch\.distributed\.elastic\.multiprocessing\.errors\.)?ChildFailedError\b/;

/** A failure whose cause and remedy are known: the agent says the remedy in done.reason and on its last line. */
export interface KnownFailure {
  code: "TORCHRUN_OLD_REDIRECTS";
  remedy: string;
}

/**
 * torchrun of Debian's torch 1.13 crashes before starting any worker when `--redirects`/`--tee` come neither from
 * the command line nor from PET_REDIRECTS/PET_TEE: `to_map` in its multiprocessing api calls `.get` on None.
 * Any explicit value avoids it; 9:1 touches only a local rank 9 that 1 to 8 processes per node never have.
 */
const OLD_TORCHRUN_TO_MAP = /torch\/distributed\/elastic\/multiprocessing\/api\.py", line \d+, in to_map\b/;
const NONE_GET = /AttributeError: 'NoneType' object has no attribute 'get'/;

export function knownFailure(logTail: readonly string[]): KnownFailure | undefined {
  const frame = logTail.findIndex((l) => OLD_TORCHRUN_TO_MAP.test(l));
  if (frame >= 0 && logTail.slice(frame + 1).some((l) => NONE_GET.test(l)))
    return {
      code: "TORCHRUN_OLD_REDIRECTS",
      remedy:
        "this torchrun (old torch, e.g. Debian's 1.13) crashed reading its --redirects/--tee defaults: set PET_REDIRECTS=9:1 PET_TEE=9:1",
    };
  return undefined;
}

/** The one-line reason of an ending; undefined for a clean exit 0. */
export function classifyEnding(f: EndingFacts): string | undefined {
  return endingOf(f).reason;
}

/**
 * The reason of an ending and the known failure in its log tail, from one scan: the reason quotes the remedy and
 * the agent reports the failure's code beside it (verdict.ts), so both must come from the same verdict.
 */
export function endingOf(f: EndingFacts): { reason: string | undefined; known: KnownFailure | undefined } {
  const known = f.exitCode === 0 ? undefined : knownFailure(f.logTail);
  return { reason: reasonOf(f, known), known };
}

function reasonOf(f: EndingFacts, known: KnownFailure | undefined): string | undefined {
  if (f.spawnError !== undefined) {
    const cmd = f.command ?? "command";
    if (f.spawnError.code === "ENOENT") return `command not found: ${cmd}`;
    if (f.spawnError.code === "EACCES") return `permission denied: ${cmd} (not executable?)`;
    return `could not start ${cmd}: ${f.spawnError.code ?? f.spawnError.message}`;
  }
  if (f.killedAfterGrace)
    return `killed: did not exit within the ${f.graceSeconds ?? "?"} s grace period after ${f.terminationReason ?? "SIGTERM"}`;
  if (f.exitCode === 0 && f.signal === null) return undefined;
  if (f.signal === "SIGKILL" || (f.exitCode === 137 && f.signal === null)) return "killed (out of memory?)";

  const traceback = lastTracebackLine(f.logTail);
  if (known !== undefined) return `${known.remedy} (${traceback ?? `exit ${f.exitCode}`})`;
  if (traceback !== undefined) return traceback;
  const nccl = findLast(f.logTail, (l) => NCCL.test(l));
  if (nccl !== undefined) return `NCCL error: ${nccl.trim()}`;
  const cuda = findLast(f.logTail, (l) => CUDA.test(l));
  if (cuda !== undefined) return `CUDA error: ${cuda.trim()}`;
  if (f.exitCode === 127) {
    const line = findLast(f.logTail, (l) => NOT_FOUND.test(l));
    return line === undefined ? "command not found (exit 127)" : `command not found: ${line.trim()}`;
  }
  if (f.signal !== null) {
    const by = f.terminationReason === undefined ? "" : ` after ${f.terminationReason}`;
    return `terminated by ${f.signal}${by}`;
  }
  if (f.terminationReason !== undefined) return `exited with code ${f.exitCode} after ${f.terminationReason}`;
  return `exited with code ${f.exitCode}`;
}

/**
 * The last line of the most telling Python traceback in the tail: the exception line that follows the last
 * `Traceback (most recent call last):`, or the one before when that last one is torchrun's ChildFailedError.
 */
export function lastTracebackLine(lines: readonly string[]): string | undefined {
  const found: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!(lines[i] as string).includes("Traceback (most recent call last):")) continue;
    let last: string | undefined;
    for (let j = i + 1; j < lines.length; j++) {
      const l = lines[j] as string;
      if (l.includes("Traceback (most recent call last):")) break;
      // The exception line is the first non-indented, non-empty line after the frames (allowing a "[rankN]:" prefix).
      const body = l.replace(/^\[(default)?rank\d+\]:/, "");
      if (body.trim() === "" || /^\s/.test(body)) continue;
      if (/^(During handling|The above exception)/.test(body)) continue;
      last = body.trim();
      break;
    }
    if (last !== undefined) found.push(last);
  }
  if (found.length === 0) return undefined;
  const final = found[found.length - 1] as string;
  if (WRAPPER.test(final) && found.length > 1) return found[found.length - 2];
  return final;
}

function findLast(lines: readonly string[], test: (l: string) => boolean): string | undefined {
  for (let i = lines.length - 1; i >= 0; i--) if (test(lines[i] as string)) return lines[i];
  return undefined;
}
