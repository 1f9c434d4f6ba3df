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
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Writable } from "node:stream";
import { loadAgentConfig } from "../config/index.ts";
import { AgentError } from "../errors/index.ts";
import { startEmbeddedBackend, useExternalBackend, type JobSnapshot, type LocalBackend } from "./backend.ts";
import { createLinePrefixer, nodeLabel, readableLogLine } from "./display.ts";
import { count, formatBytes } from "../log/units.ts";
import { freePorts } from "./ports.ts";
import {
  datasetIdFor,
  listKeys,
  s3Client,
  seedDataset,
  startEmbeddedS3,
  type EmbeddedS3,
  type S3Target,
} from "./s3.ts";
import { formatSummary, type NodeOutcome } from "./summary.ts";

/** Multipart part size for the embedded S3 server, which refuses bodies over 11 MiB (MiB). */
const EMBEDDED_PART_SIZE_MB = 8;

export interface LocalOptions {
  nodes: number;
  /** Processes per node (PET_NPROC_PER_NODE): a count or auto/cpu/gpu. */
  nprocPerNode: string;
  framework: string | undefined;
  plugin: string | undefined;
  /** A local folder to seed as the job's dataset. */
  dataset: string | undefined;
  datasetId: string | undefined;
  command: readonly string[];
  /** Keep the servers (and the run folder) after the run, until Ctrl-C. */
  keep: boolean;
  /**
   * Keep only the servers (dashboard, bucket) up after the run, until Ctrl-C: the demo on a terminal, where a
   * person is about to click the dashboard link. The run folder goes as after any clean run.
   */
  holdOpen?: boolean;
  /** Run folder, kept; default a fresh one under the system temp dir, removed after a clean run. */
  workdir: string | undefined;
  name: string;
  /** After a node fails, seconds the others get to end on their own before they are sent SIGTERM. */
  failGraceSeconds: number;
  /** Extra variables for every agent (the demo's PET_REDIRECTS for old torchrun, for example). */
  extraEnv?: Readonly<Record<string, string>>;
}

export interface LocalDeps {
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** How to start `trainer-agent` (see src/packaging/self-command.ts). */
  agent: { command: string; args: readonly string[] };
  /** Source of the Python helper, written into the run folder and put on PYTHONPATH. */
  helperSource?: () => Promise<string>;
  stdout: Writable;
  stderr: Writable;
  /** Output is a terminal: colours and live progress. */
  color: boolean;
  signals?: Pick<NodeJS.Process, "on" | "off">;
  spawn?: (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;
}

export interface LocalResult {
  exitCode: number;
  jobId: string;
  state: string | undefined;
  nodes: NodeOutcome[];
  checkpointKeys: string[];
  runDir: string;
  snapshot: JobSnapshot | undefined;
}

const BUCKET = "trainer-local";
/** Variables that say where storage is: when none is set, the run gets an embedded server. */
const CALLBACK_VARS = ["BACKEND_BASE_URL", "JOB_ID", "CALLBACK_TOKEN", "CALLBACK_TOKEN_FILE"];

interface RunningNode {
  index: number;
  child: ChildProcess;
  log: WriteStream;
  exited: Promise<void>;
  outcome: NodeOutcome;
}

export async function runLocal(options: LocalOptions, deps: LocalDeps): Promise<LocalResult> {
  validate(options);
  const out = deps.stdout;
  const say = (text: string): void => void out.write(`${text}\n`);
  const signals = deps.signals ?? process;
  const spawn = deps.spawn ?? nodeSpawn;

  // Storage: validated by the agent's own loader, without the callback variables (JOB_ID is ours to create).
  const storageEnv = Object.fromEntries(Object.entries(deps.env).filter(([k]) => !CALLBACK_VARS.includes(k)));
  const storage = loadAgentConfig(storageEnv).storage;

  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    cleanups.length = 0;
  };

  let interrupted: NodeJS.Signals | undefined;
  const setup = new AbortController();
  let nodes: RunningNode[] = [];
  let forceKill = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted !== undefined) {
      forceKill = true;
      say(`trainer-agent local: ${signal} again, killing every node now`);
      for (const n of nodes) killGroup(n.child, "SIGKILL");
      return;
    }
    interrupted = signal;
    say(`trainer-agent local: ${signal}, stopping ${count(nodes.length, "node")} (send it again to kill them at once)`);
    setup.abort(); // a dataset upload in flight stops
    for (const n of nodes) terminate(n);
  };
  signals.on("SIGINT", onSignal);
  signals.on("SIGTERM", onSignal);

  try {
    const runDir = resolve(options.workdir ?? (await mkdtemp(join(tmpdir(), "trainer-local-"))));
    await mkdir(runDir, { recursive: true });

    // 1. Storage.
    let target: S3Target | undefined;
    let storageLabel: string;
    const agentEnv: Record<string, string> = {};
    if (storage.type === undefined) {
      const embedded: EmbeddedS3 = await startEmbeddedS3(BUCKET);
      cleanups.push(() => embedded.stop());
      target = embedded.target;
      storageLabel = `embedded S3 ${target.endpoint} bucket ${target.bucket}`;
      Object.assign(agentEnv, {
        STORAGE_TYPE: "minio",
        S3_ENDPOINT: target.endpoint,
        S3_REGION: target.region,
        S3_BUCKET: target.bucket,
        S3_ACCESS_KEY_ID: target.accessKeyId,
        S3_SECRET_ACCESS_KEY: target.secretAccessKey,
        // The embedded server takes request bodies up to 11 MiB; the agent's default 16 MiB parts would be
        // refused (413) for any checkpoint larger than one part.
        ...(deps.env.STORAGE_PART_SIZE_MB === undefined && { STORAGE_PART_SIZE_MB: String(EMBEDDED_PART_SIZE_MB) }),
      });
    } else if (storage.endpoint !== undefined && storage.bucket !== undefined) {
      target = {
        endpoint: storage.endpoint.href.replace(/\/$/, ""),
        region: storage.region,
        bucket: storage.bucket,
        accessKeyId: storage.accessKeyId?.reveal() ?? "",
        secretAccessKey: storage.secretAccessKey?.reveal() ?? "",
      };
      storageLabel = `${storage.type} ${target.endpoint} bucket ${target.bucket}`;
    } else {
      storageLabel = `${storage.type} storage (from the environment)`;
    }
    const client = target === undefined ? undefined : await s3Client(target);
    if (client !== undefined) cleanups.push(async () => client.destroy());

    // 2. Dataset.
    let datasetLabel: string | undefined;
    if (options.dataset !== undefined) {
      if (client === undefined || target === undefined)
        throw new AgentError("USAGE", "--dataset needs S3 storage (S3_ENDPOINT and S3_BUCKET) or none configured");
      const id = options.datasetId ?? datasetIdFor(options.dataset);
      // On a terminal, one line that counts up while the archive streams to the bucket.
      let shown = 0;
      const progress = deps.color
        ? (bytes: number): void => {
            const now = Date.now();
            if (now - shown < 250) return;
            shown = now;
            out.write(`\r  dataset    packing and uploading ${options.dataset}: ${formatBytes(bytes)}   `);
          }
        : undefined;
      const seeded = await seedDataset(
        client,
        target.bucket,
        resolve(deps.cwd, options.dataset),
        id,
        setup.signal,
        progress,
      ).catch((error: unknown) => {
        if (interrupted !== undefined)
          throw new AgentError("USAGE", `interrupted by ${interrupted} while uploading the dataset`, { cause: error });
        throw error;
      });
      if (shown > 0) out.write("\r\u001b[2K");
      agentEnv.DATASET_ID = id;
      datasetLabel = `${seeded.key} (${count(seeded.files, "file")}, ${formatBytes(seeded.bytes)}) from ${options.dataset}`;
    } else if (deps.env.DATASET_ID !== undefined || deps.env.DATASET_URI !== undefined) {
      datasetLabel = deps.env.DATASET_URI ?? `datasets/${deps.env.DATASET_ID}`;
    }

    // 3. Backend.
    let backend: LocalBackend;
    if (deps.env.BACKEND_BASE_URL === undefined || deps.env.BACKEND_BASE_URL === "") {
      backend = await startEmbeddedBackend(options.name);
      cleanups.push(() => backend.close());
    } else {
      backend = await useExternalBackend({
        baseUrl: deps.env.BACKEND_BASE_URL,
        jobId: deps.env.JOB_ID,
        token: deps.env.CALLBACK_TOKEN,
        adminToken: deps.env.BACKEND_ADMIN_TOKEN,
        name: options.name,
      });
    }
    Object.assign(agentEnv, {
      BACKEND_BASE_URL: backend.baseUrl,
      JOB_ID: backend.jobId,
      CALLBACK_TOKEN: backend.token,
    });
    const checkpointPrefix = checkpointPrefixFor(deps.env.CHECKPOINT_URI, target?.bucket, backend.jobId);

    // 4. The Python helper, importable by the training script on every node.
    const pythonDir = join(runDir, "python");
    if (deps.helperSource !== undefined) {
      const source = await deps.helperSource().catch(() => undefined);
      if (source !== undefined) {
        await mkdir(pythonDir, { recursive: true });
        await writeFile(join(pythonDir, "trainer_agent.py"), source);
      }
    }

    // 5. Rendezvous ports.
    const tensorflow = options.framework === "tensorflow";
    const ports = await freePorts(tensorflow ? options.nodes + 1 : 1);
    const masterPort = ports[0]!;
    const traceId = deps.env.TRACE_ID ?? randomUUID().replaceAll("-", "");

    say(
      `trainer-agent local: ${count(options.nodes, "node")} x ${options.nprocPerNode === "1" ? "1 process" : `${options.nprocPerNode} processes`}, job ${backend.jobId}`,
    );
    say(`  dashboard  ${backend.dashboardUrl}${backend.embedded ? " (backend stub, in-process)" : ""}`);
    say(`  storage    ${storageLabel}`);
    if (datasetLabel !== undefined) say(`  dataset    ${datasetLabel}`);
    say(`  run folder ${runDir}`);
    const { quote } = await import("shell-quote");
    say(`  command    ${quote([...options.command])}`);

    // 6. The nodes.
    const agentArgs = ["run"];
    if (options.framework !== undefined) agentArgs.push("--framework", options.framework);
    if (options.plugin !== undefined) agentArgs.push("--plugin", options.plugin);
    agentArgs.push("--", ...options.command);
    const pythonPath = [pythonDir, deps.env.PYTHONPATH].filter((p) => p !== undefined && p !== "").join(":");

    const started: RunningNode[] = [];
    for (let i = 0; i < options.nodes; i++) {
      if (interrupted !== undefined) break; // Ctrl-C while starting: start no more nodes
      const nodeDir = join(runDir, nodeLabel(i, options.nodes));
      await mkdir(join(nodeDir, "dataset"), { recursive: true });
      await mkdir(join(nodeDir, "checkpoints"), { recursive: true });
      const env: Record<string, string> = {
        ...definedOnly(deps.env),
        ...agentEnv,
        PET_NNODES: String(options.nodes),
        PET_NPROC_PER_NODE: options.nprocPerNode,
        PET_NODE_RANK: String(i),
        PET_MASTER_ADDR: "127.0.0.1",
        PET_MASTER_PORT: String(masterPort),
        JOB_COMPLETION_INDEX: String(i),
        DATASET_DIR: join(nodeDir, "dataset"),
        CHECKPOINT_DIR: join(nodeDir, "checkpoints"),
        TRACE_ID: traceId,
        ASTRAGO_AGENT: "1",
        PYTHONPATH: pythonPath,
        ...(options.extraEnv ?? {}),
      };
      delete env.TRACEPARENT;
      if (tensorflow && deps.env.TF_CONFIG === undefined)
        env.TF_CONFIG = JSON.stringify({
          cluster: { worker: ports.slice(1).map((p) => `127.0.0.1:${p}`) },
          task: { type: "worker", index: i },
        });
      started.push(startNode(i, options.nodes, nodeDir, env, [...deps.agent.args, ...agentArgs], deps, spawn));
      nodes = started;
    }

    // 7. Wait; when one fails, give the rest a grace period, then stop them.
    let firstFailure: NodeOutcome | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    await Promise.all(
      started.map(async (n) => {
        await n.exited;
        if (n.outcome.exitCode !== 0 && firstFailure === undefined && interrupted === undefined) {
          firstFailure = n.outcome;
          const others = started.filter((o) => o.outcome.exitCode === undefined);
          if (others.length > 0) {
            say(
              `trainer-agent local: ${n.outcome.label} failed (exit ${n.outcome.exitCode}); ` +
                `stopping the other node(s) in ${options.failGraceSeconds}s unless they end first`,
            );
            graceTimer = setTimeout(() => {
              for (const o of others) if (o.outcome.exitCode === undefined) terminate(o);
            }, options.failGraceSeconds * 1000);
          }
        }
      }),
    );
    if (graceTimer !== undefined) clearTimeout(graceTimer);

    // 8. Summary.
    const exitCode =
      interrupted !== undefined
        ? interrupted === "SIGINT"
          ? 130
          : 143
        : (firstFailure?.exitCode ?? started.find((n) => n.outcome.exitCode !== 0)?.outcome.exitCode ?? 0);
    let snapshot = await backend.snapshot().catch(() => undefined);
    if (exitCode !== 0 && snapshot !== undefined && !["SUCCEEDED", "FAILED", "CANCELLED"].includes(snapshot.state)) {
      const failed = firstFailure ?? started.find((n) => n.outcome.exitCode !== 0)?.outcome;
      await backend.endJob({
        status: interrupted !== undefined ? "cancelled" : "failed",
        exitCode,
        reason:
          interrupted !== undefined
            ? `trainer-agent local interrupted by ${interrupted}`
            : `${failed?.label ?? "a node"} exited ${exitCode} before reporting done (see its output.log)`,
        traceId,
      });
      snapshot = (await backend.snapshot().catch(() => undefined)) ?? snapshot;
    }
    const keys =
      client !== undefined && target !== undefined && checkpointPrefix !== undefined
        ? await listKeys(client, checkpointPrefix.bucket, checkpointPrefix.prefix).catch(() => [])
        : [];
    // A folder the user named is theirs; a temporary one goes after a clean run.
    const keepFiles = options.keep || exitCode !== 0 || options.workdir !== undefined;
    out.write(
      formatSummary({
        jobId: backend.jobId,
        dashboardUrl: backend.dashboardUrl,
        snapshot,
        nodes: started.map((n) => n.outcome),
        checkpointKeys: keys,
        bucket: checkpointPrefix?.bucket,
        exitCode,
        interrupted,
        runDir: keepFiles ? runDir : undefined,
        kept: options.keep || options.holdOpen === true,
      }),
    );

    if ((options.keep || options.holdOpen === true) && interrupted === undefined && !forceKill) {
      say(
        `trainer-agent local: ${options.keep ? "--keep: " : ""}the dashboard and the bucket stay up (${backend.dashboardUrl}` +
          `${target !== undefined ? `, S3 ${target.endpoint}` : ""}); Ctrl-C to stop`,
      );
      await new Promise<void>((resolveWait) => {
        const stop = (): void => {
          signals.off("SIGINT", stop);
          signals.off("SIGTERM", stop);
          resolveWait();
        };
        signals.off("SIGINT", onSignal);
        signals.off("SIGTERM", onSignal);
        signals.on("SIGINT", stop);
        signals.on("SIGTERM", stop);
      });
    }
    await cleanup();
    if (!keepFiles) await rm(runDir, { recursive: true, force: true }).catch(() => undefined);
    return {
      exitCode,
      jobId: backend.jobId,
      state: snapshot?.state,
      nodes: started.map((n) => n.outcome),
      checkpointKeys: keys.map((k) => k.key),
      runDir,
      snapshot,
    };
  } finally {
    for (const n of nodes) if (n.outcome.exitCode === undefined) killGroup(n.child, "SIGKILL");
    signals.off("SIGINT", onSignal);
    signals.off("SIGTERM", onSignal);
    await cleanup();
  }
}

function startNode(
  index: number,
  total: number,
  nodeDir: string,
  env: Record<string, string>,
  args: readonly string[],
  deps: LocalDeps,
  spawn: NonNullable<LocalDeps["spawn"]>,
): RunningNode {
  const label = nodeLabel(index, total);
  const log = createWriteStream(join(nodeDir, "output.log"));
  // Own process group: a terminal's Ctrl-C reaches only this runner, which stops the nodes in order.
  const child = spawn(deps.agent.command, args, {
    cwd: deps.cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const outcome: NodeOutcome = { label, exitCode: undefined, signal: undefined, terminatedByRunner: false };
  const outPrefix = createLinePrefixer(deps.stdout, label, deps.color, index);
  const errPrefix = createLinePrefixer(deps.stderr, label, deps.color, index, readableLogLine);
  child.stdout?.on("data", (b: Buffer) => {
    log.write(b);
    outPrefix.push(b);
  });
  child.stderr?.on("data", (b: Buffer) => {
    log.write(b);
    errPrefix.push(b);
  });
  const exited = new Promise<void>((resolveExit) => {
    child.once("error", (error) => {
      deps.stderr.write(`[${label}] cannot start the agent: ${error.message}\n`);
      outcome.exitCode = 127;
      resolveExit();
    });
    child.once("close", (code, signal) => {
      outPrefix.end();
      errPrefix.end();
      outcome.exitCode ??= code ?? (signal !== null ? 128 + signalNumber(signal) : 1);
      outcome.signal = signal ?? undefined;
      log.end(() => resolveExit());
    });
  });
  return { index, child, log, exited, outcome };
}

/** After SIGTERM, how long an agent gets (its own grace period for the child, then final uploads and done). */
const KILL_AFTER_MS = 45_000;

/**
 * SIGTERM to the agent itself: it forwards to its child's group, waits its grace period and saves the work.
 * An agent still running KILL_AFTER_MS later is killed with its whole group.
 */
function terminate(node: RunningNode): void {
  if (node.outcome.exitCode !== undefined || node.child.pid === undefined) return;
  node.outcome.terminatedByRunner = true;
  try {
    node.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => killGroup(node.child, "SIGKILL"), KILL_AFTER_MS);
  timer.unref();
  void node.exited.then(() => clearTimeout(timer));
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return table[signal] ?? 15;
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
  if (!(options.failGraceSeconds >= 0))
    throw new AgentError("USAGE", `--fail-grace must be a number of seconds >= 0, got ${options.failGraceSeconds}`);
}

/** Where the agents put checkpoints: CHECKPOINT_URI's bucket and prefix, else `checkpoints/job-{JOB_ID}/`. */
export function checkpointPrefixFor(
  checkpointUri: string | undefined,
  bucket: string | undefined,
  jobId: string,
): { bucket: string; prefix: string } | undefined {
  if (checkpointUri !== undefined) {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(checkpointUri);
    if (m === null) return undefined;
    const prefix = m[2] ?? "";
    return { bucket: m[1]!, prefix: prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/` };
  }
  return bucket === undefined ? undefined : { bucket, prefix: `checkpoints/job-${jobId}/` };
}

function definedOnly(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}
