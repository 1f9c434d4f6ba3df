/**
 * `trainer-agent run`: the whole life of a training pod's command.
 *
 *   config -> logger -> callbacks -> plugin (env, launch argv) -> event started
 *   -> [storage] restore latest checkpoint + pull dataset (in parallel) -> start checkpoint sync
 *   -> spawn the child (own process group), relay its output, turn reports into heartbeats/events/uploads
 *   -> on SIGTERM/SIGINT: event terminating, forward to the group, grace, SIGKILL
 *   -> after the child exits: final checkpoint sync -> done -> exit code
 *
 * The exit code is the child's (or 128+signal) when it ran; an agent-own failure (bad configuration, dataset
 * unavailable, final checkpoint upload failed) exits with the code of src/errors/exit-codes.ts, after a one-line
 * reason on stderr and a `done` with status failed. Callbacks never fail or slow the training.
 */
import type { SpawnOptions, ChildProcess } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import type { Writable } from "node:stream";
import type { DestinationStream } from "pino";
import {
  loadAgentConfig,
  maskSecrets,
  maskSecretsDeep,
  secretList,
  secretValues,
  type AgentConfig,
  type Env,
} from "../config/index.ts";
import type { DoneStatus, StoredCheckpoint } from "../contract/callbacks.ts";
import type { Report } from "../contract/report.ts";
import { AgentError, exitCodeFor, isAgentError } from "../errors/index.ts";
import type { CallbackClient, RunNumber } from "../callbacks/client.ts";
import type { Transport } from "../callbacks/transport.ts";
import { ProgressTracker, startLiveness } from "../callbacks/progress.ts";
import { createLogger, type Logger } from "../log/logger.ts";
import { significant } from "../log/units.ts";
import { resolveTrace, type TraceContext } from "../log/trace.ts";
import { commonChildEnv } from "../env/common.ts";
import { exitCodeOfSignal, supervise, type ChildResult, type Supervised } from "../process/supervise.ts";
import type { CheckpointSync, Storage } from "../storage/types.ts";
import type { PluginContext, TrainerPlugin } from "../plugins/types.ts";
import type { ResolvePluginOptions } from "../plugins/resolve.ts";
import type { TrainerStatusReporter } from "../progress/trainer-status.ts";

export interface RunOptions {
  framework?: string | undefined;
  plugin?: string | undefined;
  /** `--nproc-per-node`: overrides PET_NPROC_PER_NODE (validated like it). */
  nprocPerNode?: string | undefined;
}

export interface RunDeps {
  env: Env;
  cwd?: string;
  stdout?: Writable;
  stderr?: Writable;
  /** Where SIGTERM/SIGINT and uncaught errors arrive (the process by default). */
  signals?: Pick<NodeJS.Process, "on" | "off">;
  /** Where agent log lines go (fd 2 by default). */
  logDestination?: DestinationStream;
  resolvePlugin?: (options: ResolvePluginOptions) => Promise<TrainerPlugin>;
  createStorage?: (config: AgentConfig, deps: { logger: Logger }) => Promise<Storage & { close?(): void }>;
  spawn?: (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;
  transport?: Transport;
  now?: () => number;
  /** Least time between two posts to the Trainer's status server, ms (default 5000). */
  trainerStatusIntervalMs?: number;
}

/** Variables the child never sees: the callback JWT is the agent's, not the training script's. */
const STRIPPED_FROM_CHILD = ["CALLBACK_TOKEN"];

/** Runs the agent to the end; resolves with the process exit code. Never rejects. */
export async function runAgent(argv: readonly string[], options: RunOptions, deps: RunDeps): Promise<number> {
  const now = deps.now ?? Date.now;
  const startedAt = now();
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const signals = deps.signals ?? process;
  const env: Env =
    options.nprocPerNode === undefined ? deps.env : { ...deps.env, PET_NPROC_PER_NODE: options.nprocPerNode };

  let config: AgentConfig;
  try {
    if (argv.length === 0)
      throw new AgentError("USAGE", "no command given: trainer-agent run [options] -- CMD [ARGS...]");
    config = loadAgentConfig(env);
  } catch (error) {
    return failEarly(error, env, stderr, deps, startedAt);
  }

  const trace = resolveTrace({ traceId: config.traceId, traceparent: config.traceparent });
  const logger = await createLogger({
    level: config.logLevel,
    traceId: trace.traceId,
    jobId: config.jobId,
    nodeRank: config.distributed.nodeRank,
    base: { name: "trainer-agent" },
    ...(deps.logDestination !== undefined && { destination: deps.logDestination }),
  });
  const log = logger.child({ component: "agent" });
  const callbacks = await openCallbacks(config, trace, logger, deps);
  // What the child prints reaches the backend (done's log_tail and reason, its events): the secret values the agent
  // holds are masked there. The relay to the pod log stays byte-exact: that is the child's own output.
  let secrets = secretValues(config);
  const tracker = new ProgressTracker({ nodeRank: config.distributed.nodeRank, now, startedAt });
  const trainerStatus = await openTrainerStatus(config, logger, deps);

  // Termination can arrive at any point: before the child runs it aborts the preparation.
  const prep = new AbortController();
  let cancelReason: string | undefined;
  let cancelSignal: NodeJS.Signals | undefined;
  let child: Supervised | undefined;
  const onSignal = (signal: "SIGTERM" | "SIGINT") => () => {
    const reason = `${signal} received`;
    if (cancelReason === undefined) {
      cancelReason = reason;
      cancelSignal = signal;
      log.warn({ signal }, `${signal} received: stopping the training (grace ${config.terminationGraceSeconds} s)`);
      callbacks?.event("terminating", reason, { signal, grace_seconds: config.terminationGraceSeconds });
      prep.abort(new AgentError("INTERNAL", reason));
    }
    child?.terminate(signal, reason);
  };
  const onTerm = onSignal("SIGTERM");
  const onInt = onSignal("SIGINT");
  signals.on("SIGTERM", onTerm);
  signals.on("SIGINT", onInt);
  // A bug in the agent (or a plugin's callback) must not kill the relay: without it the child's next write
  // fails with EPIPE and hours of training end without their last checkpoint. Log it and keep supervising.
  let internalErrors = 0;
  const onCrash = (error: unknown): void => {
    if (internalErrors++ < 10)
      log.error({ code: "INTERNAL", err: error }, "agent internal error; supervising the training goes on");
  };
  signals.on("uncaughtException", onCrash);
  signals.on("unhandledRejection", onCrash);

  let sync: CheckpointSync | undefined;
  let storage: (Storage & { close?(): void }) | undefined;
  let liveness: { reset(): void; stop(): void } | undefined;
  let result: ChildResult | undefined;
  let agentError: AgentError | undefined;
  let checkpoints: StoredCheckpoint[] = [];
  try {
    // 1. Plugin: the distributed environment and the launch command.
    const resolve = deps.resolvePlugin ?? (await import("../plugins/resolve.ts")).resolvePlugin;
    const plugin = await resolve({
      framework: options.framework,
      plugin: options.plugin,
      cwd: deps.cwd ?? process.cwd(),
    });
    const common = commonChildEnv(config, trace.traceId);
    const ctx: PluginContext = { config, env: common, nodeRank: config.distributed.nodeRank, argv };
    const translated = plugin.env === undefined ? {} : await plugin.env(ctx);
    const launchCtx: PluginContext = { ...ctx, env: { ...common, ...translated } };
    const launch = plugin.command === undefined ? { argv } : await plugin.command(argv, launchCtx);
    callbacks?.event("started", undefined, {
      framework: plugin.name,
      command: launch.argv[0],
      node_rank: config.distributed.nodeRank,
      nnodes: config.distributed.nnodes,
      ...(worldSize(translated, config) !== undefined && { world_size: worldSize(translated, config) }),
    });

    // 2. Storage: restore and pull in parallel, then watch CHECKPOINT_DIR. The watched folder exists before anything
    // runs, as a training script expects on a fresh pod (a read-only mount is the script's to report, not ours).
    const extraEnv: Record<string, string> = {};
    if (config.storage.type !== undefined) {
      await mkdir(config.storage.checkpointDir, { recursive: true }).catch((error: unknown) =>
        log.warn({ dir: config.storage.checkpointDir, err: messageOf(error) }, "cannot create CHECKPOINT_DIR"),
      );
      storage = await openStorage(config, logger, deps);
      const [restored, dataset] = await Promise.all([
        storage.restoreLatestCheckpoint({ signal: prep.signal }),
        storage.pullDataset({ signal: prep.signal }),
      ]);
      if (restored !== null) {
        extraEnv.RESUME_FROM = restored.path;
        log.debug({ key: restored.key, path: restored.path, bytes: restored.bytes }, "RESUME_FROM set");
        callbacks?.event("checkpoint_restored", restored.key, {
          key: restored.key,
          path: restored.path,
          bytes: restored.bytes,
          files: restored.files,
        });
      }
      if (dataset !== null) {
        const mbPerS = dataset.seconds > 0 ? dataset.bytes / 1e6 / dataset.seconds : undefined;
        log.info(
          { source: dataset.source, bytes: dataset.bytes, files: dataset.files, seconds: dataset.seconds },
          "dataset ready",
        );
        callbacks?.event("dataset_ready", dataset.source, {
          source: dataset.source,
          dir: dataset.dir,
          bytes: dataset.bytes,
          files: dataset.files,
          seconds: dataset.seconds,
          skipped: dataset.skipped,
          ...(mbPerS !== undefined && { mb_per_s: significant(mbPerS) }),
        });
      }
      sync = storage.startCheckpointSync({
        onUploaded: (c) => {
          checkpoints.push(c);
          callbacks?.event("checkpoint_uploaded", c.key, { key: c.key, bytes: c.bytes });
        },
      });
    }

    if (cancelReason === undefined) {
      // 3. The child.
      const childEnv: Record<string, string> = { ...config.baseEnv };
      for (const name of STRIPPED_FROM_CHILD) delete childEnv[name];
      Object.assign(childEnv, common, translated, extraEnv, { TRACEPARENT: trace.traceparent, ASTRAGO_AGENT: "1" });
      let reportFailures = 0;
      const onReport = (report: Report): void => {
        // Reports run inside the relay: whatever goes wrong handling one must not stop the output.
        try {
          handleReport(report);
        } catch (error) {
          if (reportFailures++ === 0) log.warn({ err: error, kind: report.kind }, "handling a report failed");
        }
      };
      const handleReport = (report: Report): void => {
        if (report.kind === "epoch") {
          const hb = tracker.onEpoch(report);
          if (hb !== undefined) {
            callbacks?.heartbeat(hb);
            trainerStatus?.report(hb);
            liveness?.reset();
          }
        } else if (report.kind === "checkpoint") {
          log.debug({ path: report.path, rank: report.rank }, "checkpoint reported");
          sync?.notify(report.path);
        } else {
          const data = { ...report.data, ...(report.rank !== undefined && { rank: report.rank }) };
          callbacks?.event(
            report.type,
            report.message === undefined ? undefined : maskSecrets(report.message, secrets),
            Object.keys(data).length > 0 ? (maskSecretsDeep(data, secrets) as Record<string, unknown>) : undefined,
          );
        }
      };
      const parseLine = plugin.parseLine?.bind(plugin);
      let parseLineFailures = 0;
      log.debug({ argv: launch.argv.length, uptime_ms: Math.round(performance.now()) }, "spawning the child");
      child = supervise({
        argv: launch.argv,
        env: childEnv,
        ...(deps.cwd !== undefined && { cwd: deps.cwd }),
        stdout,
        stderr,
        logger: logger.child({ component: "process" }),
        onReport,
        onLine:
          parseLine === undefined
            ? undefined
            : (line, source) => {
                // A plugin bug must not take the relay (and the training's output) down with it.
                try {
                  for (const r of parseLine(line, { stream: source }) ?? []) onReport(r);
                } catch (error) {
                  if (parseLineFailures++ === 0)
                    log.warn(
                      { plugin: plugin.name, err: error },
                      "plugin parseLine failed; further failures are silent",
                    );
                }
              },
        tailLines: config.logTailLines,
        graceSeconds: config.terminationGraceSeconds,
        ...(deps.spawn !== undefined && { spawn: deps.spawn }),
        now,
      });
      await child.started;
      tracker.markStarted(now());
      // Deliveries start once the child runs: the HTTP stack loads off the start-up path.
      callbacks?.start();
      if (callbacks !== undefined)
        liveness = startLiveness(config.callbacks.heartbeatIntervalSeconds * 1000, () =>
          callbacks.liveness(tracker.latest()),
        );
      if (cancelReason !== undefined) child.terminate("SIGTERM", cancelReason);
      const ended = await child.result;
      // The token file is read now: it may have been rotated since the start.
      const fileToken = await readTokenFile(config.callbacks.tokenFile);
      if (fileToken !== undefined) secrets = secretList([...secrets, fileToken]);
      result = {
        ...ended,
        reason: ended.reason === undefined ? undefined : maskSecrets(ended.reason, secrets),
        logTail: ended.logTail.map((line) => maskSecrets(line, secrets)),
      };
      liveness?.stop();
      if (result.spawnFailed) log.error({ reason: result.reason }, "the command could not be started");
      else log.info({ exit_code: result.exitCode, signal: result.signal, reason: result.reason }, "child exited");
    }

    // 4. Whatever happened to the child, keep its work.
    if (sync !== undefined) {
      // Bounded, so an unreachable store cannot eat the pod's whole grace period and leave no `done` behind.
      const [seconds, variable] =
        cancelReason === undefined
          ? [config.finalSyncTimeoutSeconds, "FINAL_SYNC_TIMEOUT_SECONDS"]
          : [config.terminationSyncSeconds, "TERMINATION_SYNC_SECONDS"];
      const deadline = AbortSignal.timeout(seconds * 1000);
      try {
        checkpoints = await sync.finalSync(deadline);
      } catch (error) {
        const stored = isAgentError(error) ? error.details?.stored : undefined;
        if (Array.isArray(stored)) checkpoints = stored as StoredCheckpoint[]; // done still lists what made it
        if (deadline.aborted)
          throw new AgentError(
            "CHECKPOINT_UPLOAD_FAILED",
            `final checkpoint sync did not finish within ${seconds} s (${variable})`,
            { cause: error },
          );
        throw isAgentError(error)
          ? error
          : new AgentError("CHECKPOINT_UPLOAD_FAILED", `final checkpoint upload failed: ${messageOf(error)}`, {
              cause: error,
            });
      }
    }
  } catch (error) {
    agentError = toAgentError(error, cancelReason);
  } finally {
    liveness?.stop();
    signals.off("SIGTERM", onTerm);
    signals.off("SIGINT", onInt);
    signals.off("uncaughtException", onCrash);
    signals.off("unhandledRejection", onCrash);
  }

  // 5. The verdict.
  let exitCode: number;
  let status: DoneStatus;
  let reason: string | undefined;
  if (result === undefined && cancelReason !== undefined) {
    // Told to stop before the child started: nothing ran, nothing failed.
    if (agentError !== undefined && !(agentError.code === "INTERNAL" && agentError.message === cancelReason))
      log.warn({ code: agentError.code, err: agentError.cause ?? agentError }, agentError.message);
    exitCode = exitCodeOfSignal(cancelSignal ?? "SIGTERM");
    reason = `${cancelReason} before the command started`;
    status = "cancelled";
  } else if (agentError !== undefined) {
    stderr.write(`trainer-agent: ${agentError.code}: ${agentError.message}\n`);
    log.error({ code: agentError.code, err: agentError.cause ?? agentError }, agentError.message);
    const own = `${agentError.code}: ${agentError.message}`;
    // The child's own failure comes first; an agent failure after a clean child turns it into the agent's code.
    exitCode = result !== undefined && result.exitCode !== 0 ? result.exitCode : exitCodeFor(agentError.code);
    reason = result?.reason === undefined ? own : `${result.reason}; ${own}`;
    status = cancelReason !== undefined ? "cancelled" : "failed";
  } else {
    const r = result as ChildResult;
    exitCode = r.exitCode;
    reason = r.reason;
    status = cancelReason !== undefined ? "cancelled" : r.exitCode === 0 ? "succeeded" : "failed";
    if (status === "cancelled" && reason === undefined) reason = `${cancelReason}; the command exited with code 0`;
  }
  if (sync !== undefined) await sync.close().catch(() => undefined);
  storage?.close?.();

  // The final progress to the Trainer goes alongside `done`; its own timeout bounds it, and it never throws.
  const trainerStatusClosed = trainerStatus?.close({ complete: status === "succeeded" });
  if (callbacks !== undefined) {
    const finalMetrics = tracker.finalMetrics();
    const logTail = result?.logTail.join("\n");
    await callbacks.done({
      status,
      exit_code: exitCode,
      ...(reason !== undefined && { reason }),
      ...(logTail !== undefined && logTail !== "" && { log_tail: logTail }),
      ...(finalMetrics !== undefined && { final_metrics: finalMetrics }),
      checkpoints,
      duration_seconds: Math.max(0, (now() - startedAt) / 1000),
      // A multi-node job ends when every node has succeeded, or at the first failure: the backend needs both.
      ...(config.distributed.nnodes > 1 && {
        node_rank: config.distributed.nodeRank,
        nnodes: config.distributed.nnodes,
      }),
    });
    await callbacks.close();
  }
  await trainerStatusClosed;
  log.info({ status, exit_code: exitCode, duration_seconds: (now() - startedAt) / 1000 }, "agent done");
  // A command that never started, or a failure with a known remedy, gets the one line agent failures get, last
  // so that it is what a person sees at the end of the pod's log.
  if (agentError === undefined && result !== undefined && reason !== undefined) {
    if (result.spawnFailed) stderr.write(`trainer-agent: CHILD_SPAWN_FAILED: ${reason}\n`);
    else if (result.known !== undefined) stderr.write(`trainer-agent: ${result.known.code}: ${reason}\n`);
  }
  return exitCode;
}

async function openCallbacks(
  config: AgentConfig,
  trace: TraceContext,
  logger: Logger,
  deps: RunDeps,
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
    ...(deps.transport !== undefined && { transport: deps.transport }),
    ...(deps.now !== undefined && { now: deps.now }),
  });
}

/** The Trainer's status-server client, on node 0 only (rank 0's reports arrive there), when the Trainer set it up. */
async function openTrainerStatus(
  config: AgentConfig,
  logger: Logger,
  deps: RunDeps,
): Promise<TrainerStatusReporter | undefined> {
  for (const problem of config.trainerStatusProblems)
    logger.warn({ component: "trainer-status" }, `${problem}; progress is not reported to the Trainer`);
  if (config.trainerStatus === undefined || config.distributed.nodeRank !== 0) return undefined;
  const { createTrainerStatusReporter } = await import("../progress/trainer-status.ts");
  return createTrainerStatusReporter({
    config: config.trainerStatus,
    logger,
    ...(deps.now !== undefined && { now: deps.now }),
    ...(deps.trainerStatusIntervalMs !== undefined && { minIntervalMs: deps.trainerStatusIntervalMs }),
  });
}

async function openStorage(config: AgentConfig, logger: Logger, deps: RunDeps): Promise<Storage & { close?(): void }> {
  let create = deps.createStorage;
  if (create === undefined) {
    try {
      create = (await import("../storage/index.ts")).createStorage;
    } catch (error) {
      throw new AgentError(
        "STORAGE_UNAVAILABLE",
        `storage is configured (STORAGE_TYPE=${config.storage.type}) but the storage module could not be loaded: ${messageOf(error)}`,
        { cause: error },
      );
    }
  }
  if (create === undefined) throw new AgentError("STORAGE_UNAVAILABLE", "the storage module has no createStorage");
  return create(config, { logger: logger.child({ component: "storage" }) });
}

/**
 * A failure before there is a logger: bad command line or configuration. One line on stderr; and when the
 * callback settings themselves are readable, a `done` with status failed so the backend does not wait forever.
 */
async function failEarly(
  error: unknown,
  env: Env,
  stderr: Writable,
  deps: RunDeps,
  startedAt: number,
): Promise<number> {
  const agentError = toAgentError(error, undefined);
  stderr.write(`trainer-agent: ${agentError.code}: ${agentError.message}\n`);
  const code = exitCodeFor(agentError.code);
  let cbConfig: AgentConfig;
  try {
    const only = ["BACKEND_BASE_URL", "JOB_ID", "CALLBACK_TOKEN", "CALLBACK_TOKEN_FILE", "TRACE_ID", "TRACEPARENT"];
    only.push(
      "DONE_DEADLINE_SECONDS",
      "CALLBACK_TIMEOUT_SECONDS",
      "CALLBACK_RETRY_MAX_SECONDS",
      "JOBSET_RESTART_ATTEMPT",
    );
    cbConfig = loadAgentConfig(Object.fromEntries(only.map((n) => [n, env[n]])));
  } catch {
    return code; // the callback settings are broken too: nothing to tell the backend with
  }
  const trace = resolveTrace({ traceId: cbConfig.traceId, traceparent: cbConfig.traceparent });
  const logger = await createLogger({
    traceId: trace.traceId,
    jobId: cbConfig.jobId,
    base: { name: "trainer-agent" },
    ...(deps.logDestination !== undefined && { destination: deps.logDestination }),
  });
  const callbacks = await openCallbacks(cbConfig, trace, logger, deps, false);
  if (callbacks === undefined) return code;
  await callbacks.done({
    status: "failed",
    exit_code: code,
    reason: `${agentError.code}: ${agentError.message}`,
    duration_seconds: Math.max(0, ((deps.now ?? Date.now)() - startedAt) / 1000),
  });
  await callbacks.close();
  return code;
}

async function readTokenFile(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    return undefined; // the callbacks say so when they need it
  }
}

function toAgentError(error: unknown, cancelReason: string | undefined): AgentError {
  if (isAgentError(error)) return error;
  if (cancelReason !== undefined && error instanceof Error && error.name === "AbortError")
    return new AgentError("INTERNAL", cancelReason, { cause: error });
  return new AgentError("INTERNAL", messageOf(error), { cause: error });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** World size for the `started` event: the plain-python translation's, else nnodes x a numeric nproc_per_node. */
function worldSize(translated: Record<string, string>, config: AgentConfig): number | undefined {
  if (translated.WORLD_SIZE !== undefined) return Number(translated.WORLD_SIZE);
  const { nnodes, nprocPerNode } = config.distributed;
  return typeof nprocPerNode === "number" ? nnodes * nprocPerNode : undefined;
}
