import { describe, expect, it } from "vitest";
import {
  countVisibleGpus,
  cpuAllowance,
  resolveNprocPerNode,
  torchrunNprocArg,
  type HostResources,
} from "../../src/env/nproc.ts";
import type { NprocPerNode } from "../../src/config/index.ts";
import { systemProbe, type ProbeFs } from "../../src/env/probe.ts";

const gpuNode: HostResources = { gpus: 4, cpus: 16 };
const cpuNode: HostResources = { gpus: 0, cpus: 3 };

describe("resolveNprocPerNode (plain python) and torchrunNprocArg", () => {
  it.each<[NprocPerNode, HostResources, number, string]>([
    [2, cpuNode, 2, "2"],
    [1, gpuNode, 1, "1"],
    ["auto", gpuNode, 4, "auto"], // torchrun counts the GPUs itself
    ["auto", cpuNode, 3, "3"], // torchrun would use os.cpu_count() (the host's): resolved here
    ["gpu", gpuNode, 4, "gpu"],
    ["cpu", gpuNode, 16, "16"],
    ["cpu", cpuNode, 3, "3"],
    ["auto", { gpus: 0, cpus: 0 }, 1, "1"],
  ])("%s on %j -> %d / torchrun %s", (value, host, plain, torchrun) => {
    expect(resolveNprocPerNode(value, host)).toBe(plain);
    expect(torchrunNprocArg(value, host)).toBe(torchrun);
  });

  it("rejects gpu when no GPU is visible, naming the variable", () => {
    expect(() => resolveNprocPerNode("gpu", cpuNode)).toThrow(/PET_NPROC_PER_NODE .* got "gpu" \(0 GPUs found\)/);
    expect(() => torchrunNprocArg("gpu", cpuNode)).toThrow(/PET_NPROC_PER_NODE/);
  });
});

describe("countVisibleGpus", () => {
  it.each<[string, number | undefined, string | undefined, string | undefined, number]>([
    ["all devices", 4, undefined, undefined, 4],
    ["CUDA_VISIBLE_DEVICES narrows", 4, "0,2", undefined, 2],
    ["empty CUDA_VISIBLE_DEVICES hides all", 4, "", undefined, 0],
    ["-1 hides all", 4, "-1", undefined, 0],
    ["stops at the first invalid entry", 4, "1,-1,2", undefined, 1],
    ["out-of-range index stops", 2, "0,5,1", undefined, 1],
    ["UUIDs", 2, "GPU-8c2a7f3e-1111,GPU-8c2a7f3e-2222", undefined, 2],
    ["MIG", 1, "MIG-abc-def", undefined, 1],
    ["never more than held", 1, "0,1,2", undefined, 1],
    ["duplicate stops", 4, "0,0", undefined, 1],
    ["no devices readable, runtime list", undefined, undefined, "GPU-a,GPU-b", 2],
    ["runtime all but nothing readable", undefined, undefined, "all", 0],
    ["runtime void", undefined, undefined, "void", 0],
    ["no GPU at all", undefined, undefined, undefined, 0],
    ["CUDA_VISIBLE_DEVICES alone proves nothing", undefined, "0,1", undefined, 0],
  ])("%s", (_name, physical, cuda, nvidia, expected) => {
    expect(countVisibleGpus({ physical, cudaVisibleDevices: cuda, nvidiaVisibleDevices: nvidia })).toBe(expected);
  });
});

describe("cpuAllowance", () => {
  it.each<[string, string | undefined, string | undefined, string | undefined, number, number]>([
    ["no limit (v2)", "max 100000", undefined, undefined, 8, 8],
    ["2 CPUs (v2)", "200000 100000", undefined, undefined, 8, 2],
    ["2.5 CPUs rounds up like a Kubernetes quantity", "250000 100000", undefined, undefined, 8, 3],
    ["500m is one process", "50000 100000", undefined, undefined, 8, 1],
    ["limit above the cores", "1600000 100000", undefined, undefined, 4, 4],
    ["v1 quota", undefined, "300000", "100000", 8, 3],
    ["v1 no quota", undefined, "-1", "100000", 6, 6],
    ["nothing readable", undefined, undefined, undefined, 5, 5],
    ["garbage", "what ever", undefined, undefined, 2, 2],
  ])("%s", (_name, cpuMax, quota, period, available, expected) => {
    expect(cpuAllowance({ cpuMax, cfsQuotaUs: quota, cfsPeriodUs: period, available })).toBe(expected);
  });
});

describe("systemProbe", () => {
  const fakeFs = (
    files: Record<string, string>,
    dirs: Record<string, string[]>,
    executables: string[] = [],
  ): ProbeFs => ({
    readFile: (p) => files[p],
    readdir: (p) => dirs[p],
    isExecutable: (p) => executables.includes(p),
  });

  it("counts a GPU node's devices, narrowed by CUDA_VISIBLE_DEVICES, and the cgroup CPU limit", () => {
    const probe = systemProbe({
      fs: fakeFs(
        { "/sys/fs/cgroup/cpu.max": "400000 100000\n" },
        { "/proc/driver/nvidia/gpus": ["0000:07:00.0", "0000:0a:00.0", "0000:44:00.0"] },
      ),
      availableParallelism: () => 64,
    });
    expect(probe.resources({})).toEqual({ gpus: 3, cpus: 4 });
    expect(probe.resources({ CUDA_VISIBLE_DEVICES: "1" })).toEqual({ gpus: 1, cpus: 4 });
  });

  it("falls back to /dev/nvidiaN nodes and cgroup v1", () => {
    const probe = systemProbe({
      fs: fakeFs(
        { "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "200000", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000" },
        { "/dev": ["null", "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"] },
      ),
      availableParallelism: () => 8,
    });
    expect(probe.resources({})).toEqual({ gpus: 2, cpus: 2 });
  });

  it("counts AMD GPUs (ROCm) when no NVIDIA device is there, narrowed by HIP_VISIBLE_DEVICES", () => {
    const probe = systemProbe({
      fs: fakeFs({}, { "/dev": ["kfd", "dri", "null"], "/dev/dri": ["card0", "card1", "renderD128", "renderD129"] }),
      availableParallelism: () => 8,
    });
    expect(probe.resources({})).toEqual({ gpus: 2, cpus: 8 });
    expect(probe.resources({ HIP_VISIBLE_DEVICES: "1" }).gpus).toBe(1);
  });

  it("does not take an integrated GPU's render node (no /dev/kfd) for an accelerator", () => {
    const probe = systemProbe({ fs: fakeFs({}, { "/dev": ["dri"], "/dev/dri": ["renderD128"] }) });
    expect(probe.resources({}).gpus).toBe(0);
  });

  it("finds executables on the given PATH only", () => {
    const probe = systemProbe({ fs: fakeFs({}, {}, ["/opt/bin/torchrun", "/usr/bin/python3"]) });
    expect(probe.which("torchrun", { PATH: "/usr/bin:/opt/bin" })).toBe("/opt/bin/torchrun");
    expect(probe.which("torchrun", { PATH: "/usr/bin" })).toBeUndefined();
    expect(probe.which("/usr/bin/python3", {})).toBe("/usr/bin/python3");
    expect(probe.which("python3", {})).toBeUndefined();
  });

  it("reads the real machine without throwing", () => {
    const r = systemProbe().resources({ PATH: process.env.PATH ?? "" });
    expect(r.cpus).toBeGreaterThanOrEqual(1);
    expect(r.gpus).toBeGreaterThanOrEqual(0);
    expect(systemProbe().which("sh", { PATH: "/usr/bin:/bin" })).toMatch(/\/sh$/);
  });
});
