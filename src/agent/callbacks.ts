/** The run's callback client, when the backend is configured (BACKEND_BASE_URL and JOB_ID). */
import type { AgentConfig } from "../config/index.ts";
import type { StoredCheckpoint } from "../contract/callbacks.ts";
import type { CallbackClient, RunNumber } from "../callbacks/client.ts";
import type { ChildResult } from "../process/supervise.ts";
import type { Logger } from "../log/logger.ts";
import type { TraceContext } from "../log/trace.ts";
import type { Verdict } from "./verdict.ts";

export async function openCallbacks(
  config: AgentConfig,
  trace: TraceContext,
  logger: Logger,
  /** False for the `done` of a run that never started (bad configuration): it claims no run number. */
  claimRun = true,
): Promise<CallbackClient | undefined> {
  if (config.callbacks.baseUrl === undefined || config.jobId === undefined) return undefined;
  const { createCallbackClient } = await import("../callbacks/client.ts");
  let run: RunNumber = { attempt: config.restartAttempt, containerRestart: 0 };
  if (claimRun) {
    const { claimRunNumber } = await import("./run-number.ts");
    const claimed = await claimRunNumber({
      jobId: config.jobId,
      attempt: config.restartAttempt,
      checkpointDir: config.storage.checkpointDir,
      nodeRank: config.distributed.nodeRank,
    });
    run = claimed.run;
    if (claimed.error !== undefined)
      logger.debug({ err: claimed.error }, "no run marker in CHECKPOINT_DIR; container restarts are not counted");
    // Debug only: a stale marker on a developer's machine must not add lines to every run's output.
    if (run.attempt > 0 || run.containerRestart > 0)
      logger.debug(
        { attempt: run.attempt, container_restart: run.containerRestart },
        "this run is a restart of the job",
      );
  }
  return createCallbackClient({
    config: config.callbacks,
    jobId: config.jobId,
    run,
    traceId: trace.traceId,
    traceparent: trace.traceparent,
    logger,
  });
}

/** The run's last callback, then the client closed (its deliveries drained within DONE_DEADLINE_SECONDS). */
export async function postDone(
  callbacks: CallbackClient,
  run: {
    config: AgentConfig;
    verdict: Verdict;
    child: ChildResult | undefined;
    finalMetrics: Record<string, number> | undefined;
    checkpoints: StoredCheckpoint[];
    /** A predict run's stored predictions (undefined in a training run). */
    predictions?: StoredCheckpoint[] | undefined;
    startedAt: number;
  },
): Promise<void> {
  const { config, verdict, finalMetrics } = run;
  const logTail = run.child?.logTail.join("\n");
  await callbacks.done({
    status: verdict.status,
    exit_code: verdict.exitCode,
    ...(verdict.reason !== undefined && { reason: verdict.reason }),
    ...(logTail !== undefined && logTail !== "" && { log_tail: logTail }),
    ...(finalMetrics !== undefined && { final_metrics: finalMetrics }),
    checkpoints: run.checkpoints,
    ...(run.predictions !== undefined && { predictions: run.predictions }),
    duration_seconds: Math.max(0, (Date.now() - run.startedAt) / 1000),
    // A multi-node job ends when every node has succeeded, or at the first failure: the backend needs both.
    ...(config.distributed.nnodes > 1 && {
      node_rank: config.distributed.nodeRank,
      nnodes: config.distributed.nnodes,
    }),
  });
  await callbacks.close();
}
