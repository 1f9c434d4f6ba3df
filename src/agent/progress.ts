/**
 * Training progress, to whoever listens: heartbeats to the callbacks (from epoch reports, plus a liveness beat when
 * the reports are far apart), and the Kubeflow Trainer's status server on node 0 when the Trainer set it up.
 */
import type { AgentConfig } from "../config/index.ts";
import type { EpochReport } from "../contract/report.ts";
import type { CallbackClient } from "../callbacks/client.ts";
import { ProgressTracker, startLiveness } from "../callbacks/progress.ts";
import type { Logger } from "../log/logger.ts";
import type { TrainerStatusReporter } from "../progress/trainer-status.ts";

export interface Progress {
  onEpoch(report: EpochReport): void;
  /** The child runs: durations count from now, and liveness beats start. */
  childStarted(at: number): void;
  /** Stops the liveness beats (idempotent). */
  stop(): void;
  /** For `done`'s final_metrics. */
  finalMetrics(): Record<string, number> | undefined;
  /** The final progress to the Trainer; bounded by its own timeout, never rejects. */
  close(options: { complete: boolean }): Promise<void>;
}

export async function openProgress(input: {
  config: AgentConfig;
  logger: Logger;
  callbacks: CallbackClient | undefined;
  startedAt: number;
}): Promise<Progress> {
  const { config, callbacks } = input;
  const tracker = new ProgressTracker({ nodeRank: config.distributed.nodeRank, startedAt: input.startedAt });
  const trainerStatus = await openTrainerStatus(config, input.logger);
  let liveness: { reset(): void; stop(): void } | undefined;
  return {
    onEpoch(report) {
      const hb = tracker.onEpoch(report);
      if (hb === undefined) return;
      callbacks?.heartbeat(hb);
      trainerStatus?.report(hb);
      liveness?.reset();
    },
    childStarted(at) {
      tracker.markStarted(at);
      if (callbacks !== undefined)
        liveness = startLiveness(config.callbacks.heartbeatIntervalSeconds * 1000, () =>
          callbacks.liveness(tracker.latest()),
        );
    },
    stop: () => liveness?.stop(),
    finalMetrics: () => tracker.finalMetrics(),
    close: async (options) => trainerStatus?.close(options),
  };
}

/** The Trainer's status-server client, on node 0 only (rank 0's reports arrive there), when the Trainer set it up. */
async function openTrainerStatus(config: AgentConfig, logger: Logger): Promise<TrainerStatusReporter | undefined> {
  for (const problem of config.trainerStatusProblems)
    logger.warn({ component: "trainer-status" }, `${problem}; progress is not reported to the Trainer`);
  if (config.trainerStatus === undefined || config.distributed.nodeRank !== 0) return undefined;
  const { createTrainerStatusReporter } = await import("../progress/trainer-status.ts");
  return createTrainerStatusReporter({ config: config.trainerStatus, logger });
}
