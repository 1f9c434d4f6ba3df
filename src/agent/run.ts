/**
 * `trainer-agent run`: the whole life of a training pod's command, told in order below. Its parts live beside it:
 * signals.ts (SIGTERM/SIGINT, crash guard), callbacks.ts, progress.ts (heartbeats, the Trainer's status),
 * storage.ts (restore, dataset, checkpoint sync), child-env.ts (the child's environment, one precedence order),
 * report-router.ts (reports from the child), verdict.ts (exit code, status, reason), fail-early.ts.
 *
 * The exit code is the child's (or 128+signal) when it ran; an agent-own failure (bad configuration, dataset
 * unavailable, final checkpoint upload failed) exits with the code of src/errors/exit-codes.ts, after a one-line
 * reason on stderr and a `done` with status failed. Callbacks never fail or slow the training.
 */
import { readFile } from "node:fs/promises";
import { loadAgentConfig, maskSecrets, secretList, secretValues, type AgentConfig, type Env } from "../config/index.ts";
import { AgentError } from "../errors/index.ts";
import { createLogger } from "../log/logger.ts";
import { resolveTrace } from "../log/trace.ts";
import { supervise, type ChildResult } from "../process/supervise.ts";
import type { PluginContext } from "../plugins/types.ts";
import type { Storage } from "../storage/types.ts";
import { openCallbacks } from "./callbacks.ts";
import { childEnv, commonChildEnv } from "./child-env.ts";
import { toAgentError } from "./errors.ts";
import { failEarly } from "./fail-early.ts";
import { openProgress } from "./progress.ts";
import { routeReports } from "./report-router.ts";
import { watchSignals } from "./signals.ts";
import { finalSync, openStorage, prepareStorage, type PreparedStorage } from "./storage.ts";
import { verdict } from "./verdict.ts";

export interface RunOptions {
  framework?: string | undefined;
  plugin?: string | undefined;
  /** `--nproc-per-node`: overrides PET_NPROC_PER_NODE (validated like it). */
  nprocPerNode?: string | undefined;
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
    config = loadAgentConfig(env);
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
  let secrets = secretValues(config);
  const progress = await openProgress({ config, logger, callbacks, startedAt });
  const signals = watchSignals({ log, graceSeconds: config.terminationGraceSeconds, callbacks });

  let storage: (Storage & { close?(): void }) | undefined;
  let stored: PreparedStorage | undefined;
  let child: ChildResult | undefined;
  let error: AgentError | undefined;
  try {
    // 2. Plugin: the distributed environment and the launch command.
    const { resolvePlugin } = await import("../plugins/resolve.ts");
    const plugin = await resolvePlugin({
      framework: options.framework,
      plugin: options.plugin,
      cwd: deps.cwd ?? process.cwd(),
    });
    const common = commonChildEnv(config, trace.traceId);
    const ctx: PluginContext = { config, env: common, nodeRank: config.distributed.nodeRank, argv };
    const translated = plugin.env === undefined ? {} : await plugin.env(ctx);
    const launch =
      plugin.command === undefined
        ? { argv }
        : await plugin.command(argv, { ...ctx, env: { ...common, ...translated } });
    const worldSize = worldSizeOf(translated, config);
    callbacks?.event("started", undefined, {
      framework: plugin.name,
      command: launch.argv[0],
      node_rank: config.distributed.nodeRank,
      nnodes: config.distributed.nnodes,
      ...(worldSize !== undefined && { world_size: worldSize }),
    });

    // 3. Storage: restore and pull, then watch CHECKPOINT_DIR.
    if (config.storage.type !== undefined) {
      storage = await openStorage(config, logger, log);
      stored = await prepareStorage({ storage, log, callbacks, signal: signals.prepared });
    }

    // 4. The child, unless told to stop already.
    if (signals.cancel() === undefined) {
      const router = routeReports({ log, secrets, callbacks, progress, sync: stored?.sync, plugin });
      log.debug({ argv: launch.argv.length, uptime_ms: Math.round(performance.now()) }, "spawning the child");
      const running = supervise({
        argv: launch.argv,
        env: childEnv({ config, trace, translated, resumeFrom: stored?.resumeFrom }),
        ...(deps.cwd !== undefined && { cwd: deps.cwd }),
        stdout: process.stdout,
        stderr: process.stderr,
        logger: logger.child({ component: "process" }),
        onReport: router.onReport,
        onLine: router.onLine,
        tailLines: config.logTailLines,
        graceSeconds: config.terminationGraceSeconds,
      });
      signals.forwardTo(running);
      await running.started;
      // Deliveries start once the child runs: the HTTP stack loads off the start-up path.
      callbacks?.start();
      progress.childStarted(Date.now());
      const cancel = signals.cancel();
      if (cancel !== undefined) running.terminate("SIGTERM", cancel.reason);
      const ended = await running.result;
      progress.stop();
      // The token file is read now: it may have been rotated since the start.
      const fileToken = await readTokenFile(config.callbacks.tokenFile);
      if (fileToken !== undefined) secrets = secretList([...secrets, fileToken]);
      child = {
        ...ended,
        reason: ended.reason === undefined ? undefined : maskSecrets(ended.reason, secrets),
        logTail: ended.logTail.map((line) => maskSecrets(line, secrets)),
      };
      if (child.spawnFailed) log.error({ reason: child.reason }, "the command could not be started");
      else log.info({ exit_code: child.exitCode, signal: child.signal, reason: child.reason }, "child exited");
    }

    // 5. Whatever happened to the child, keep its work.
    if (stored !== undefined) await finalSync(stored, config, signals.cancel() !== undefined);
  } catch (thrown) {
    error = toAgentError(thrown, signals.cancel());
  } finally {
    progress.stop();
    signals.dispose();
  }

  // 6. The verdict, then `done`.
  const v = verdict({ child, error, cancel: signals.cancel() });
  if (error !== undefined && v.errorReport === "warn")
    log.warn({ code: error.code, err: error.cause ?? error }, error.message);
  if (error !== undefined && v.errorReport === "error") {
    process.stderr.write(`trainer-agent: ${error.code}: ${error.message}\n`);
    log.error({ code: error.code, err: error.cause ?? error }, error.message);
  }
  if (stored !== undefined) await stored.sync.close().catch(() => undefined);
  storage?.close?.();
  // The final progress to the Trainer goes alongside `done`.
  const progressClosed = progress.close({ complete: v.status === "succeeded" });
  if (callbacks !== undefined) {
    const finalMetrics = progress.finalMetrics();
    const logTail = child?.logTail.join("\n");
    await callbacks.done({
      status: v.status,
      exit_code: v.exitCode,
      ...(v.reason !== undefined && { reason: v.reason }),
      ...(logTail !== undefined && logTail !== "" && { log_tail: logTail }),
      ...(finalMetrics !== undefined && { final_metrics: finalMetrics }),
      checkpoints: stored?.checkpoints ?? [],
      duration_seconds: Math.max(0, (Date.now() - startedAt) / 1000),
      // A multi-node job ends when every node has succeeded, or at the first failure: the backend needs both.
      ...(config.distributed.nnodes > 1 && {
        node_rank: config.distributed.nodeRank,
        nnodes: config.distributed.nnodes,
      }),
    });
    await callbacks.close();
  }
  await progressClosed;
  log.info(
    { status: v.status, exit_code: v.exitCode, duration_seconds: (Date.now() - startedAt) / 1000 },
    "agent done",
  );
  if (v.lastLine !== undefined) process.stderr.write(`${v.lastLine}\n`);
  return v.exitCode;
}

async function readTokenFile(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    return undefined; // the callbacks say so when they need it
  }
}

/** World size for the `started` event: the plain-python translation's, else nnodes x a numeric nproc_per_node. */
function worldSizeOf(translated: Record<string, string>, config: AgentConfig): number | undefined {
  if (translated.WORLD_SIZE !== undefined) return Number(translated.WORLD_SIZE);
  const { nnodes, nprocPerNode } = config.distributed;
  return typeof nprocPerNode === "number" ? nnodes * nprocPerNode : undefined;
}
