import { describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import {
  assertWorld,
  isTorchrunArgv,
  plainPythonEnv,
  torchrunArgv,
  torchrunEnv,
  torchrunFlags,
  type TorchWorld,
} from "../../src/env/torch.ts";

const world = (w: Partial<TorchWorld> = {}): TorchWorld => ({
  nnodes: 1,
  nprocPerNode: 1,
  nodeRank: 0,
  masterAddr: "localhost",
  masterPort: 29500,
  ...w,
});

describe("plainPythonEnv", () => {
  it.each<[string, Partial<TorchWorld>, number, Record<string, string>]>([
    ["single node", {}, 0, { RANK: "0", WORLD_SIZE: "1", LOCAL_RANK: "0", LOCAL_WORLD_SIZE: "1", NODE_RANK: "0" }],
    [
      "node 1 of 2",
      { nnodes: 2, nodeRank: 1 },
      0,
      { RANK: "1", WORLD_SIZE: "2", LOCAL_WORLD_SIZE: "1", NODE_RANK: "1", GROUP_RANK: "1", GROUP_WORLD_SIZE: "2" },
    ],
    // WORLD_SIZE counts processes, not pods (the seed's bash used the node count).
    [
      "node 1 of 2, 4 per node",
      { nnodes: 2, nprocPerNode: 4, nodeRank: 1 },
      0,
      { RANK: "4", WORLD_SIZE: "8", LOCAL_RANK: "0", LOCAL_WORLD_SIZE: "4", NODE_RANK: "1" },
    ],
    [
      "node 2 of 3, 8 per node, local 5",
      { nnodes: 3, nprocPerNode: 8, nodeRank: 2 },
      5,
      { RANK: "21", WORLD_SIZE: "24", LOCAL_RANK: "5", LOCAL_WORLD_SIZE: "8" },
    ],
    [
      "master of a TrainJob",
      { nnodes: 2, masterAddr: "j-node-0-0.j", masterPort: 23456 },
      0,
      { MASTER_ADDR: "j-node-0-0.j", MASTER_PORT: "23456" },
    ],
  ])("%s", (_name, w, localRank, expected) => {
    expect(plainPythonEnv(world(w), localRank)).toMatchObject(expected);
  });

  it("sets exactly the documented variables", () => {
    expect(Object.keys(plainPythonEnv(world())).sort()).toEqual(
      [
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "NODE_RANK",
        "RANK",
        "WORLD_SIZE",
      ].sort(),
    );
  });

  it("gives every process of a 3 x 4 world a distinct rank below WORLD_SIZE", () => {
    const ranks = new Set<number>();
    for (let node = 0; node < 3; node++)
      for (let local = 0; local < 4; local++) {
        const env = plainPythonEnv(world({ nnodes: 3, nprocPerNode: 4, nodeRank: node }), local);
        expect(env.WORLD_SIZE).toBe("12");
        ranks.add(Number(env.RANK));
      }
    expect([...ranks].sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
  });

  it.each<[string, Partial<TorchWorld>, number, string]>([
    ["zero nodes", { nnodes: 0 }, 0, "PET_NNODES must be a positive integer"],
    ["negative nproc", { nprocPerNode: -1 }, 0, "PET_NPROC_PER_NODE must be a positive integer"],
    ["fractional nproc", { nprocPerNode: 1.5 }, 0, "PET_NPROC_PER_NODE must be a positive integer"],
    ["node rank == nnodes", { nnodes: 2, nodeRank: 2 }, 0, 'PET_NODE_RANK must be less than PET_NNODES (2), got "2"'],
    ["negative node rank", { nodeRank: -1 }, 0, "PET_NODE_RANK must be a non-negative integer"],
    ["port 0", { masterPort: 0 }, 0, 'PET_MASTER_PORT must be a port from 1 to 65535, got "0"'],
    ["port 70000", { masterPort: 70000 }, 0, 'PET_MASTER_PORT must be a port from 1 to 65535, got "70000"'],
    ["empty master", { masterAddr: " " }, 0, "PET_MASTER_ADDR must be a host name or IP address"],
    ["local rank >= nproc", { nprocPerNode: 2 }, 2, 'LOCAL_RANK must be from 0 to 1, got "2"'],
  ])("rejects %s (ENV_INVALID)", (_name, w, localRank, message) => {
    let caught: unknown;
    try {
      plainPythonEnv(world(w), localRank);
    } catch (error) {
      caught = error;
    }
    expect(isAgentError(caught, "ENV_INVALID")).toBe(true);
    expect((caught as Error).message).toContain(message);
  });

  it("assertWorld accepts a valid world", () => {
    expect(() => assertWorld(world({ nnodes: 4, nodeRank: 3, nprocPerNode: 8, masterPort: 65535 }))).not.toThrow();
  });
});

describe("torchrun launch", () => {
  const w = { nnodes: 2, nodeRank: 1, masterAddr: "j-node-0-0.j", masterPort: 29500 };

  it("passes PET_* through, normalised, and sets nothing torchrun sets per worker", () => {
    const env = torchrunEnv(w, "auto");
    expect(env).toEqual({
      PET_NNODES: "2",
      PET_NPROC_PER_NODE: "auto",
      PET_NODE_RANK: "1",
      PET_MASTER_ADDR: "j-node-0-0.j",
      PET_MASTER_PORT: "29500",
    });
    for (const name of [
      "RANK",
      "WORLD_SIZE",
      "LOCAL_RANK",
      "LOCAL_WORLD_SIZE",
      "MASTER_ADDR",
      "MASTER_PORT",
      "GROUP_RANK",
    ])
      expect(env).not.toHaveProperty(name);
  });

  it("writes the rendezvous flags out in spellings torch 1.x and 2.x both accept", () => {
    expect(torchrunFlags(w, "4")).toEqual([
      "--nnodes=2",
      "--nproc_per_node=4",
      "--node_rank=1",
      "--master_addr=j-node-0-0.j",
      "--master_port=29500",
    ]);
  });

  it("rejects a node rank outside the world", () => {
    expect(() => torchrunEnv({ ...w, nodeRank: 2 }, "2")).toThrow(/PET_NODE_RANK must be less than PET_NNODES/);
  });

  it.each<[string[], boolean]>([
    [["torchrun", "train.py"], true],
    [["/usr/bin/torchrun", "--nproc_per_node=2", "train.py"], true],
    [["python", "-m", "torch.distributed.run", "train.py"], true],
    [["python3", "-u", "-m", "torch.distributed.run", "train.py"], true],
    [["/opt/conda/bin/python3.11", "-mtorch.distributed.run", "train.py"], true],
    [["python", "-X", "dev", "-m", "torch.distributed.launch", "train.py"], true],
    [["python", "train.py"], false],
    [["python", "-m", "mypkg.train"], false],
    [["python", "-c", "import torch"], false],
    [["python", "train.py", "-m", "torch.distributed.run"], false],
    [["bash", "-c", "torchrun train.py"], false],
    [["torchrunner", "x"], false],
    [[], false],
  ])("isTorchrunArgv(%j) = %s", (argv, expected) => {
    expect(isTorchrunArgv(argv)).toBe(expected);
  });

  const flags = ["--nnodes=1", "--nproc_per_node=2"];
  it.each<[string, string[], { torchrun?: string; python?: string }, string[]]>([
    [
      "bare python + torchrun on PATH",
      ["python3", "train.py", "--lr", "0.1"],
      { torchrun: "/usr/bin/torchrun" },
      ["torchrun", ...flags, "train.py", "--lr", "0.1"],
    ],
    [
      "bare python, no torchrun",
      ["python", "train.py"],
      {},
      ["python", "-m", "torch.distributed.run", ...flags, "train.py"],
    ],
    [
      "interpreter path keeps that interpreter",
      ["/usr/bin/python3", "train.py", "a"],
      { torchrun: "/usr/local/bin/torchrun" },
      ["/usr/bin/python3", "-m", "torch.distributed.run", ...flags, "train.py", "a"],
    ],
    [
      "interpreter options kept for every worker",
      ["python3", "-X", "faulthandler", "train.py"],
      { torchrun: "/usr/bin/torchrun" },
      ["torchrun", ...flags, "--no_python", "python3", "-X", "faulthandler", "train.py"],
    ],
    [
      "python -m module",
      ["/venv/bin/python", "-m", "pkg.train", "--epochs", "3"],
      {},
      [
        "/venv/bin/python",
        "-m",
        "torch.distributed.run",
        ...flags,
        "--no_python",
        "/venv/bin/python",
        "-m",
        "pkg.train",
        "--epochs",
        "3",
      ],
    ],
    [
      "python -c",
      ["python", "-c", "print(1)"],
      { torchrun: "/t/torchrun" },
      ["torchrun", ...flags, "--no_python", "python", "-c", "print(1)"],
    ],
    [
      "a non-python program with torchrun",
      ["bash", "train.sh"],
      { torchrun: "/t/torchrun" },
      ["torchrun", ...flags, "--no_python", "bash", "train.sh"],
    ],
    [
      "a non-python program, python from PATH",
      ["./train"],
      { python: "/usr/bin/python3" },
      ["/usr/bin/python3", "-m", "torch.distributed.run", ...flags, "--no_python", "./train"],
    ],
  ])("torchrunArgv: %s", (_name, argv, find, expected) => {
    expect(torchrunArgv(argv, flags, { torchrun: find.torchrun, python: find.python })).toEqual(expected);
  });

  it("fails clearly when neither torchrun nor python is on PATH", () => {
    expect(() => torchrunArgv(["./train"], flags, { torchrun: undefined, python: undefined })).toThrow(
      /neither torchrun nor python3\/python is on PATH/,
    );
  });
});
