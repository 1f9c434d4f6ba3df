/**
 * Ctrl-C during a local run: the first SIGINT/SIGTERM stops a dataset upload in flight and sends SIGTERM to every
 * node (each agent then saves its work); a second one kills every node's group at once.
 */
import { count } from "../log/units.ts";
import { killGroup, terminate, type RunningNode } from "./nodes.ts";

export interface Interrupts {
  /** The first signal received, if any. */
  readonly by: NodeJS.Signals | undefined;
  /** A second signal killed the nodes. */
  readonly forced: boolean;
  /** Aborts when the first signal arrives (a dataset upload in flight). */
  readonly signal: AbortSignal;
  /** The nodes a signal reaches from now on. */
  watch(nodes: readonly RunningNode[]): void;
  /** Stops listening. */
  dispose(): void;
}

export function watchInterrupts(signals: Pick<NodeJS.Process, "on" | "off">, say: (text: string) => void): Interrupts {
  let by: NodeJS.Signals | undefined;
  let forced = false;
  let nodes: readonly RunningNode[] = [];
  const setup = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (by !== undefined) {
      forced = true;
      say(`trainer-agent local: ${signal} again, killing every node now`);
      for (const n of nodes) killGroup(n.child, "SIGKILL");
      return;
    }
    by = signal;
    say(`trainer-agent local: ${signal}, stopping ${count(nodes.length, "node")} (send it again to kill them at once)`);
    setup.abort();
    for (const n of nodes) terminate(n);
  };
  signals.on("SIGINT", onSignal);
  signals.on("SIGTERM", onSignal);
  return {
    get by() {
      return by;
    },
    get forced() {
      return forced;
    },
    signal: setup.signal,
    watch(list) {
      nodes = list;
    },
    dispose() {
      signals.off("SIGINT", onSignal);
      signals.off("SIGTERM", onSignal);
    },
  };
}

/** Waits for Ctrl-C (SIGINT or SIGTERM) once the run is over, with the servers still up. */
export function untilStopped(signals: Pick<NodeJS.Process, "on" | "off">): Promise<void> {
  return new Promise<void>((resolveWait) => {
    const stop = (): void => {
      signals.off("SIGINT", stop);
      signals.off("SIGTERM", stop);
      resolveWait();
    };
    signals.on("SIGINT", stop);
    signals.on("SIGTERM", stop);
  });
}
