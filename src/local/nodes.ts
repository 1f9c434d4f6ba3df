/**
 * The N agents of a local run: each one a `trainer-agent run` in its own process group with the PET_* variables
 * of its node and its own DATASET_DIR/CHECKPOINT_DIR, its output shown with a [nodeN] prefix and kept raw in
 * nodeN/output.log. When one fails, the others get a grace period to end on their own, then SIGTERM.
 */
import { spawn as nodeSpawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { exitCodeOfSignal, signalGroup } from "../process/group.ts";
import { createLinePrefixer, nodeLabel, readableLogLine } from "./display.ts";
import type { NodeOutcome } from "./summary.ts";
import type { LocalDeps, LocalOptions } from "./types.ts";

export interface RunningNode {
  index: number;
  child: ChildProcess;
  log: WriteStream;
  exited: Promise<void>;
  outcome: NodeOutcome;
}

/** What every node shares: the agents' variables and where the rendezvous is. */
export interface NodePlan {
  runDir: string;
  /** Variables for every agent: storage, dataset, backend. */
  agentEnv: Readonly<Record<string, string>>;
  /** Rendezvous port first; with TensorFlow, one worker port per node after it. */
  ports: readonly number[];
  traceId: string;
  /** Folder of the Python helper, first on every node's PYTHONPATH. */
  pythonDir: string;
}

/**
 * Starts the nodes one after the other; `stopped()` true (Ctrl-C while starting) starts no more. `onStart` sees
 * each started node at once, so an interrupt reaches it.
 */
export async function startNodes(
  options: LocalOptions,
  deps: LocalDeps,
  plan: NodePlan,
  stopped: () => boolean,
  onStart: (nodes: RunningNode[]) => void,
): Promise<RunningNode[]> {
  const agentArgs = options.mode === "predict" ? ["run", "--mode", "predict"] : ["run"];
  if (options.framework !== undefined) agentArgs.push("--framework", options.framework);
  if (options.plugin !== undefined) agentArgs.push("--plugin", options.plugin);
  agentArgs.push("--", ...options.command);
  const started: RunningNode[] = [];
  for (let i = 0; i < options.nodes; i++) {
    if (stopped()) break;
    const nodeDir = join(plan.runDir, nodeLabel(i, options.nodes));
    await mkdir(join(nodeDir, "dataset"), { recursive: true });
    await mkdir(join(nodeDir, "checkpoints"), { recursive: true });
    if (options.mode === "predict") await mkdir(join(nodeDir, "predictions"), { recursive: true });
    const env = nodeEnv(options, deps.env, plan, i, nodeDir);
    started.push(startNode(i, options.nodes, nodeDir, env, [...deps.agent.args, ...agentArgs], deps));
    onStart(started);
  }
  return started;
}

/** Node i's environment: the caller's, the agents' shared variables, then this node's place in the job. */
function nodeEnv(
  options: LocalOptions,
  env: LocalDeps["env"],
  plan: NodePlan,
  i: number,
  nodeDir: string,
): Record<string, string> {
  const pythonPath = [plan.pythonDir, env.PYTHONPATH].filter((p) => p !== undefined && p !== "").join(":");
  const out: Record<string, string> = {
    ...definedOnly(env),
    ...plan.agentEnv,
    PET_NNODES: String(options.nodes),
    PET_NPROC_PER_NODE: options.nprocPerNode,
    PET_NODE_RANK: String(i),
    PET_MASTER_ADDR: "127.0.0.1",
    PET_MASTER_PORT: String(plan.ports[0]),
    JOB_COMPLETION_INDEX: String(i),
    DATASET_DIR: join(nodeDir, "dataset"),
    CHECKPOINT_DIR: join(nodeDir, "checkpoints"),
    // With CODE_GIT_REPO each node fetches its own checkout, as each pod does.
    CODE_GIT_DIR: join(nodeDir, "code"),
    TRACE_ID: plan.traceId,
    ASTRAGO_AGENT: "1",
    PYTHONPATH: pythonPath,
    ...(options.mode === "predict" && { PREDICTIONS_DIR: join(nodeDir, "predictions") }),
    ...(options.extraEnv ?? {}),
  };
  delete out.TRACEPARENT;
  if (options.framework === "tensorflow" && env.TF_CONFIG === undefined)
    out.TF_CONFIG = JSON.stringify({
      cluster: { worker: plan.ports.slice(1).map((p) => `127.0.0.1:${p}`) },
      task: { type: "worker", index: i },
    });
  return out;
}

function startNode(
  index: number,
  total: number,
  nodeDir: string,
  env: Record<string, string>,
  args: readonly string[],
  deps: LocalDeps,
): RunningNode {
  const spawn = deps.spawn ?? nodeSpawn;
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
      outcome.exitCode ??= code ?? (signal !== null ? exitCodeOfSignal(signal) : 1);
      outcome.signal = signal ?? undefined;
      log.end(() => resolveExit());
    });
  });
  return { index, child, log, exited, outcome };
}

/**
 * Waits for every node. The first to fail (unless interrupted) is the cause: the others get `graceSeconds` to end
 * on their own, then SIGTERM. Returns that first failure.
 */
export async function waitForNodes(
  nodes: readonly RunningNode[],
  graceSeconds: number,
  interrupted: () => boolean,
  say: (text: string) => void,
): Promise<NodeOutcome | undefined> {
  let firstFailure: NodeOutcome | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  await Promise.all(
    nodes.map(async (n) => {
      await n.exited;
      if (n.outcome.exitCode !== 0 && firstFailure === undefined && !interrupted()) {
        firstFailure = n.outcome;
        const others = nodes.filter((o) => o.outcome.exitCode === undefined);
        if (others.length > 0) {
          say(
            `trainer-agent local: ${n.outcome.label} failed (exit ${n.outcome.exitCode}); ` +
              `stopping the other node(s) in ${graceSeconds}s unless they end first`,
          );
          graceTimer = setTimeout(() => {
            for (const o of others) if (o.outcome.exitCode === undefined) terminate(o);
          }, graceSeconds * 1000);
        }
      }
    }),
  );
  if (graceTimer !== undefined) clearTimeout(graceTimer);
  return firstFailure;
}

/** After SIGTERM, how long an agent gets (its own grace period for the child, then final uploads and done). */
const KILL_AFTER_MS = 45_000;

/**
 * SIGTERM to the agent itself: it forwards to its child's group, waits its grace period and saves the work.
 * An agent still running KILL_AFTER_MS later is killed with its whole group.
 */
export function terminate(node: RunningNode): void {
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

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    signalGroup(child.pid, signal);
  } catch {
    child.kill(signal); // EPERM on the group: the node agent itself is still ours to signal
  }
}

function definedOnly(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}
