/**
 * `trainer-agent local`: N agents on this machine, as N pods of a TrainJob would run.
 *
 *   storage (configured, or an embedded S3 server with a bucket) -> dataset seeded from --dataset
 *   -> backend (configured, or the stub in-process: job created, token minted, dashboard URL printed)
 *   -> free rendezvous port -> N x `trainer-agent run` with PET_* per node, own DATASET_DIR/CHECKPOINT_DIR
 *   -> output shown with a [nodeN] prefix (the agents relay it unchanged; raw bytes also in nodeN/output.log)
 *   -> a node fails: the others get SIGTERM after a grace period; Ctrl-C: SIGTERM to all, wait, SIGKILL
 *   -> summary (job state, epochs, final metrics, checkpoint keys) -> servers closed (unless --keep).
 *
 * Exit code: 0 when every node exited 0; otherwise the exit code of the node that failed first (the cause; the
 * nodes stopped after it only follow); 128+signal when interrupted.
 */
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadAgentConfig, type StorageConfig } from "../config/index.ts";
import { namesModelUri } from "../config/predict.ts";
import { AgentError } from "../errors/index.ts";
import { count } from "../log/units.ts";
import { checkpointRoot } from "../storage/checkpoint/layout.ts";
import { predictionsRoot } from "../storage/predict/layout.ts";
import type { JobSnapshot, LocalBackend } from "./backend.ts";
import { runExitCode, settleJob, storedUnder } from "./finish.ts";
import { untilStopped, watchInterrupts, type Interrupts } from "./interrupts.ts";
import { killGroup, startNodes, waitForNodes, type RunningNode } from "./nodes.ts";
import { freePorts } from "./ports.ts";
import { openBackend, openStorage, prepareDataset, type LocalStorage } from "./services.ts";
import { formatSummary, type SummaryInput } from "./summary.ts";
import type { Cleanups, LocalDeps, LocalOptions, LocalResult } from "./types.ts";

export type { LocalDeps, LocalOptions, LocalResult } from "./types.ts";

/** Variables that say where the backend is: JOB_ID is ours to create, so storage is validated without them. */
const CALLBACK_VARS = ["BACKEND_BASE_URL", "JOB_ID", "CALLBACK_TOKEN", "CALLBACK_TOKEN_FILE"];

export async function runLocal(options: LocalOptions, deps: LocalDeps): Promise<LocalResult> {
  validate(options);
  const say = (text: string): void => void deps.stdout.write(`${text}\n`);
  const signals = deps.signals ?? process;
  // Storage: validated by the agent's own loader, without the callback variables.
  const storageEnv = Object.fromEntries(Object.entries(deps.env).filter(([k]) => !CALLBACK_VARS.includes(k)));
  const storageConfig = loadAgentConfig(storageEnv).storage;

  const cleanups: Cleanups = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    cleanups.length = 0;
  };
  const interrupts = watchInterrupts(signals, say);
  const started: RunningNode[][] = [];
  try {
    const runDir = resolve(options.workdir ?? (await mkdtemp(join(tmpdir(), "trainer-local-"))));
    await mkdir(runDir, { recursive: true });

    const storage = await openStorage(storageConfig, deps.env, cleanups, options.keyless === true);
    const datasetLabel = await prepareDataset(options, deps, storage, interrupts.signal, () => interrupts.by);
    const backend = await openBackend(options.name, deps.env, cleanups, storage);
    const pythonDir = await writePythonHelper(runDir, deps);
    const traceId = deps.env.TRACE_ID ?? randomUUID().replaceAll("-", "");
    const shared = { deps, storage, storageConfig, pythonDir, traceId, interrupts, say, started };

    const first = await runJob(withModel(options), { ...shared, backend, runDir, datasetLabel });
    let prediction: JobOutcome | undefined;
    if (options.thenPredict !== undefined && first.exitCode === 0 && interrupts.by === undefined) {
      say(`\ntrainer-agent local: predicting with the model of job ${backend.jobId}`);
      const predictBackend = await backend.anotherJob(`${options.name}-predict`);
      prediction = await runJob(
        {
          ...options,
          nodes: 1,
          nprocPerNode: "1",
          framework: options.thenPredict.framework ?? options.framework,
          command: options.thenPredict.command,
          mode: "predict",
          extraEnv: { ...options.extraEnv, MODEL_JOB_ID: backend.jobId },
        },
        { ...shared, backend: predictBackend, runDir: join(runDir, "predict"), datasetLabel },
      );
    }
    const last = prediction ?? first;
    const exitCode = first.exitCode !== 0 ? first.exitCode : last.exitCode;
    // A folder the user named is theirs; a temporary one goes after a clean run.
    const keepFiles = options.keep || exitCode !== 0 || options.workdir !== undefined;
    const holdOpen = options.keep || options.holdOpen === true;
    for (const job of prediction === undefined ? [first] : [first, prediction])
      deps.stdout.write(
        formatSummary({
          ...job.summary,
          exitCode: job.exitCode,
          runDir: keepFiles ? runDir : undefined,
          kept: holdOpen,
        }),
      );

    if (holdOpen && interrupts.by === undefined && !interrupts.forced) {
      say(
        `trainer-agent local: ${options.keep ? "--keep: " : ""}the dashboard and the bucket stay up (${backend.dashboardUrl}` +
          `${storage.target !== undefined ? `, S3 ${storage.target.endpoint}` : ""}); Ctrl-C to stop`,
      );
      interrupts.dispose();
      await untilStopped(signals);
    }
    await cleanup();
    if (!keepFiles) await rm(runDir, { recursive: true, force: true }).catch(() => undefined);
    return {
      exitCode,
      jobId: backend.jobId,
      state: first.snapshot?.state,
      nodes: [...first.summary.nodes],
      checkpointKeys: first.summary.checkpointKeys.map((k) => k.key),
      runDir,
      snapshot: first.snapshot,
      ...(prediction !== undefined && { prediction: predictionResult(prediction) }),
      ...(options.mode === "predict" && { prediction: predictionResult(first) }),
    };
  } finally {
    for (const n of started.flat()) if (n.outcome.exitCode === undefined) killGroup(n.child, "SIGKILL");
    interrupts.dispose();
    await cleanup();
  }
}

/** What runJob needs beside the job's options: the run's servers, folders and interrupt watch. */
interface JobContext {
  deps: LocalDeps;
  storage: LocalStorage;
  storageConfig: StorageConfig;
  backend: LocalBackend;
  runDir: string;
  pythonDir: string;
  traceId: string;
  datasetLabel: string | undefined;
  interrupts: Interrupts;
  say: (text: string) => void;
  /** Every job's nodes, so the run's end can kill what is left. */
  started: RunningNode[][];
}

interface JobOutcome {
  exitCode: number;
  snapshot: JobSnapshot | undefined;
  jobId: string;
  /** The summary of this job, less what depends on the whole run. */
  summary: Omit<SummaryInput, "exitCode" | "runDir" | "kept">;
}

/** One job: its nodes started, waited for, the job settled on the backend and what they stored listed. */
async function runJob(options: LocalOptions, ctx: JobContext): Promise<JobOutcome> {
  const { deps, storage, backend, interrupts, say } = ctx;
  await mkdir(ctx.runDir, { recursive: true });
  const agentEnv = {
    ...storage.agentEnv,
    BACKEND_BASE_URL: backend.baseUrl,
    JOB_ID: backend.jobId,
    CALLBACK_TOKEN: backend.token,
  };
  const ports = await freePorts(options.framework === "tensorflow" ? options.nodes + 1 : 1);
  await announce(options, say, { backend, storage, datasetLabel: ctx.datasetLabel, runDir: ctx.runDir });
  const slot = ctx.started.push([]) - 1;
  const nodes = await startNodes(
    options,
    deps,
    { runDir: ctx.runDir, agentEnv, ports, traceId: ctx.traceId, pythonDir: ctx.pythonDir },
    () => interrupts.by !== undefined,
    (now) => {
      ctx.started[slot] = now;
      interrupts.watch(now);
    },
  );
  const firstFailure = await waitForNodes(nodes, options.failGraceSeconds, () => interrupts.by !== undefined, say);
  const interrupted = interrupts.by;
  const exitCode = runExitCode(nodes, firstFailure, interrupted);
  const snapshot = await settleJob(backend, { exitCode, nodes, firstFailure, interrupted, traceId: ctx.traceId });
  const where = { bucket: storage.target?.bucket, jobId: backend.jobId };
  const predict = options.mode === "predict";
  const stored = await storedUnder(
    storage.client,
    predict
      ? predictionsRoot({ ...where, predictionsUri: deps.env.PREDICTIONS_URI })
      : checkpointRoot({ ...where, checkpointUri: ctx.storageConfig.checkpointUri }),
  );
  return {
    exitCode,
    snapshot,
    jobId: backend.jobId,
    summary: {
      jobId: backend.jobId,
      dashboardUrl: backend.dashboardUrl,
      snapshot,
      nodes: nodes.map((n) => n.outcome),
      checkpointKeys: predict ? [] : stored.keys,
      ...(predict && { predictionKeys: stored.keys }),
      bucket: stored.bucket,
      interrupted,
    },
  };
}

/** `--predict JOB_ID|URI`: the agents' model variable. */
function withModel(options: LocalOptions): LocalOptions {
  if (options.mode !== "predict" || options.model === undefined) return options;
  const variable = namesModelUri(options.model) ? "MODEL_URI" : "MODEL_JOB_ID";
  return { ...options, extraEnv: { ...options.extraEnv, [variable]: options.model } };
}

function predictionResult(job: JobOutcome): NonNullable<LocalResult["prediction"]> {
  return {
    jobId: job.jobId,
    exitCode: job.exitCode,
    state: job.snapshot?.state,
    snapshot: job.snapshot,
    predictionKeys: (job.summary.predictionKeys ?? []).map((k) => k.key),
  };
}

/** Writes the Python helper into the run folder, importable by the training script on every node. */
async function writePythonHelper(runDir: string, deps: LocalDeps): Promise<string> {
  const pythonDir = join(runDir, "python");
  if (deps.helperSource !== undefined) {
    const source = await deps.helperSource().catch(() => undefined);
    if (source !== undefined) {
      await mkdir(pythonDir, { recursive: true });
      await writeFile(join(pythonDir, "trainer_agent.py"), source);
    }
  }
  return pythonDir;
}

async function announce(
  options: LocalOptions,
  say: (text: string) => void,
  run: { backend: LocalBackend; storage: LocalStorage; datasetLabel: string | undefined; runDir: string },
): Promise<void> {
  const processes = options.nprocPerNode === "1" ? "1 process" : `${options.nprocPerNode} processes`;
  const what = options.mode === "predict" ? "predict job" : "job";
  say(`trainer-agent local: ${count(options.nodes, "node")} x ${processes}, ${what} ${run.backend.jobId}`);
  say(`  dashboard  ${run.backend.dashboardUrl}${run.backend.embedded ? " (backend stub, in-process)" : ""}`);
  say(`  storage    ${run.storage.label}`);
  if (run.datasetLabel !== undefined) say(`  dataset    ${run.datasetLabel}`);
  const model = options.extraEnv?.MODEL_JOB_ID ?? options.extraEnv?.MODEL_URI;
  if (options.mode === "predict" && model !== undefined) say(`  model      ${model}`);
  say(`  run folder ${run.runDir}`);
  const { quote } = await import("shell-quote");
  say(`  command    ${quote([...options.command])}`);
}

function validate(options: LocalOptions): void {
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > 64)
    throw new AgentError("USAGE", `--nodes must be an integer from 1 to 64, got ${String(options.nodes)}`);
  if (!/^(?:[1-9]\d{0,3}|auto|cpu|gpu)$/.test(options.nprocPerNode))
    throw new AgentError(
      "USAGE",
      `--nproc-per-node must be a positive integer or auto, cpu, gpu, got ${JSON.stringify(options.nprocPerNode)}`,
    );
  if (options.command.length === 0)
    throw new AgentError("USAGE", "no training command: trainer-agent local --nodes N -- CMD [ARGS...] (or --example)");
  if (options.mode === "predict" && options.model === undefined && options.extraEnv?.MODEL_JOB_ID === undefined)
    throw new AgentError("USAGE", "a predict job needs its model: --predict JOB_ID or --predict s3://bucket/key");
  // A predict job reads its model and writes its predictions with the bucket's keys (no presigned path for them).
  if (options.keyless === true && (options.mode === "predict" || options.thenPredict !== undefined))
    throw new AgentError(
      "USAGE",
      "--keyless trains only: a predict job (--predict, --example) needs the bucket's keys",
    );
  if (!(options.failGraceSeconds >= 0))
    throw new AgentError("USAGE", `--fail-grace must be a number of seconds >= 0, got ${options.failGraceSeconds}`);
}
