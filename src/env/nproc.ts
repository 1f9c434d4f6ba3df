/**
 * `PET_NPROC_PER_NODE` resolution. Kubeflow Trainer sends the literal `auto` when a TrainJob requests GPUs;
 * torchrun resolves it itself, a plain `python` launch needs a number. These functions resolve it the way
 * torchrun does (accelerator count, else CPUs) but count the container's CPU allowance, not the host's
 * (kubeflow/trainer#2407: `auto` on a CPU node spawned one worker per host CPU and ran out of memory).
 */
import { AgentError } from "../errors/index.ts";
import type { NprocPerNode } from "../config/index.ts";

/** What the machine offers; gathered by a HostProbe (src/env/probe.ts), plain numbers here so resolution is pure. */
export interface HostResources {
  /** GPUs this container can use (after CUDA_VISIBLE_DEVICES narrowing). */
  gpus: number;
  /** CPUs this container may use: cgroup quota, else affinity / core count. Always >= 1. */
  cpus: number;
}

/** A count for plain-python launches: `auto` = GPUs if any else CPUs, `gpu` = GPUs (an error when none), `cpu` = CPUs. */
export function resolveNprocPerNode(value: NprocPerNode, host: HostResources): number {
  if (typeof value === "number") return value;
  if (value === "cpu") return Math.max(1, host.cpus);
  if (value === "gpu") {
    if (host.gpus < 1)
      throw new AgentError(
        "ENV_INVALID",
        'PET_NPROC_PER_NODE must be a positive integer, auto or cpu when no GPU is visible, got "gpu" (0 GPUs found)',
      );
    return host.gpus;
  }
  return host.gpus > 0 ? host.gpus : Math.max(1, host.cpus);
}

/**
 * The `--nproc_per_node` value handed to torchrun: `auto`/`gpu` pass through unchanged when GPUs are visible
 * (torchrun's own accelerator count is authoritative there); when none is visible the CPU fallback is resolved
 * here, because torchrun's fallback is `os.cpu_count()`, the host's cores, not the container's allowance.
 */
export function torchrunNprocArg(value: NprocPerNode, host: HostResources): string {
  if (typeof value === "number") return String(value);
  if ((value === "auto" || value === "gpu") && host.gpus > 0) return value;
  return String(resolveNprocPerNode(value, host));
}

/**
 * GPUs visible to CUDA in this container. `physical` is the number of NVIDIA devices the container holds
 * (/proc/driver/nvidia/gpus entries or /dev/nvidiaN nodes), `undefined` when unknown. CUDA_VISIBLE_DEVICES
 * narrows it like the CUDA runtime does: entries up to the first invalid one count; empty means none.
 * NVIDIA_VISIBLE_DEVICES (the container runtime's list) is only a fallback when no device count is readable.
 */
export function countVisibleGpus(input: {
  physical: number | undefined;
  cudaVisibleDevices: string | undefined;
  nvidiaVisibleDevices: string | undefined;
}): number {
  let physical = input.physical;
  if (physical === undefined) physical = countNvidiaVisibleDevices(input.nvidiaVisibleDevices);
  if (input.cudaVisibleDevices === undefined) return physical;
  let n = 0;
  const seen = new Set<string>();
  for (const raw of input.cudaVisibleDevices.split(",")) {
    const entry = raw.trim();
    if (/^\d+$/.test(entry)) {
      if (Number(entry) >= physical || seen.has(entry)) break;
    } else if (!/^(GPU|MIG)-[\w-]+$/i.test(entry) || seen.has(entry)) break;
    seen.add(entry);
    n++;
  }
  return Math.min(n, physical);
}

function countNvidiaVisibleDevices(value: string | undefined): number {
  if (value === undefined) return 0;
  const v = value.trim().toLowerCase();
  // "all" without readable device nodes means the count is unknown: claim none rather than guess.
  if (v === "" || v === "none" || v === "void" || v === "all") return 0;
  return v.split(",").filter((e) => e.trim() !== "").length;
}

/** CPUs from cgroup limits: v2 `cpu.max` ("max 100000" / "250000 100000") or v1 quota and period (quota -1 = none). */
export function cpuAllowance(input: {
  cpuMax: string | undefined;
  cfsQuotaUs: string | undefined;
  cfsPeriodUs: string | undefined;
  available: number;
}): number {
  const available = Math.max(1, Math.floor(input.available));
  let quota: number | undefined;
  let period: number | undefined;
  if (input.cpuMax !== undefined) {
    const [q, p] = input.cpuMax.trim().split(/\s+/);
    if (q !== undefined && q !== "max") {
      quota = Number(q);
      period = Number(p ?? "100000");
    }
  } else if (input.cfsQuotaUs !== undefined) {
    quota = Number(input.cfsQuotaUs.trim());
    period = Number((input.cfsPeriodUs ?? "100000").trim());
  }
  if (quota === undefined || period === undefined || !(quota > 0) || !(period > 0)) return available;
  // Kubernetes rounds a CPU quantity up (Quantity.Value()), as Kubeflow Trainer does for `auto` on CPU nodes.
  return Math.max(1, Math.min(available, Math.ceil(quota / period - 1e-9)));
}
