import { describe, expect, it } from "vitest";
import { loadAgentConfig, type Env } from "../../../src/config/index.ts";
import { fixedProbe, type HostProbe } from "../../../src/env/probe.ts";
import { pytorchPlugin, pythonPlugin, tensorflowPlugin } from "../../../src/plugins/builtin/index.ts";
import type { PluginContext } from "../../../src/plugins/types.ts";

const ctx = (env: Env): PluginContext => {
  const config = loadAgentConfig(env);
  return { config, env: {}, nodeRank: config.distributed.nodeRank };
};
const cpuBox = fixedProbe({ gpus: 0, cpus: 2 }, { torchrun: "/usr/bin/torchrun", python3: "/usr/bin/python3" });
const gpuBox = fixedProbe({ gpus: 8, cpus: 32 }, { python3: "/opt/conda/bin/python3" });
const trainjob = { PET_NNODES: "2", PET_NODE_RANK: "1", PET_MASTER_ADDR: "j-node-0-0.j", PET_MASTER_PORT: "29500" };

describe("pytorch plugin", () => {
  it.each<[string, Env, HostProbe, Record<string, string>]>([
    [
      "one process per pod",
      trainjob,
      cpuBox,
      { RANK: "1", WORLD_SIZE: "2", LOCAL_RANK: "0", MASTER_ADDR: "j-node-0-0.j" },
    ],
    [
      "auto on a 1-GPU pod stays plain",
      { ...trainjob, PET_NPROC_PER_NODE: "auto" },
      fixedProbe({ gpus: 1, cpus: 8 }),
      { RANK: "1", WORLD_SIZE: "2" },
    ],
    [
      "nproc 4: PET_* for torchrun",
      { ...trainjob, PET_NPROC_PER_NODE: "4" },
      cpuBox,
      { PET_NNODES: "2", PET_NPROC_PER_NODE: "4", PET_NODE_RANK: "1" },
    ],
    [
      "auto on 8 GPUs passes auto through",
      { ...trainjob, PET_NPROC_PER_NODE: "auto" },
      gpuBox,
      { PET_NPROC_PER_NODE: "auto" },
    ],
    [
      "auto with no GPU: container CPUs",
      { ...trainjob, PET_NPROC_PER_NODE: "auto" },
      cpuBox,
      { PET_NPROC_PER_NODE: "2" },
    ],
    [
      "node rank from JOB_COMPLETION_INDEX",
      { PET_NNODES: "2", JOB_COMPLETION_INDEX: "1", PET_NPROC_PER_NODE: "2" },
      cpuBox,
      { PET_NODE_RANK: "1" },
    ],
  ])("env: %s", async (_name, env, probe, expected) => {
    const out = await pytorchPlugin({ probe }).env!(ctx(env));
    expect(out).toMatchObject(expected);
    if ("PET_NNODES" in out) expect(out).not.toHaveProperty("RANK");
  });

  it.each<[string, Env, HostProbe, string[], string[]]>([
    ["nproc 1: argv unchanged", trainjob, cpuBox, ["python3", "train.py"], ["python3", "train.py"]],
    [
      "nproc 2: through torchrun with explicit flags",
      { ...trainjob, PET_NPROC_PER_NODE: "2" },
      cpuBox,
      ["python3", "train.py", "--lr=1"],
      [
        "torchrun",
        "--nnodes=2",
        "--nproc_per_node=2",
        "--node_rank=1",
        "--master_addr=j-node-0-0.j",
        "--master_port=29500",
        "train.py",
        "--lr=1",
      ],
    ],
    [
      "auto on 8 GPUs, no torchrun binary",
      { PET_NPROC_PER_NODE: "auto" },
      gpuBox,
      ["python", "train.py"],
      [
        "python",
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=auto",
        "--node_rank=0",
        "--master_addr=localhost",
        "--master_port=29500",
        "train.py",
      ],
    ],
    [
      "an interpreter path is kept",
      { PET_NPROC_PER_NODE: "2" },
      cpuBox,
      ["/usr/bin/python3", "t.py"],
      [
        "/usr/bin/python3",
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--node_rank=0",
        "--master_addr=localhost",
        "--master_port=29500",
        "t.py",
      ],
    ],
    [
      "already torchrun: unchanged",
      { PET_NPROC_PER_NODE: "4" },
      cpuBox,
      ["torchrun", "--nproc_per_node=4", "t.py"],
      ["torchrun", "--nproc_per_node=4", "t.py"],
    ],
    [
      "already python -m torch.distributed.run: unchanged",
      { PET_NPROC_PER_NODE: "4" },
      cpuBox,
      ["python", "-m", "torch.distributed.run", "t.py"],
      ["python", "-m", "torch.distributed.run", "t.py"],
    ],
  ])("command: %s", async (_name, env, probe, argv, expected) => {
    expect((await pytorchPlugin({ probe }).command!(argv, ctx(env))).argv).toEqual(expected);
  });

  it("a command that already is torchrun gets PET_* only, even with nproc_per_node 1", async () => {
    const env = await pytorchPlugin({ probe: cpuBox }).env!({
      ...ctx(trainjob),
      argv: ["torchrun", "--nproc_per_node=4", "t.py"],
    });
    expect(env).toMatchObject({ PET_NNODES: "2", PET_NODE_RANK: "1", PET_MASTER_ADDR: "j-node-0-0.j" });
    expect(env).not.toHaveProperty("RANK");
    expect(env).not.toHaveProperty("WORLD_SIZE");
    const plain = await pytorchPlugin({ probe: cpuBox }).env!({ ...ctx(trainjob), argv: ["python", "t.py"] });
    expect(plain).toMatchObject({ RANK: "1", WORLD_SIZE: "2" });
  });

  it("rejects gpu on a pod without GPUs (ENV_INVALID)", async () => {
    await expect(async () =>
      pytorchPlugin({ probe: cpuBox }).env!(ctx({ PET_NPROC_PER_NODE: "gpu" })),
    ).rejects.toMatchObject({
      code: "ENV_INVALID",
    });
  });

  it("probes the GPUs with the child's CUDA_VISIBLE_DEVICES", async () => {
    const seen: string[] = [];
    const probe: HostProbe = {
      resources: (env) => {
        seen.push(env.CUDA_VISIBLE_DEVICES ?? "");
        return { gpus: 1, cpus: 4 };
      },
      which: () => undefined,
    };
    await pytorchPlugin({ probe }).env!(ctx({ PET_NPROC_PER_NODE: "auto", CUDA_VISIBLE_DEVICES: "3" }));
    expect(seen).toEqual(["3"]);
  });
});

describe("python plugin", () => {
  it("sets plain-python ranks, resolving auto, and has no command hook", async () => {
    const p = pythonPlugin({ probe: gpuBox });
    expect(await p.env!(ctx({ ...trainjob, PET_NPROC_PER_NODE: "auto" }))).toMatchObject({
      RANK: "8",
      WORLD_SIZE: "16",
      LOCAL_RANK: "0",
      LOCAL_WORLD_SIZE: "8",
      NODE_RANK: "1",
    });
    expect(p.command).toBeUndefined();
  });
});

describe("tensorflow plugin", () => {
  it("builds TF_CONFIG from the TrainJob's PET_* and leaves argv alone", async () => {
    const p = tensorflowPlugin();
    expect(await p.env!(ctx({ ...trainjob, TF_PORT: "2223" }))).toEqual({
      TF_CONFIG: '{"cluster":{"worker":["j-node-0-0.j:2223","j-node-0-1.j:2223"]},"task":{"type":"worker","index":1}}',
    });
    expect(p.command).toBeUndefined();
  });

  it("uses the pod hostname when PET_MASTER_ADDR is absent", async () => {
    const out = await tensorflowPlugin().env!(
      ctx({ PET_NNODES: "2", JOB_COMPLETION_INDEX: "0", HOSTNAME: "tf-node-0-0" }),
    );
    expect(JSON.parse(out.TF_CONFIG!).cluster.worker).toEqual(["tf-node-0-0.tf:2222", "tf-node-0-1.tf:2222"]);
  });

  it("sets nothing when TF_CONFIG is already there", async () => {
    expect(await tensorflowPlugin().env!(ctx({ ...trainjob, TF_CONFIG: '{"cluster":{}}' }))).toEqual({});
  });
});
