/**
 * What arrives from outside the run: SIGTERM/SIGINT (the first one cancels: the preparation is aborted, the child
 * is told to stop, the backend gets `terminating`) and the agent's own uncaught errors.
 */
import type { CallbackClient } from "../callbacks/client.ts";
import { AgentError } from "../errors/index.ts";
import type { Logger } from "../log/logger.ts";
import type { Supervised } from "../process/supervise.ts";
import type { Cancel } from "./verdict.ts";

export interface Signals {
  /** The first SIGTERM/SIGINT, once one came (a call: it changes while the run awaits). */
  cancel(): Cancel | undefined;
  /** Aborted with `cancel.error` at the first signal: termination before the child runs stops the preparation. */
  readonly prepared: AbortSignal;
  /** Signals from now on are forwarded to this child as well. */
  forwardTo(child: Supervised): void;
  dispose(): void;
}

export function watchSignals(input: {
  log: Logger;
  graceSeconds: number;
  callbacks: CallbackClient | undefined;
}): Signals {
  const { log, graceSeconds, callbacks } = input;
  const prep = new AbortController();
  let cancel: Cancel | undefined;
  let child: Supervised | undefined;
  const onSignal = (signal: "SIGTERM" | "SIGINT") => () => {
    const reason = `${signal} received`;
    if (cancel === undefined) {
      cancel = { signal, reason, error: new AgentError("INTERNAL", reason) };
      log.warn({ signal }, `${signal} received: stopping the training (grace ${graceSeconds} s)`);
      callbacks?.event("terminating", reason, { signal, grace_seconds: graceSeconds });
      prep.abort(cancel.error);
    }
    child?.terminate(signal, reason);
  };
  const onTerm = onSignal("SIGTERM");
  const onInt = onSignal("SIGINT");
  // A bug in the agent (or a plugin's callback) must not kill the relay: without it the child's next write
  // fails with EPIPE and hours of training end without their last checkpoint. Log it and keep supervising.
  let internalErrors = 0;
  const onCrash = (error: unknown): void => {
    if (internalErrors++ < 10)
      log.error({ code: "INTERNAL", err: error }, "agent internal error; supervising the training goes on");
  };
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onInt);
  process.on("uncaughtException", onCrash);
  process.on("unhandledRejection", onCrash);
  return {
    cancel: () => cancel,
    prepared: prep.signal,
    forwardTo(c) {
      child = c;
    },
    dispose() {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      process.off("uncaughtException", onCrash);
      process.off("unhandledRejection", onCrash);
    },
  };
}
