/**
 * The hung-rank watchdog. What costs most on a GPU cluster is a job that neither fails nor progresses: one rank
 * stuck in a collective while the others wait in it too, every GPU busy until someone looks. The agent watches its
 * own child: any output or `::trainer::` report is progress; quiet for longer than the limit is a stall, reported
 * once (event `stalled`) and once more if progress resumes (event `recovered`). With STALL_ACTION=terminate the
 * agent ends the job itself: the checkpoints already on disk are uploaded first (a child stuck in a collective
 * cannot run its own SIGTERM handler, so the agent's sync is what keeps the work), then the child's process group
 * gets the termination protocol and the run exits with STALLED (75), for the restart policy to act on.
 *
 * Which nodes watch: with STALL_SECONDS=auto only node 0, where rank 0's reports arrive (the other ranks of a
 * typical script print nothing for a whole training); with a fixed STALL_SECONDS every node watches its own child.
 */
import type { AgentConfig } from "../config/index.ts";
import type { CallbackClient } from "../callbacks/client.ts";
import { AgentError } from "../errors/index.ts";
import type { Logger } from "../log/logger.ts";
import type { Supervised } from "../process/supervise.ts";

/** STALL_SECONDS=auto: the limit is this many times the longest epoch seen... */
export const STALL_EPOCH_FACTOR = 3;
/** ...but never under this floor (a checkpoint save or an evaluation pass may be slower than an epoch), s... */
export const STALL_FLOOR_SECONDS = 300;
/** ...and this before the first epoch report (start-up: imports, data loading, rendezvous, compilation), s. */
export const STALL_FIRST_EPOCH_SECONDS = 1800;

/** The quiet time that is a stall, seconds: a fixed STALL_SECONDS, or derived from the longest epoch seen. */
export function stallLimitSeconds(seconds: number | "auto", longestEpochSeconds: number | undefined): number {
  if (seconds !== "auto") return seconds;
  if (longestEpochSeconds === undefined) return STALL_FIRST_EPOCH_SECONDS;
  return Math.max(STALL_FLOOR_SECONDS, STALL_EPOCH_FACTOR * longestEpochSeconds);
}

export interface Watchdog {
  /** The child printed or reported something. Called per output chunk, so it only notes the time. */
  activity(): void;
  /**
   * The relay paused the child's output for a slow reader of the agent's own stdout (true) or resumed it (false).
   * While paused the child blocks writing: that quiet is the reader's, not a hung rank's, so the clock holds.
   */
  relayPaused(paused: boolean): void;
  /** An epoch report: a new epoch number ends the previous epoch, whose length feeds the derived limit. */
  epoch(epoch: number): void;
  /** Starts the clock on the running child (the one the action terminates). */
  watch(child: Supervised): void;
  /** Stops the clock (idempotent); an action in progress completes. */
  stop(): void;
  /** Resolves once a started action has done its part (the checkpoint sync and the signal); at once otherwise. */
  settled(): Promise<void>;
  /** The STALLED error once the watchdog ended the child; undefined otherwise. */
  ended(): AgentError | undefined;
}

/** The node's watchdog, or undefined when this node does not watch (STALL_SECONDS=off, or auto on a node > 0). */
export function createWatchdog(input: {
  config: AgentConfig;
  log: Logger;
  callbacks: CallbackClient | undefined;
  /** Uploads what is on disk and in flight, bounded; undefined without storage. */
  keepWork: (() => Promise<void>) | undefined;
  /** True once the agent was told to stop: a child going quiet during its own termination is no stall. */
  cancelled: () => boolean;
  now?: () => number;
}): Watchdog | undefined {
  const { config, log, callbacks } = input;
  const { seconds, action } = config.stall;
  const nodeRank = config.distributed.nodeRank;
  if (seconds === "off" || (seconds === "auto" && nodeRank !== 0)) return undefined;
  const now = input.now ?? Date.now;

  let child: Supervised | undefined;
  let last = now();
  let epochStartedAt = last;
  let lastEpoch: number | undefined;
  let longestEpochMs: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stalledSince: number | undefined;
  let stopped = false;
  let held = false;
  let ended: AgentError | undefined;
  let acting: Promise<void> = Promise.resolve();

  const limitMs = (): number =>
    stallLimitSeconds(seconds, longestEpochMs === undefined ? undefined : longestEpochMs / 1000) * 1000;
  const facts = (quietMs: number): Record<string, unknown> => ({
    node_rank: nodeRank,
    quiet_seconds: Math.round(quietMs / 100) / 10,
    stall_seconds: Math.round(limitMs() / 100) / 10,
    limit: seconds === "auto" ? "auto" : "STALL_SECONDS",
    action,
    ...(lastEpoch !== undefined && { last_epoch: lastEpoch }),
  });

  const arm = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (stopped || stalledSince !== undefined || child === undefined) return;
    const quiet = now() - last;
    const limit = limitMs();
    if (held) last = now(); // checked again a full limit after the relay resumes
    if (held || quiet < limit) {
      timer = setTimeout(arm, held ? limit : limit - quiet);
      timer.unref();
      return;
    }
    if (input.cancelled()) return;
    stalledSince = last;
    acting = onStall(quiet, child);
  };

  const onStall = async (quietMs: number, running: Supervised): Promise<void> => {
    const data = facts(quietMs);
    const message =
      `no output or report from node ${nodeRank}'s command for ${data.quiet_seconds as number} s` +
      ` (stall limit ${data.stall_seconds as number} s${seconds === "auto" ? ", STALL_SECONDS=auto" : ""})`;
    log.warn(data, `stalled: ${message}`);
    callbacks?.event("stalled", message, data);
    if (action !== "terminate") return;
    ended = new AgentError("STALLED", message, { details: data });
    try {
      await input.keepWork?.();
    } catch (error) {
      log.error({ err: error }, "saving the checkpoints before ending the stalled command failed");
    }
    log.warn("ending the stalled command (STALL_ACTION=terminate)");
    running.terminate("SIGTERM", "STALL_ACTION=terminate");
  };

  return {
    activity() {
      last = now();
      if (stalledSince === undefined || stopped || ended !== undefined) return;
      const quietMs = last - stalledSince;
      stalledSince = undefined;
      const data = facts(quietMs);
      log.info(data, "progress resumed after a stall");
      callbacks?.event(
        "recovered",
        `node ${nodeRank}'s command made progress again after ${data.quiet_seconds as number} s`,
        data,
      );
      arm();
    },
    relayPaused(paused) {
      held = paused;
      // The pause's own quiet does not count, from either end.
      last = now();
      arm();
    },
    epoch(epoch) {
      if (epoch === lastEpoch) return;
      const at = now();
      // The first epoch counts from the child's start: slower than the others, so the limit errs long.
      longestEpochMs = Math.max(longestEpochMs ?? 0, at - epochStartedAt);
      epochStartedAt = at;
      lastEpoch = epoch;
      // The limit changed (before the first epoch it was the long start-up one): the pending check moves.
      arm();
    },
    watch(running) {
      child = running;
      last = now();
      epochStartedAt = last;
      arm();
    },
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
    settled: () => acting,
    ended: () => ended,
  };
}
