/**
 * How a run ends, as a pure function of what happened: the child's result (undefined when it never ran), the
 * agent's own error and whether the agent was told to stop. `runAgent` only carries the answer out.
 */
import type { DoneStatus } from "../contract/callbacks.ts";
import { exitCodeFor, type AgentError } from "../errors/index.ts";
import { exitCodeOfSignal } from "../process/group.ts";
import type { ChildResult } from "../process/supervise.ts";

/** The first SIGTERM/SIGINT the agent got. */
export interface Cancel {
  signal: "SIGTERM" | "SIGINT";
  /** `SIGTERM received`: the reason given to the child and to the backend. */
  reason: string;
  /** The error the preparation was aborted with: recognised by identity, so it is not reported as a failure. */
  error: AgentError;
}

export interface VerdictInput {
  child: ChildResult | undefined;
  error: AgentError | undefined;
  cancel: Cancel | undefined;
}

export interface Verdict {
  exitCode: number;
  status: DoneStatus;
  reason: string | undefined;
  /**
   * How the agent's own error is told: "error" is the one `trainer-agent: CODE: message` line on stderr and an
   * error log; "warn" only a warning log (a failure while stopping before the child ran); undefined when there is
   * none, or it is the cancel itself.
   */
  errorReport: "error" | "warn" | undefined;
  /** The line written last on stderr, so that it is what a person sees at the end of the pod's log. */
  lastLine: string | undefined;
}

export function verdict({ child, error, cancel }: VerdictInput): Verdict {
  if (child === undefined && cancel !== undefined) {
    // Told to stop before the child started: nothing ran, nothing failed.
    return {
      exitCode: exitCodeOfSignal(cancel.signal),
      status: "cancelled",
      reason: `${cancel.reason} before the command started`,
      errorReport: error !== undefined && error !== cancel.error ? "warn" : undefined,
      lastLine: undefined,
    };
  }
  if (error !== undefined) {
    const own = `${error.code}: ${error.message}`;
    return {
      // The child's own failure comes first; an agent failure after a clean child turns it into the agent's code.
      // When the agent ended the child itself (the watchdog), the child's 143/137 is the agent's doing, not news.
      exitCode:
        child !== undefined && child.exitCode !== 0 && error.code !== "STALLED"
          ? child.exitCode
          : exitCodeFor(error.code),
      status: cancel !== undefined ? "cancelled" : "failed",
      reason: child?.reason === undefined ? own : `${child.reason}; ${own}`,
      errorReport: "error",
      lastLine: undefined,
    };
  }
  if (child === undefined) throw new TypeError("verdict: neither a child result nor an error");
  const status = cancel !== undefined ? "cancelled" : child.exitCode === 0 ? "succeeded" : "failed";
  const reason =
    cancel !== undefined && child.reason === undefined
      ? `${cancel.reason}; the command exited with code 0`
      : child.reason;
  return { exitCode: child.exitCode, status, reason, errorReport: undefined, lastLine: lastLineOf(child, reason) };
}

/** A command that never started, or a failure with a known remedy, gets the one line agent failures get. */
function lastLineOf(child: ChildResult, reason: string | undefined): string | undefined {
  if (reason === undefined) return undefined;
  if (child.spawnFailed) return `trainer-agent: CHILD_SPAWN_FAILED: ${reason}`;
  if (child.known !== undefined) return `trainer-agent: ${child.known.code}: ${reason}`;
  return undefined;
}
