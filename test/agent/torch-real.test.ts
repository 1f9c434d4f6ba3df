/**
 * Real PyTorch (Debian torch 1.13, CPU, gloo) through `trainer-agent run --framework pytorch`: the agent's
 * translated environment must form a correct process group. Each rank contributes 2^rank to an all_reduce, so
 * the sum is 2^WORLD_SIZE - 1 only when every rank is present exactly once.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStub } from "../backend-stub/helpers.ts";

const PYTHON = "/usr/bin/python3";
const torchAvailable = spawnSync(PYTHON, ["-c", "import torch.distributed"], { stdio: "ignore" }).status === 0;
const root = join(import.meta.dirname, "../..");
const agentBin = join(root, "bin/trainer-agent.js");
// The --redirects crash is torch 1.x's torchrun (Debian's 1.13 here).
const oldTorch =
  torchAvailable &&
  spawnSync(PYTHON, ["-c", "import sys, torch; sys.exit(int(torch.__version__.split('.')[0]) >= 2)"]).status === 0;
const torchrunOnPath = spawnSync("sh", ["-c", "command -v torchrun"], { stdio: "ignore" }).status === 0;

const SCRIPT = String.raw`
import datetime, os, torch, torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.tensor([float(2 ** rank)], dtype=torch.float64)
dist.all_reduce(t)
e = os.environ
line = ("TORCH_RANK_LINE RANK=%s WORLD_SIZE=%s LOCAL_RANK=%s LOCAL_WORLD_SIZE=%s NODE_RANK=%s dist_rank=%d dist_world=%d sum=%d torchrun=%d"
      % (e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"], e["LOCAL_WORLD_SIZE"], e.get("GROUP_RANK", "?"), rank, world, int(t.item()), "TORCHELASTIC_RUN_ID" in e))
# One write per line: with PYTHONUNBUFFERED print() writes the text and the newline separately, and the
# workers of a node share one pipe.
os.write(1, (line + "\n").encode())
dist.barrier()
dist.destroy_process_group()
`;

interface RankLine {
  RANK: number;
  WORLD_SIZE: number;
  LOCAL_RANK: number;
  LOCAL_WORLD_SIZE: number;
  NODE_RANK: number;
  dist_rank: number;
  dist_world: number;
  sum: number;
  /** 1 when torchrun started the process (it sets TORCHELASTIC_RUN_ID), 0 for a plain launch. */
  torchrun: number;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "torch-real-"));
  await writeFile(join(dir, "ddp_check.py"), SCRIPT);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

/** One agent as one pod would run it; resolves with its exit code and output. */
function runAgent(
  env: Record<string, string | undefined>,
  python = PYTHON,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [agentBin, "run", "--framework", "pytorch", "--", python, join(dir, "ddp_check.py")],
      {
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: process.env.HOME ?? dir,
          PET_MASTER_ADDR: "127.0.0.1",
          // torch 1.13's torchrun needs these to keep worker output flowing (tests and demos only).
          PET_REDIRECTS: "9:1",
          PET_TEE: "9:1",
          DATASET_DIR: join(dir, "dataset"),
          CHECKPOINT_DIR: join(dir, "checkpoints"),
          OMP_NUM_THREADS: "1",
          ...env,
        } as Record<string, string>,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function rankLines(stdout: string): RankLine[] {
  const out: RankLine[] = [];
  for (const m of stdout.matchAll(/TORCH_RANK_LINE ((?:[A-Za-z_]+=-?\d+ ?)+)/g)) {
    const fields = Object.fromEntries(
      m[1]!
        .trim()
        .split(" ")
        .map((kv) => kv.split("=") as [string, string]),
    );
    out.push(Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Number(v)])) as unknown as RankLine);
  }
  return out;
}

/** Runs `nnodes` agents with `nproc` processes each and checks every rank of the world. */
async function world(nnodes: number, nproc: number, python = PYTHON): Promise<void> {
  const port = await freePort();
  const results = await Promise.all(
    Array.from({ length: nnodes }, (_, node) =>
      runAgent(
        {
          PET_NNODES: String(nnodes),
          PET_NODE_RANK: String(node),
          PET_NPROC_PER_NODE: String(nproc),
          PET_MASTER_PORT: String(port),
        },
        python,
      ),
    ),
  );
  const size = nnodes * nproc;
  const lines: RankLine[] = [];
  results.forEach((r, node) => {
    const context = `node ${node} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`;
    expect(r.code, context).toBe(0);
    const mine = rankLines(r.stdout);
    expect(mine, context).toHaveLength(nproc);
    for (const l of mine) {
      expect(l.NODE_RANK, context).toBe(node);
      expect(l.RANK, context).toBe(node * nproc + l.LOCAL_RANK);
    }
    lines.push(...mine);
  });
  expect(lines.map((l) => l.RANK).sort((a, b) => a - b)).toEqual([...Array(size).keys()]);
  for (const l of lines) {
    expect(l.WORLD_SIZE).toBe(size);
    expect(l.LOCAL_WORLD_SIZE).toBe(nproc);
    expect(l.dist_rank).toBe(l.RANK);
    expect(l.dist_world).toBe(size);
    expect(l.sum).toBe(2 ** size - 1);
    expect(l.torchrun).toBe(nproc > 1 ? 1 : 0);
  }
}

describe.skipIf(!torchAvailable)("real PyTorch through trainer-agent run --framework pytorch (gloo)", () => {
  it("2 agents x 1 process: plain python with RANK/WORLD_SIZE from the agent", async () => {
    await world(2, 1);
  }, 90_000);

  it("1 agent x 2 processes: through torchrun", async () => {
    await world(1, 2);
  }, 90_000);

  it("2 agents x 2 processes: torchrun on each node, one world of 4", async () => {
    await world(2, 2);
  }, 120_000);

  // A bare interpreter name goes to the torchrun on PATH, which runs the script with the interpreter torch is
  // installed in (here the PATH's python3 may be another one, without torch).
  it.skipIf(!torchrunOnPath)(
    "1 agent x 2 processes from a bare `python3`: torchrun from PATH",
    async () => {
      await world(1, 2, "python3");
    },
    90_000,
  );

  it.skipIf(!oldTorch)(
    "without PET_REDIRECTS/PET_TEE old torchrun crashes: done.reason and the last line name the fix",
    async () => {
      const s = await startStub();
      try {
        const job = await s.stub.createJob();
        const r = await runAgent({
          PET_NPROC_PER_NODE: "2",
          PET_MASTER_PORT: String(await freePort()),
          PET_REDIRECTS: undefined,
          PET_TEE: undefined,
          BACKEND_BASE_URL: s.url,
          JOB_ID: job.id,
          CALLBACK_TOKEN: job.token,
        });
        const last = r.stderr.trimEnd().split("\n").at(-1);
        expect(last, r.stderr.slice(-3000)).toMatch(
          /^trainer-agent: TORCHRUN_OLD_REDIRECTS: .*set PET_REDIRECTS=9:1 PET_TEE=9:1 \(AttributeError: /,
        );
        const view = (await s.stub.getJob(job.id))!;
        expect(view.done).toMatchObject({ status: "failed", exit_code: 1 });
        expect(view.done?.reason).toContain("set PET_REDIRECTS=9:1 PET_TEE=9:1");
      } finally {
        await s.stop();
      }
    },
    90_000,
  );
});
