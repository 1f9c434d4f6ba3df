/**
 * Across real hosts: two "pods" in two network namespaces made here, joined by a bridge in the root namespace
 * (one veth per pod), each with its own /etc/netns/<name>/hosts giving the JobSet names (`tj-node-0-0.tj`,
 * `tj-node-0-1.tj`) and mapping the machine's hostname to the pod's own address, as a pod's /etc/hosts does (gloo
 * binds to what the hostname resolves to). The backend stub and the S3 server listen on the bridge address.
 * One agent per pod runs real torch DDP over gloo with PET_MASTER_ADDR a hostname; once epochs and a checkpoint
 * reached the stub and S3, node 1's link is cut (`ip link set down`). Rank 0 blocks in its all-reduce: node 0's
 * watchdog reports `stalled`, stores the checkpoint and ends the job; node 1's own watchdog ends its side (it
 * cannot reach the backend any more, so its `done` gives up after DONE_DEADLINE_SECONDS). Both exit 75.
 *
 * Needs root (`ip netns add`) and torch; skipped with the reason otherwise. Every wait is on a condition, bounded
 * only to turn a hang into a failure; the names are unique per run and removed in every case.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signalGroup } from "../../src/process/group.ts";
import { startStub, type Running } from "../backend-stub/helpers.ts";
import { until } from "../faults/harness.ts";
import { createBucket, startFauxqs, storedCheckpoints, type TestServer } from "../storage/helpers.ts";

const PYTHON = "/usr/bin/python3";
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin/trainer-agent.js");
const HELPER_DIR = join(ROOT, "python");
const STALL_SECONDS = 6;

/** Why this machine cannot run the test, or undefined when it can. */
function missing(): string | undefined {
  if (process.platform !== "linux") return "network namespaces are Linux only";
  if (process.getuid?.() !== 0) return "needs root for ip netns add";
  if (spawnSync(PYTHON, ["-c", "import torch.distributed"], { stdio: "ignore" }).status !== 0)
    return `no torch in ${PYTHON}`;
  const probe = `wdprobe${process.pid}`;
  const added = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8" });
  if (added.status !== 0)
    return `ip netns add is not allowed here (${(added.stderr ?? added.error?.message ?? "").trim()})`;
  spawnSync("ip", ["netns", "del", probe]);
  return undefined;
}
const why = missing();

// The training: every rank prints each step (so each node's watchdog sees progress), rank 0 reports epochs and
// saves a checkpoint per epoch. Until the first step a helper process prints: imports and the rendezvous take
// longer than STALL_SECONDS on a loaded machine, and a Python thread could not print while `import torch` holds
// the GIL. The gloo timeout is far above the stall limit: the watchdog acts first, gloo only bounds a failure.
const SCRIPT = String.raw`
import os, subprocess, sys, time
beat = subprocess.Popen(["sh", "-c", "while :; do echo starting; sleep 0.5; done"])
import datetime, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
sys.path.insert(0, os.environ["HELPER_DIR"])
import trainer_agent as ta
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = DDP(torch.nn.Linear(1, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(8, 1); y = 2 * x + 1
ck = os.environ["CHECKPOINT_DIR"]
for epoch in range(1, 100000):
    for step in range(4):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # the all-reduce across the two pods
        opt.step()
        if beat is not None:
            beat.kill(); beat.wait(); beat = None
        print("rank %d epoch %d step %d loss %.4f" % (rank, epoch, step, loss.item()), flush=True)
        time.sleep(0.1)
    if rank == 0:
        path = os.path.join(ck, "epoch-%d.pt" % epoch)
        torch.save({"epoch": epoch, "model": model.module.state_dict()}, path + ".tmp")
        os.replace(path + ".tmp", path)
        ta.report(epoch=epoch, loss=loss.item())
        ta.checkpoint(path)
`;

interface Pod {
  ns: string;
  veth: string;
  address: string;
  dns: string;
}

describe.skipIf(why !== undefined)(
  `two pods in network namespaces, real torch DDP over gloo${why === undefined ? "" : ` (skipped: ${why})`}`,
  () => {
    const id = `${process.pid % 100_000}${randomInt(100, 1000)}`;
    const subnet = `10.${randomInt(64, 128)}.${randomInt(0, 256)}`;
    const bridge = `wdb${id}`;
    const pods: Pod[] = [0, 1].map((i) => ({
      ns: `wd${id}n${i}`,
      veth: `wd${id}h${i}`,
      address: `${subnet}.${i + 2}`,
      dns: `tj-node-0-${i}.tj`,
    }));
    const agents: ChildProcess[] = [];
    let stub: Running | undefined;
    let s3: TestServer | undefined;
    let dir: string;

    const ip = (...args: string[]): void => {
      const r = spawnSync("ip", args, { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
    };

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "netns-stall-"));
      await writeFile(join(dir, "train.py"), SCRIPT);
      ip("link", "add", bridge, "type", "bridge");
      ip("addr", "add", `${subnet}.1/24`, "dev", bridge);
      ip("link", "set", bridge, "up");
      const hosts = (own: string) =>
        [
          "127.0.0.1 localhost",
          ...pods.map(
            (p) => `${p.address} ${p.dns} ${p.dns.split(".")[0]}${p.address === own ? ` ${hostname()}` : ""}`,
          ),
          "",
        ].join("\n");
      for (const p of pods) {
        await mkdir(`/etc/netns/${p.ns}`, { recursive: true });
        await writeFile(`/etc/netns/${p.ns}/hosts`, hosts(p.address));
        ip("netns", "add", p.ns);
        ip("link", "add", p.veth, "type", "veth", "peer", "name", `${p.veth}p`);
        ip("link", "set", p.veth, "master", bridge, "up");
        ip("link", "set", `${p.veth}p`, "netns", p.ns);
        ip("-n", p.ns, "link", "set", `${p.veth}p`, "name", "eth0");
        ip("-n", p.ns, "addr", "add", `${p.address}/24`, "dev", "eth0");
        ip("-n", p.ns, "link", "set", "eth0", "up");
        ip("-n", p.ns, "link", "set", "lo", "up");
      }
      [stub, s3] = await Promise.all([startStub({}, `${subnet}.1`), startFauxqs(`${subnet}.1`)]);
      await createBucket(s3.endpoint, "ck");
    }, 60_000);

    afterAll(async () => {
      for (const a of agents) {
        if (a.pid !== undefined && a.exitCode === null && a.signalCode === null) {
          try {
            signalGroup(a.pid, "SIGKILL");
          } catch {
            // already gone
          }
        }
      }
      await Promise.all([stub?.stop(), s3?.stop()]);
      // Each step on its own: one that fails must not leave the rest behind.
      for (const p of pods) {
        spawnSync("ip", ["link", "del", p.veth]);
        spawnSync("ip", ["netns", "del", p.ns]);
        await rm(`/etc/netns/${p.ns}`, { recursive: true, force: true });
      }
      spawnSync("ip", ["link", "del", bridge]);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    function startAgent(node: number, env: Record<string, string>) {
      const pod = pods[node] as Pod;
      const a = spawn(
        "ip",
        [
          "netns",
          "exec",
          pod.ns,
          process.execPath,
          BIN,
          "run",
          "--framework",
          "pytorch",
          "--",
          PYTHON,
          join(dir, "train.py"),
        ],
        {
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            HOME: dir,
            HELPER_DIR,
            OMP_NUM_THREADS: "1",
            PET_NNODES: "2",
            PET_NODE_RANK: String(node),
            PET_NPROC_PER_NODE: "1",
            PET_MASTER_ADDR: "tj-node-0-0.tj",
            PET_MASTER_PORT: "29500",
            PET_REDIRECTS: "9:1", // old torch (Debian's 1.13) needs them; harmless otherwise
            PET_TEE: "9:1",
            CHECKPOINT_DIR: join(dir, `pod${node}`, "ck"),
            DATASET_DIR: join(dir, `pod${node}`, "ds"),
            STALL_SECONDS: String(STALL_SECONDS),
            STALL_ACTION: "terminate",
            TERMINATION_GRACE_SECONDS: "5",
            DONE_DEADLINE_SECONDS: "5",
            CALLBACK_TIMEOUT_SECONDS: "2",
            HEARTBEAT_INTERVAL_SECONDS: "3600",
            ...env,
          },
          stdio: ["ignore", "pipe", "pipe"],
          detached: true, // its own group: the cleanup can end the agent and its child together
        },
      );
      agents.push(a);
      let stdout = "";
      let stderr = "";
      a.stdout?.on("data", (c: Buffer) => (stdout += c.toString()));
      a.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<number | null>((resolve) => a.on("close", resolve));
      return { exited, stdout: () => stdout, stderr: () => stderr };
    }

    it("the link cut mid-training: stalled from node 0, the checkpoint stored, both agents exit 75", async () => {
      const job = await stub!.stub.createJob({ name: "netns-stall" });
      const env = {
        BACKEND_BASE_URL: stub!.url,
        JOB_ID: job.id,
        CALLBACK_TOKEN: job.token,
        S3_ENDPOINT: s3!.endpoint,
        S3_BUCKET: "ck",
        S3_ACCESS_KEY_ID: "S3RVER",
        S3_SECRET_ACCESS_KEY: "S3RVER",
      };
      const nodes = [startAgent(0, env), startAgent(1, env)];
      const context = () =>
        nodes
          .map((n, i) => `--- node ${i} stdout\n${n.stdout().slice(-1500)}\n--- stderr\n${n.stderr().slice(-3000)}`)
          .join("\n");
      const view = async () => (await stub!.stub.getJob(job.id))!;
      const prefix = `checkpoints/job-${job.id}/`;
      const uploaded = (v: Awaited<ReturnType<typeof view>>) =>
        v.events.filter((e) => e.type === "checkpoint_uploaded").map((e) => String(e.data?.key));

      // Training runs across the pods: epochs reach the stub, a checkpoint reaches S3.
      const training = Promise.race([
        until(
          "two epochs and a stored checkpoint",
          async () => {
            const v = await view();
            return v.heartbeats.some((h) => (h.epoch ?? 0) >= 2) && uploaded(v).length > 0;
          },
          180_000,
        ),
        ...nodes.map((n, i) =>
          n.exited.then((code) => {
            throw new Error(`node ${i} exited ${code} before training progressed\n${context()}`);
          }),
        ),
      ]);
      await training;
      const before = (await view()).events.filter((e) => e.type === "stalled");
      expect(before, context()).toEqual([]);
      expect(nodes[1]!.stdout()).toMatch(/rank 1 epoch 2 step/);

      const cutAt = Date.now();
      ip("link", "set", pods[1]!.veth, "down");

      const codes = await Promise.race([
        Promise.all(nodes.map((n) => n.exited)),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`the agents did not exit after the cut\n${context()}`)), 150_000).unref(),
        ),
      ]);
      const seconds = (Date.now() - cutAt) / 1000;
      expect(codes, context()).toEqual([75, 75]);

      const v = await view();
      const stalled = v.events.filter((e) => e.type === "stalled");
      expect(stalled, context()).toHaveLength(1); // node 1's cannot reach the backend any more
      expect(stalled[0]?.data).toMatchObject({ node_rank: 0, stall_seconds: STALL_SECONDS, action: "terminate" });
      expect(stalled[0]?.data?.quiet_seconds).toBeGreaterThanOrEqual(STALL_SECONDS);
      expect(stalled[0]?.message).toContain("node 0's command");
      expect(v.done, context()).toMatchObject({ status: "failed", exit_code: 75, node_rank: 0, nnodes: 2 });
      expect(v.done?.reason).toContain(
        "after STALL_ACTION=terminate; STALLED: no output or report from node 0's command",
      );
      expect(v.state).toBe("FAILED");
      for (const [i, n] of nodes.entries())
        expect(n.stderr()).toMatch(
          new RegExp(`^trainer-agent: STALLED: no output or report from node ${i}'s command`, "m"),
        );

      // The latest checkpoint on node 0's disk when it stalled is stored: the object and its manifest.
      const last = Math.max(...[...nodes[0]!.stdout().matchAll(/rank 0 epoch (\d+) step 3/g)].map((m) => Number(m[1])));
      const keys = (v.done?.checkpoints ?? []).map((c) => c.key);
      expect(keys, context()).toContain(`${prefix}epoch-${last}.pt`);
      const stored = await storedCheckpoints(s3!.endpoint, "ck", prefix);
      expect(stored.objects).toContain(`${prefix}epoch-${last}.pt`);
      expect(stored.manifestNames).toContain(`epoch-${last}.pt`);
      console.log(
        `netns stall: both agents exited ${seconds.toFixed(1)} s after the cut (STALL_SECONDS=${STALL_SECONDS})`,
      );
    }, 400_000);
  },
);
