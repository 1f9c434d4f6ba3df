/**
 * `trainer-agent run`: the whole life of a training pod's command, told in order below. Its parts live beside it:
 * signals.ts (SIGTERM/SIGINT, crash guard), callbacks.ts, progress.ts (heartbeats, the Trainer's status),
 * launch.ts (plugin), storage.ts (restore, dataset, checkpoint sync), child-env.ts (the child's environment, one
 * precedence order), report-router.ts (reports from the child), watchdog.ts (a child that stopped progressing),
 * child.ts, verdict.ts (exit code, status, reason); src/mlflow (the run mirrored to MLflow, when
 * MLFLOW_TRACKING_URI is set).
 *
 * The exit code is the child's (or 128+signal) when it ran; an agent-own failure (bad configuration, dataset
 * unavailable, final checkpoint upload failed) exits with the code of src/errors/exit-codes.ts, after a one-line
 * reason on stderr and a `done` with status failed. Callbacks never fail or slow the training.
 */
import {
  loadAgentConfig,
  secretValues,
  storageWanted,
  type AgentConfig,
  type Env,
  type RunMode,
} from "../config/index.ts";
import { AgentError } from "../errors/index.ts";
import { createLogger } from "../log/logger.ts";
import { resolveTrace } from "../log/trace.ts";
import type { AgentMlflow } from "../mlflow/index.ts";
import type { FetchedCode } from "../git/fetch.ts";
import type { ChildResult } from "../process/supervise.ts";
import type { Storage } from "../storage/types.ts";
import type { StoredCheckpoint } from "../contract/callbacks.ts";
import { openCallbacks, postDone } from "./callbacks.ts";
import { runChild } from "./child.ts";
import { codeChildEnv, prepareCode } from "./code.ts";
import { childEnv } from "./child-env.ts";
import { toAgentError } from "./errors.ts";
import { failEarly } from "./fail-early.ts";
import { planLaunch } from "./launch.ts";
import { prepareModel, uploadPredictions, type PreparedModel } from "./predict.ts";
import { openProgress } from "./progress.ts";
import { routeReports } from "./report-router.ts";
import { watchSignals } from "./signals.ts";
import { createWatchdog, type Watchdog } from "./watchdog.ts";
import { finalSync, openStorage, prepareStorage, type PreparedStorage } from "./storage.ts";
import { verdict } from "./verdict.ts";

export interface RunOptions {
  framework?: string | undefined;
  plugin?: string | undefined;
  /** `--nproc-per-node`: overrides PET_NPROC_PER_NODE (validated like it). */
  nprocPerNode?: string | undefined;
  /** `--mode`: train (default) or predict (./predict.ts: a model in, predictions out). */
  mode?: RunMode | undefined;
}

export interface RunDeps {
  env: Env;
  /** Where a `--plugin` path is resolved and the child runs (the process's own by default). */
  cwd?: string;
}

/** Runs the agent to the end; resolves with the process exit code. Never rejects. */
export async function runAgent(argv: readonly string[], options: RunOptions, deps: RunDeps): Promise<number> {
  const startedAt = Date.now();
  const env: Env =
    options.nprocPerNode === undefined ? deps.env : { ...deps.env, PET_NPROC_PER_NODE: options.nprocPerNode };

  // 1. Configuration; what fails here has no logger yet.
  let config: AgentConfig;
  try {
    if (argv.length === 0)
      throw new AgentError("USAGE", "no command given: trainer-agent run [options] -- CMD [ARGS...]");
    config = loadAgentConfig(env, { mode: options.mode });
  } catch (error) {
    return failEarly(error, env, startedAt);
  }
  const trace = resolveTrace(config);
  const logger = await createLogger({
    level: config.logLevel,
    traceId: trace.traceId,
    jobId: config.jobId,
    nodeRank: config.distributed.nodeRank,
    base: { name: "trainer-agent" },
  });
  const log = logger.child({ component: "agent" });
  const callbacks = await openCallbacks(config, trace, logger);
  // What the child prints reaches the backend (done's log_tail and reason, its events): the secret values the agent
  // holds are masked there. The relay to the pod log stays byte-exact: that is the child's own output.
  const secrets = secretValues(config);
  const progress = await openProgress({ config, logger, callbacks, startedAt });
  // 2. From here on, SIGTERM/SIGINT cancels: the preparation is aborted, the child told to stop.
  const signals = watchSignals({ log, graceSeconds: config.terminationGraceSeconds, callbacks });

  let storage: (Storage & { close?(): void }) | undefined;
  let stored: PreparedStorage | undefined;
  let model: PreparedModel | undefined;
  let predictions: StoredCheckpoint[] | undefined;
  let child: ChildResult | undefined;
  let code: FetchedCode | undefined;
  let error: AgentError | undefined;
  let watchdog: Watchdog | undefined;
  let mlflow: AgentMlflow | undefined;
  try {
    // 3. Plugin: the distributed environment and the launch command.
    const cwd = deps.cwd ?? process.cwd();
    const launch = await planLaunch({ config, trace, argv, framework: options.framework, plugin: options.plugin, cwd });
    callbacks?.event("started", undefined, {
      ...launch.started,
      ...(config.mode === "predict" && { mode: "predict" }),
    });
    if (config.mlflow !== undefined || config.mlflowNote !== undefined) {
      const { openMlflow } = await import("../mlflow/index.ts");
      mlflow = openMlflow({ config, logger, traceId: trace.traceId, framework: launch.plugin.name, startedAt });
    }

    // 3b. Code from git, when asked: before the storage, so a bad revision fails before a dataset pull.
    code = await prepareCode({ config, log, callbacks, secrets, signal: signals.prepared });

    // 4. Storage: restore and pull, then watch CHECKPOINT_DIR (a predict run: the model and the dataset).
    if (storageWanted(config.storage)) {
      storage = await openStorage(config, logger, log);
      if (config.mode === "predict")
        model = await prepareModel({ config, storage, log, callbacks, signal: signals.prepared });
      else stored = await prepareStorage({ storage, log, callbacks, signal: signals.prepared });
    }

    // 5. The child, unless told to stop already; the watchdog reports (and may end) a child that went quiet.
    const kept = stored;
    watchdog = createWatchdog({
      config,
      log: logger.child({ component: "watchdog" }),
      callbacks,
      keepWork: kept === undefined ? undefined : () => finalSync(kept, config, true),
      cancelled: () => signals.cancel() !== undefined,
    });
    if (signals.cancel() === undefined)
      child = await runChild({
        config,
        logger,
        log,
        argv: launch.argv,
        env: {
          ...childEnv({
            config,
            trace,
            translated: launch.translated,
            resumeFrom: stored?.resumeFrom,
            modelPath: model?.modelPath,
          }),
          ...codeChildEnv(code),
        },
        cwd: code?.workdir ?? deps.cwd,
        router: routeReports({
          log,
          secrets,
          callbacks,
          progress,
          sync: stored?.sync,
          plugin: launch.plugin,
          watchdog,
          mirror: mlflow,
        }),
        signals,
        callbacks,
        progress,
        watchdog,
        secrets,
      });

    // 6. Whatever happened to the child, keep its work.
    const stopping = signals.cancel() !== undefined || watchdog?.ended() !== undefined;
    if (stored !== undefined) await finalSync(stored, config, stopping);
    // A predict run's output counts only from a clean exit: a failed run's partial files would look complete.
    if (model !== undefined && storage !== undefined && child?.exitCode === 0 && !stopping)
      predictions = await uploadPredictions(storage, config, log, callbacks, false);
  } catch (thrown) {
    error = toAgentError(thrown, signals.cancel());
  } finally {
    progress.stop();
    watchdog?.stop();
    signals.dispose();
  }
  // The watchdog ended the child: that is the run's ending, whatever else failed after it.
  const stalled = watchdog?.ended();
  if (stalled !== undefined)
    error =
      error === undefined
        ? stalled
        : new AgentError("STALLED", `${stalled.message}; then ${error.code}: ${error.message}`, {
            cause: error,
            details: stalled.details ?? {},
          });

  // 7. The verdict, told: stderr and the log, the Trainer, `done`, and the last line.
  const v = verdict({ child, error, cancel: signals.cancel() });
  if (error !== undefined && v.errorReport === "warn")
    log.warn({ code: error.code, err: error.cause ?? error }, error.message);
  if (error !== undefined && v.errorReport === "error") {
    process.stderr.write(`trainer-agent: ${error.code}: ${error.message}\n`);
    log.error({ code: error.code, err: error.cause ?? error }, error.message);
  }
  if (stored !== undefined) await stored.sync.close().catch(() => undefined);
  storage?.close?.();
  // The final progress to the Trainer and the MLflow run's end go alongside `done`, each bounded on its own.
  const progressClosed = progress.close({ complete: v.status === "succeeded" });
  const checkpoints = stored?.checkpoints ?? [];
  const mlflowClosed = mlflow?.close({ status: v.status, exitCode: v.exitCode, checkpoints });
  if (callbacks !== undefined) {
    await postDone(callbacks, {
      config,
      verdict: v,
      child,
      finalMetrics: progress.finalMetrics(),
      checkpoints,
      // A predict run always says what it stored, nothing included: the backend tells the two kinds apart by it.
      predictions: config.mode === "predict" ? (predictions ?? []) : undefined,
      startedAt,
    });
  }
  await progressClosed;
  await mlflowClosed;
  log.info(
    { status: v.status, exit_code: v.exitCode, duration_seconds: (Date.now() - startedAt) / 1000 },
    "agent done",
  );
  if (v.lastLine !== undefined) process.stderr.write(`${v.lastLine}\n`);
  return v.exitCode;
}
