/**
 * PyTorch distributed environment, from the PET_* variables Kubeflow Trainer injects (CONTRACT section 3).
 *
 * Two launches:
 * - plain `python` (one process per pod): the agent sets what torchrun would set for local rank 0,
 *   with WORLD_SIZE = nnodes * nproc_per_node (torch's definition: processes, not pods).
 * - torchrun: torchrun reads PET_* itself and sets RANK, WORLD_SIZE, LOCAL_RANK, ... per worker,
 *   so the agent passes PET_* through and sets none of those.
 */
import { basename } from "node:path";
import { AgentError } from "../errors/index.ts";
import type { DistributedConfig } from "../config/index.ts";

/** The distributed shape with nproc_per_node already resolved to a count. */
export interface TorchWorld {
  nnodes: number;
  nprocPerNode: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
}

/** Checks the invariants loadAgentConfig enforces, for callers (plugins, tests) that build a world by hand. */
export function assertWorld(world: TorchWorld): void {
  const problems: string[] = [];
  const count = (name: string, v: number, min: number) => {
    if (!Number.isSafeInteger(v) || v < min)
      problems.push(
        `${name} must be ${min === 1 ? "a positive" : "a non-negative"} integer, got ${JSON.stringify(String(v))}`,
      );
  };
  count("PET_NNODES", world.nnodes, 1);
  count("PET_NPROC_PER_NODE", world.nprocPerNode, 1);
  count("PET_NODE_RANK", world.nodeRank, 0);
  if (problems.length === 0 && world.nodeRank >= world.nnodes)
    problems.push(`PET_NODE_RANK must be less than PET_NNODES (${world.nnodes}), got "${world.nodeRank}"`);
  if (!Number.isSafeInteger(world.masterPort) || world.masterPort < 1 || world.masterPort > 65535)
    problems.push(`PET_MASTER_PORT must be a port from 1 to 65535, got ${JSON.stringify(String(world.masterPort))}`);
  if (world.masterAddr.trim() === "") problems.push(`PET_MASTER_ADDR must be a host name or IP address, got ""`);
  if (problems.length > 0) throw new AgentError("ENV_INVALID", problems.join("; "));
}

/** The world of a pod from its typed config and a resolved nproc_per_node. */
export function torchWorld(d: DistributedConfig, nprocPerNode: number): TorchWorld {
  return {
    nnodes: d.nnodes,
    nprocPerNode,
    nodeRank: d.nodeRank,
    masterAddr: d.masterAddr,
    masterPort: d.masterPort,
  };
}

/**
 * Variables for a plain-python launch: the process is local rank 0 of its node. With nproc_per_node > 1 it is
 * the only process the agent starts; it must start the node's other LOCAL_WORLD_SIZE - 1 workers itself
 * (e.g. torch.multiprocessing.spawn, rank = RANK + local index), or use `--framework pytorch` to go through torchrun.
 */
export function plainPythonEnv(world: TorchWorld, localRank = 0): Record<string, string> {
  assertWorld(world);
  if (!Number.isSafeInteger(localRank) || localRank < 0 || localRank >= world.nprocPerNode)
    throw new AgentError("ENV_INVALID", `LOCAL_RANK must be from 0 to ${world.nprocPerNode - 1}, got "${localRank}"`);
  return {
    RANK: String(world.nodeRank * world.nprocPerNode + localRank),
    WORLD_SIZE: String(world.nnodes * world.nprocPerNode),
    LOCAL_RANK: String(localRank),
    LOCAL_WORLD_SIZE: String(world.nprocPerNode),
    NODE_RANK: String(world.nodeRank),
    GROUP_RANK: String(world.nodeRank),
    GROUP_WORLD_SIZE: String(world.nnodes),
    MASTER_ADDR: world.masterAddr,
    MASTER_PORT: String(world.masterPort),
  };
}

/**
 * Variables for a torchrun launch: the PET_* values torchrun reads, normalised (PET_NODE_RANK filled from
 * JOB_COMPLETION_INDEX, defaults written out) so torchrun and the agent agree. `nprocArg` is what torchrun
 * gets for --nproc_per_node (a count, or `auto`/`gpu` passed through).
 */
export function torchrunEnv(world: Omit<TorchWorld, "nprocPerNode">, nprocArg: string): Record<string, string> {
  assertWorld({ ...world, nprocPerNode: 1 });
  return {
    PET_NNODES: String(world.nnodes),
    PET_NPROC_PER_NODE: nprocArg,
    PET_NODE_RANK: String(world.nodeRank),
    PET_MASTER_ADDR: world.masterAddr,
    PET_MASTER_PORT: String(world.masterPort),
  };
}

/**
 * torchrun's rendezvous flags, written out so the launch is readable in the pod's log. Underscore spellings:
 * torch 1.x knows only those and 2.x accepts both.
 */
export function torchrunFlags(world: Omit<TorchWorld, "nprocPerNode">, nprocArg: string): string[] {
  return [
    `--nnodes=${world.nnodes}`,
    `--nproc_per_node=${nprocArg}`,
    `--node_rank=${world.nodeRank}`,
    `--master_addr=${world.masterAddr}`,
    `--master_port=${world.masterPort}`,
  ];
}

const PYTHON = /^python(\d+(\.\d+)*)?$/;
const LAUNCHER_MODULES = new Set(["torch.distributed.run", "torch.distributed.launch"]);
/** Python options that take a separate value (`-X dev`, `-W error`). */
const PYTHON_OPTS_WITH_VALUE = new Set(["-X", "-W", "--check-hash-based-pycs"]);

/** Whether argv[0] names a Python interpreter (`python`, `python3.11`, `/usr/bin/python3`). */
export function isPythonCommand(command: string): boolean {
  return PYTHON.test(basename(command));
}

/** Whether the argv already launches through torchrun (`torchrun ...`, `python -m torch.distributed.run ...`). */
export function isTorchrunArgv(argv: readonly string[]): boolean {
  const first = argv[0];
  if (first === undefined) return false;
  if (basename(first) === "torchrun") return true;
  if (!isPythonCommand(first)) return false;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "-m") return LAUNCHER_MODULES.has(argv[i + 1] ?? "");
    if (arg.startsWith("-m") && !arg.startsWith("--")) return LAUNCHER_MODULES.has(arg.slice(2));
    if (!arg.startsWith("-") || arg === "-" || arg === "-c" || arg === "--") return false;
    if (PYTHON_OPTS_WITH_VALUE.has(arg)) i++;
  }
  return false;
}

/**
 * The argv that runs `argv` as every local worker of torchrun.
 * - `python script.py ARGS` (bare interpreter name) -> `torchrun FLAGS script.py ARGS` when torchrun is on PATH
 *   (torchrun runs the script with its own interpreter, the one torch is installed in), else
 *   `python -m torch.distributed.run FLAGS script.py ARGS`.
 * - `/path/to/python script.py ARGS` -> `/path/to/python -m torch.distributed.run FLAGS script.py ARGS`, so the
 *   workers use exactly that interpreter (torchrun starts workers with its own sys.executable).
 * - anything else (`python -u ...`, `python -m pkg`, `python -c ...`, `bash train.sh`, a binary) ->
 *   LAUNCHER FLAGS --no_python ARGV..., so each worker runs the user's argv exactly as written.
 * `launcher` is how torchrun itself is started: `["torchrun"]` or `[python, "-m", "torch.distributed.run"]`.
 */
export function torchrunArgv(
  argv: readonly string[],
  flags: readonly string[],
  find: { torchrun: string | undefined; python: string | undefined },
): string[] {
  const first = argv[0];
  if (first === undefined) throw new AgentError("USAGE", "no command given to launch through torchrun");
  const python = isPythonCommand(first);
  const simple = python && argv.length > 1 && !(argv[1] ?? "").startsWith("-");
  let launcher: string[];
  if (python && first.includes("/")) launcher = [first, "-m", "torch.distributed.run"];
  else if (find.torchrun !== undefined) launcher = ["torchrun"];
  else if (python) launcher = [first, "-m", "torch.distributed.run"];
  else if (find.python !== undefined) launcher = [find.python, "-m", "torch.distributed.run"];
  else
    throw new AgentError(
      "CHILD_SPAWN_FAILED",
      "cannot launch through torchrun: neither torchrun nor python3/python is on PATH",
    );
  return simple ? [...launcher, ...flags, ...argv.slice(1)] : [...launcher, ...flags, "--no_python", ...argv];
}
