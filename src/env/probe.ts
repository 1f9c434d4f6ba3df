/**
 * Facts about the machine the agent runs on, behind one small interface so the translation stays pure and
 * tests pass fixed answers. The system probe reads a few files synchronously (microseconds; it only runs
 * when PET_NPROC_PER_NODE is symbolic or a PATH lookup is needed).
 */
import { accessSync, constants, readdirSync, readFileSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { delimiter, join } from "node:path";
import type { HostResources } from "./nproc.ts";
import { countVisibleGpus, cpuAllowance } from "./nproc.ts";

export interface HostProbe {
  /** GPUs and CPUs this container may use; `env` is the child's environment (CUDA_VISIBLE_DEVICES, ...). */
  resources(env: Readonly<Record<string, string>>): HostResources;
  /** Absolute path of an executable found on `env.PATH`, like `command -v`; undefined when absent. */
  which(command: string, env: Readonly<Record<string, string>>): string | undefined;
}

/** The file-system calls the system probe makes; injectable to simulate a GPU node in tests. */
export interface ProbeFs {
  readFile(path: string): string | undefined;
  readdir(path: string): string[] | undefined;
  isExecutable(path: string): boolean;
}

const realFs: ProbeFs = {
  readFile(path) {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  },
  readdir(path) {
    try {
      return readdirSync(path);
    } catch {
      return undefined;
    }
  },
  isExecutable(path) {
    try {
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  },
};

export function systemProbe(options: { fs?: ProbeFs; availableParallelism?: () => number } = {}): HostProbe {
  const fs = options.fs ?? realFs;
  const available = options.availableParallelism ?? availableParallelism;
  return {
    resources(env) {
      return {
        gpus: visibleGpus(fs, env),
        cpus: cpuAllowance({
          cpuMax: fs.readFile("/sys/fs/cgroup/cpu.max"),
          cfsQuotaUs:
            fs.readFile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") ??
            fs.readFile("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
          cfsPeriodUs:
            fs.readFile("/sys/fs/cgroup/cpu/cpu.cfs_period_us") ??
            fs.readFile("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"),
          available: available(),
        }),
      };
    },
    which(command, env) {
      if (command.includes("/")) return fs.isExecutable(command) ? command : undefined;
      for (const dir of (env.PATH ?? "").split(delimiter)) {
        if (dir === "") continue;
        const candidate = join(dir, command);
        if (fs.isExecutable(candidate)) return candidate;
      }
      return undefined;
    },
  };
}

/** NVIDIA GPUs, else AMD GPUs (ROCm builds of torch count those as `torch.cuda` devices too). */
function visibleGpus(fs: ProbeFs, env: Readonly<Record<string, string>>): number {
  const nvidia = countVisibleGpus({
    physical: physicalNvidiaGpus(fs),
    cudaVisibleDevices: env.CUDA_VISIBLE_DEVICES,
    nvidiaVisibleDevices: env.NVIDIA_VISIBLE_DEVICES,
  });
  if (nvidia > 0) return nvidia;
  const amd = physicalAmdGpus(fs);
  if (amd === undefined) return 0;
  return countVisibleGpus({
    physical: amd,
    cudaVisibleDevices: env.HIP_VISIBLE_DEVICES ?? env.ROCR_VISIBLE_DEVICES ?? env.CUDA_VISIBLE_DEVICES,
    nvidiaVisibleDevices: undefined,
  });
}

/** AMD GPUs: the ROCm device plugin mounts /dev/kfd and only the allocated /dev/dri/renderD* nodes. */
function physicalAmdGpus(fs: ProbeFs): number | undefined {
  if (!(fs.readdir("/dev") ?? []).includes("kfd")) return undefined;
  const render = fs.readdir("/dev/dri")?.filter((n) => /^renderD\d+$/.test(n)).length ?? 0;
  return render > 0 ? render : undefined;
}

/**
 * NVIDIA devices held by this container. The NVIDIA container runtime mounts only the allocated GPUs'
 * /proc/driver/nvidia/gpus entries and /dev/nvidiaN nodes, so either count is the pod's allocation.
 */
function physicalNvidiaGpus(fs: ProbeFs): number | undefined {
  const proc = fs.readdir("/proc/driver/nvidia/gpus");
  if (proc !== undefined && proc.length > 0) return proc.length;
  const dev = fs.readdir("/dev")?.filter((n) => /^nvidia\d+$/.test(n));
  if (dev !== undefined && dev.length > 0) return dev.length;
  return undefined;
}

/** A probe with fixed answers, for tests and for callers that already know the machine. */
export function fixedProbe(resources: HostResources, onPath: Readonly<Record<string, string>> = {}): HostProbe {
  return {
    resources: () => ({ ...resources }),
    which: (command) => (command.includes("/") ? command : onPath[command]),
  };
}
