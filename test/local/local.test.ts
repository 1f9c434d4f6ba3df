/**
 * `trainer-agent local` end to end: real agents (`node bin/trainer-agent.js run`), real Python trainings, the real
 * backend stub over HTTP and a real S3-compatible server (fauxqs) on 127.0.0.1. Nothing is mocked.
 */
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { startFauxqs } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackendStub, type BackendStub } from "../../backend-stub/src/index.ts";
import { runLocal, type LocalOptions } from "../../src/local/runner.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = join(ROOT, "bin/trainer-agent.js");
const PLAIN = join(ROOT, "examples/plain_train.py");
const DDP = join(ROOT, "examples/ddp_train.py");
const PREDICT = join(ROOT, "examples/predict.py");
const DATA = join(ROOT, "examples/data");
const HELPER = join(ROOT, "python/trainer_agent.py");
const haveTorch = existsSync("/usr/bin/torchrun");

/** The environment a user's shell would give: no storage, no backend configured. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "LANG", "TMPDIR"]) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(
  args: string[],
  env: Record<string, string>,
  onStdout?: (text: string, child: ReturnType<typeof spawn>) => void,
) {
  return new Promise<CliResult>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "local", ...args], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
      onStdout?.(stdout, child);
    });
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "trainer-local-test-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("trainer-agent local (the command, fully embedded)", () => {
  it("runs 2 nodes: dataset pulled by both, epochs reported, checkpoint in the bucket, exit 0", async () => {
    const workdir = join(tmp, "run-ok");
    const res = await cli(
      ["--nodes", "2", "--dataset", DATA, "--workdir", workdir, "--", "python3", PLAIN, "--epochs", "3"],
      baseEnv(),
    );
    expect(res.code, res.stdout + res.stderr).toBe(0);
    // Both nodes materialised the dataset in their own DATASET_DIR.
    for (const node of ["node0", "node1"]) {
      const csv = await readFile(join(workdir, node, "dataset", "regression.csv"), "utf8");
      expect(csv.split("\n")[0]).toBe("x,y");
    }
    // Each node's shard of the data, printed by the training itself, shows RANK/WORLD_SIZE per node.
    expect(res.stdout).toMatch(/^\[node0\] rank 0\/2: 1000 points/m);
    expect(res.stdout).toMatch(/^\[node1\] rank 1\/2: 1000 points/m);
    expect(res.stdout).toMatch(/state SUCCEEDED/);
    // Every node says which node it is in done, so the job ends only when both have: node 0's epochs all count.
    expect(res.stdout).toMatch(/^epochs +3\/3/m);
    expect(res.stdout).toMatch(/s3:\/\/trainer-local\/checkpoints\/job-[\w-]+\/epoch-3\.json/);
    expect(res.stdout).toMatch(/dataset {4}datasets\/data\.tar\.gz \(2 files/);
    // The helper was on PYTHONPATH: its reports went to the agent (no "not running under trainer-agent").
    expect(res.stdout + res.stderr).not.toContain("not running under trainer-agent");
    // Raw node output is kept per node; the agents' relay left the training's lines unchanged.
    const log0 = await readFile(join(workdir, "node0", "output.log"), "utf8");
    expect(log0).toContain("rank 0 epoch 3/3 loss");
    expect(log0).not.toContain("[node0]");
  }, 60_000);

  it("--keyless: agents with no storage keys pull --dataset by a presigned URL and store through the stub", async () => {
    const workdir = join(tmp, "run-keyless");
    // The training fails (9) if any storage key reached it, that is, the agent's environment.
    const check = `env | grep -E '^(AWS|S3|MINIO|R2)_' && exit 9; exec python3 ${PLAIN} --epochs 2`;
    const res = await cli(
      ["--keyless", "--nodes", "2", "--dataset", DATA, "--workdir", workdir, "--", "sh", "-c", check],
      baseEnv(),
    );
    expect(res.code, res.stdout + res.stderr).toBe(0);
    for (const node of ["node0", "node1"]) {
      const csv = await readFile(join(workdir, node, "dataset", "regression.csv"), "utf8");
      expect(csv.split("\n")[0]).toBe("x,y");
    }
    expect(res.stdout).toMatch(/storage +embedded S3 .* \(keyless: no keys in the agents/);
    expect(res.stdout).toMatch(/state SUCCEEDED/);
    expect(res.stdout).toMatch(/s3:\/\/trainer-local\/checkpoints\/job-[\w-]+\/epoch-2\.json/);
    expect(res.stdout + res.stderr).not.toMatch(/X-Amz-Signature=\w/);

    const refused = await cli(["--keyless", "--", "true"], {
      ...baseEnv(),
      S3_ENDPOINT: "http://127.0.0.1:1",
      S3_BUCKET: "b",
    });
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain("--keyless runs against the embedded S3 server");
  }, 90_000);

  it("stores a checkpoint larger than the embedded server's request limit (multipart parts sized for it)", async () => {
    const workdir = join(tmp, "run-big-checkpoint");
    const script = join(tmp, "big_checkpoint.py");
    await writeFile(
      script,
      [
        "import os, trainer_agent",
        "path = os.path.join(os.environ['CHECKPOINT_DIR'], 'model.bin')",
        "if os.environ.get('RANK') == '0':",
        "    with open(path, 'wb') as f:",
        "        f.write(os.urandom(24 * 1024 * 1024))",
        "    trainer_agent.checkpoint(path)",
        "trainer_agent.report(epoch=1, total_epochs=1, loss=0.1)",
      ].join("\n"),
    );
    const res = await cli(["--nodes", "1", "--workdir", workdir, "--", "python3", script], baseEnv());
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(/checkpoints\/job-[\w-]+\/model\.bin {2}\(24 MiB\)/);
  }, 60_000);

  it("CHECKPOINT_UPLOAD=sharded: each node's part of the job's checkpoints is listed, manifests left out", async () => {
    const workdir = join(tmp, "run-sharded");
    const script = join(tmp, "sharded_checkpoint.py");
    await writeFile(
      script,
      [
        "import os, trainer_agent",
        "path = os.path.join(os.environ['CHECKPOINT_DIR'], 'shard.bin')",
        "with open(path, 'wb') as f:",
        "    f.write(b'x' * 1000)",
        "trainer_agent.checkpoint(path)",
        "trainer_agent.report(epoch=1, total_epochs=1, loss=0.1)",
      ].join("\n"),
    );
    const res = await cli(["--nodes", "2", "--workdir", workdir, "--", "python3", script], {
      ...baseEnv(),
      CHECKPOINT_UPLOAD: "sharded",
    });
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(/checkpoints 2 objects in bucket trainer-local \(\+ 2 manifests under _manifests\/\)/);
    for (const node of ["node-0", "node-1"])
      expect(res.stdout).toMatch(new RegExp(`s3://trainer-local/checkpoints/job-[\\w-]+/${node}/shard\\.bin`));
    expect(res.stdout).not.toMatch(/s3:\/\/\S+\/_manifests\//);
  }, 60_000);

  it("stops every node cleanly on Ctrl-C: SIGINT -> agents cancel, exit 130, no process left", async () => {
    const marker = `0.0${Date.now()}`; // a unique --lr to find leftover processes by
    let sent = false;
    const res = await cli(
      [
        "--nodes",
        "2",
        "--dataset",
        DATA,
        "--",
        "python3",
        PLAIN,
        "--epochs",
        "100",
        "--epoch-seconds",
        "1",
        "--lr",
        marker,
      ],
      baseEnv(),
      (out, child) => {
        if (!sent && /\[node0\] rank 0 epoch 1\/100/.test(out) && /\[node1\] rank 1 epoch 1\/100/.test(out)) {
          sent = true;
          child.kill("SIGINT");
        }
      },
    );
    expect(sent).toBe(true);
    expect(res.code, res.stdout + res.stderr).toBe(130);
    expect(res.stdout).toContain("SIGINT, stopping 2 nodes");
    expect(res.stdout).toMatch(/state CANCELLED/);
    expect(res.stdout).toContain("interrupted by SIGINT");
    const left = await new Promise<string>((resolve) => {
      const p = spawn("pgrep", ["-f", marker]);
      let s = "";
      p.stdout.on("data", (b: Buffer) => (s += b.toString()));
      p.on("close", () => resolve(s.trim()));
    });
    expect(left).toBe("");
  }, 60_000);

  it("gives TensorFlow nodes one TF_CONFIG cluster with a free port per worker and their own task index", async () => {
    const res = await cli(
      [
        "--nodes",
        "2",
        "--framework",
        "tensorflow",
        "--",
        "python3",
        "-c",
        'import os; print("TF_CONFIG=" + os.environ["TF_CONFIG"])',
      ],
      baseEnv(),
    );
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toContain(`command    python3 -c 'import os; print("TF_CONFIG=" + os.environ["TF_CONFIG"])'`);
    const configs = [0, 1].map((i) => {
      const m = new RegExp(`^\\[node${i}\\] TF_CONFIG=(.*)$`, "m").exec(res.stdout);
      return JSON.parse(m![1]!) as { cluster: { worker: string[] }; task: { type: string; index: number } };
    });
    expect(configs[0]!.cluster).toEqual(configs[1]!.cluster);
    expect(new Set(configs[0]!.cluster.worker).size).toBe(2);
    for (const w of configs[0]!.cluster.worker) expect(w).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(configs.map((c) => c.task)).toEqual([
      { type: "worker", index: 0 },
      { type: "worker", index: 1 },
    ]);
  }, 60_000);

  it.skipIf(!haveTorch)(
    "npm run demo's command: real torch DDP on 2 nodes with the example dataset",
    async () => {
      const res = await cli(["--nodes", "2", "--example"], baseEnv());
      expect(res.code, res.stdout + res.stderr).toBe(0);
      expect(res.stdout).toContain("example: PyTorch DDP (gloo) with /usr/bin/python3");
      expect(res.stdout).toMatch(/\[node0\] rank 0\/2: 1000 points, gloo process group up/);
      expect(res.stdout).toMatch(/\[node1\] rank 1\/2: 1000 points, gloo process group up/);
      expect(res.stdout).toMatch(/state SUCCEEDED/);
      expect(res.stdout).toMatch(/epochs {5}[1-5]\/5/); // see the note on node 1's done in the first test
      expect(res.stdout).toMatch(/checkpoints\/job-[\w-]+\/epoch-5\.pt/);
      expect(res.stdout).toMatch(/dashboard {2}http:\/\/127\.0\.0\.1:\d+\/jobs\//);
      // ... then a predict job over the model it just trained, on the same embedded S3 and stub.
      const trained = /job {8}([\w-]+) {2}state SUCCEEDED/.exec(res.stdout)?.[1];
      expect(res.stdout).toContain(`predicting with the model of job ${trained}`);
      expect(res.stdout).toMatch(/\[node0\] predicting 2000 rows with \S+\/epoch-5\.pt \(trained 5 epochs\)/);
      const predictJob = /1 node x 1 process, predict job ([\w-]+)/.exec(res.stdout)?.[1];
      expect(predictJob).toBeDefined();
      expect(res.stdout).toContain(`job        ${predictJob}  state SUCCEEDED`);
      expect(res.stdout).toMatch(
        new RegExp(`s3://trainer-local/predictions/job-${predictJob}/predictions\\.csv {2}\\(\\d+ KiB\\)`),
      );
      // Not a terminal: the command ends, so scripts and CI finish.
      expect(res.stdout).not.toContain("Ctrl-C");
    },
    90_000,
  );

  it("the demo on a terminal keeps its dashboard up until Ctrl-C, and says so", async () => {
    const child = spawn(
      "/usr/bin/python3",
      [
        join(ROOT, "test/fixtures/children/on-a-terminal.py"),
        process.execPath,
        BIN,
        "local",
        "--nodes",
        "1",
        "--example",
      ],
      { cwd: ROOT, env: baseEnv(), stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    const held = new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        const m =
          /the dashboard and the bucket stay up \((http:\/\/127\.0\.0\.1:\d+\/jobs\/[\w-]+)[,)].*Ctrl-C to stop/.exec(
            out,
          );
        if (m !== null) resolve(m[1]!);
      });
      child.on("close", (code) => reject(new Error(`ended (${code}) without holding the dashboard:\n${out}`)));
    });
    const ended = new Promise<number | null>((resolve) => child.on("close", resolve));
    const url = await held;
    // The link works after the run: the job page answers with the finished job.
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('data-state="SUCCEEDED"');
    child.kill("SIGTERM"); // the helper presses Ctrl-C on the terminal
    expect(await ended, out).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
  }, 90_000);
});

describe.skipIf(!haveTorch)("trainer-agent local with torchrun workers (--nproc-per-node 2)", () => {
  it("2 nodes x 2 processes: the helper's reports from torchrun worker rank 0 reach the backend, checkpoint stored", async () => {
    const res = await cli(
      [
        "--nodes",
        "2",
        "--nproc-per-node",
        "2",
        "--framework",
        "pytorch",
        "--dataset",
        DATA,
        "--",
        "/usr/bin/python3",
        join(ROOT, "examples/ddp_train.py"),
        "--epochs",
        "2",
        "--epoch-seconds", // epoch 1's heartbeat lands well before any node reports done
        "0.5",
      ],
      // Debian's torch 1.13 torchrun needs these to relay its workers' output (tests and demos only).
      { ...baseEnv(), PET_REDIRECTS: "9:1", PET_TEE: "9:1" },
    );
    expect(res.code, res.stdout + res.stderr).toBe(0);
    for (const rank of [0, 1, 2, 3]) expect(res.stdout).toMatch(new RegExp(`rank ${rank}/4: 500 points`));
    expect(res.stdout).toMatch(/^\[node1\] rank [23]\/4/m);
    expect(res.stdout).toMatch(/state SUCCEEDED/);
    expect(res.stdout).toMatch(/epochs {5}[12]\/2/); // see the note on node 1's done in the first test
    expect(res.stdout).toMatch(/checkpoints\/job-[\w-]+\/epoch-2\.pt/);
  }, 90_000);
});

describe("trainer-agent local against a configured backend and S3 (S3_ENDPOINT, BACKEND_BASE_URL)", () => {
  let stub: BackendStub;
  let s3: Awaited<ReturnType<typeof startFauxqs>>;
  let client: S3Client;
  let env: Record<string, string>;
  const ADMIN = "admin-token-for-tests";

  beforeAll(async () => {
    stub = createBackendStub({ secret: "test-secret-0123456789", adminToken: ADMIN });
    const { url } = await stub.listen(0, "127.0.0.1");
    s3 = await startFauxqs({ port: 0, host: "127.0.0.1", logger: false });
    s3.createBucket("ml-bucket");
    client = new S3Client({
      endpoint: s3.address,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "minio", secretAccessKey: "minio123" },
    });
    env = {
      ...baseEnv(),
      BACKEND_BASE_URL: url,
      BACKEND_ADMIN_TOKEN: ADMIN,
      S3_ENDPOINT: s3.address,
      S3_BUCKET: "ml-bucket",
      S3_ACCESS_KEY_ID: "minio",
      S3_SECRET_ACCESS_KEY: "minio123",
    };
  });
  afterAll(async () => {
    client?.destroy();
    await stub?.close();
    await s3?.stop();
  });

  const options = (patch: Partial<LocalOptions>): LocalOptions => ({
    nodes: 2,
    nprocPerNode: "1",
    framework: undefined,
    plugin: undefined,
    dataset: DATA,
    datasetId: "regression",
    command: ["python3", PLAIN, "--epochs", "3"],
    keep: false,
    workdir: undefined,
    name: "test",
    failGraceSeconds: 10,
    ...patch,
  });
  const deps = (out: PassThrough) => ({
    env,
    cwd: ROOT,
    agent: { command: process.execPath, args: [BIN] },
    helperSource: () => readFile(HELPER, "utf8"),
    stdout: out,
    stderr: out,
    color: false,
    signals: new EventEmitter() as unknown as Pick<NodeJS.Process, "on" | "off">,
  });
  const sink = () => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (b: Buffer) => (text += b.toString()));
    return { out, text: () => text };
  };

  it("a failing training ends FAILED with the traceback's last line as the reason", async () => {
    const o = sink();
    const result = await runLocal(
      options({ command: ["python3", PLAIN, "--epochs", "3", "--fail-at-epoch", "2"] }),
      deps(o.out),
    );
    expect(result.exitCode, o.text()).toBe(1);
    const job = await stub.getJob(result.jobId);
    expect(job?.state).toBe("FAILED");
    expect(job?.done?.status).toBe("failed");
    expect(job?.done?.reason).toBe("RuntimeError: loss diverged at epoch 2 (--fail-at-epoch)");
    // Epoch 1's checkpoint, reported before the failure, reached the configured bucket. (Its heartbeat may lose
    // the race: node1's `done` can end the job before node0's heartbeat arrives, which then gets 409.)
    const keys = await client.send(
      new ListObjectsV2Command({ Bucket: "ml-bucket", Prefix: `checkpoints/job-${result.jobId}/` }),
    );
    expect((keys.Contents ?? []).map((c) => c.Key)).toContain(`checkpoints/job-${result.jobId}/epoch-1.json`);
    // --dataset went to the configured bucket as an archive the agents pulled.
    const ds = await client.send(new GetObjectCommand({ Bucket: "ml-bucket", Key: "datasets/regression.tar.gz" }));
    expect((await ds.Body!.transformToByteArray()).length).toBeGreaterThan(1000);
    expect(o.text()).toContain("reason     RuntimeError: loss diverged at epoch 2 (--fail-at-epoch)");
  }, 60_000);

  it("2 nodes: every epoch rank 0 reports reaches the backend stub, in order, with its metrics", async () => {
    const script = join(tmp, "epochs.py");
    // Rank 1 stays a little longer, so rank 0's reports are all in before any node reports done.
    await writeFile(
      script,
      `import os, time, trainer_agent as ta
rank = int(os.environ["RANK"])
assert os.path.exists(os.path.join(os.environ["DATASET_DIR"], "regression.csv")), "dataset not pulled"
for e in range(1, 4):
    time.sleep(0.2)
    ta.report(epoch=e, total_epochs=3, loss=1.0 / e, node=rank)
time.sleep(3 if rank == 1 else 0)
`,
    );
    const o = sink();
    const result = await runLocal(options({ command: ["python3", script] }), deps(o.out));
    expect(result.exitCode, o.text()).toBe(0);
    const job = await stub.getJob(result.jobId);
    expect(job?.state).toBe("SUCCEEDED");
    expect(job?.epoch).toBe(3);
    expect(job?.total_epochs).toBe(3);
    expect(job?.latest_metrics).toEqual({ loss: 1 / 3, node: 0 });
    const epochs = job!.heartbeats.map((h) => h.epoch).filter((e) => e !== undefined);
    expect(epochs.at(-1)).toBe(3);
    expect([...epochs].sort()).toEqual(epochs); // in order
    expect(job!.heartbeats.every((h) => h.metrics.node === undefined || h.metrics.node === 0)).toBe(true);
    // Both nodes' agents reported the dataset they pulled.
    expect(job!.events.filter((e) => e.type === "dataset_ready")).toHaveLength(2);
  }, 60_000);

  it.skipIf(!haveTorch)(
    "predict after training (real torch): predictions under predictions/job-{id}/, done lists them",
    async () => {
      const o = sink();
      const workdir = join(tmp, "predict-ok");
      const result = await runLocal(
        options({
          nodes: 2,
          framework: "pytorch",
          workdir,
          command: ["/usr/bin/python3", DDP, "--epochs", "3"],
          thenPredict: { command: ["/usr/bin/python3", PREDICT] },
          extraEnv: { PET_REDIRECTS: "9:1", PET_TEE: "9:1" },
        }),
        deps(o.out),
      );
      expect(result.exitCode, o.text()).toBe(0);
      const p = result.prediction!;
      expect(p.exitCode, o.text()).toBe(0);
      const job = await stub.getJob(p.jobId);
      expect(job?.state).toBe("SUCCEEDED");
      const prefix = `predictions/job-${p.jobId}/`;
      expect(job?.done?.predictions?.map((x) => x.key)).toEqual([`${prefix}predictions.csv`]);
      expect(p.predictionKeys).toEqual([`${prefix}_manifest.json`, `${prefix}predictions.csv`]);
      // The model was the training's last checkpoint, restored through its manifest.
      const restored = job!.events.find((e) => e.type === "model_restored");
      expect(restored?.message).toMatch(new RegExp(`^checkpoints/job-${result.jobId}/_manifests/`));
      expect(job!.events.some((e) => e.type === "predictions_uploaded")).toBe(true);
      expect(job?.latest_metrics.rows).toBe(2000);
      // The object in the bucket is what predict.py wrote: every row, predicted by the trained w ~ 3, b ~ 2.
      const csv = await client.send(new GetObjectCommand({ Bucket: "ml-bucket", Key: `${prefix}predictions.csv` }));
      const lines = (await csv.Body!.transformToString()).trim().split("\n");
      expect(lines[0]).toBe("x,y,y_pred");
      expect(lines).toHaveLength(2001);
      const [x, , yPred] = lines[1]!.split(",").map(Number);
      expect(Math.abs(yPred! - (3 * x! + 2))).toBeLessThan(0.5);
      const manifest = await client.send(new GetObjectCommand({ Bucket: "ml-bucket", Key: `${prefix}_manifest.json` }));
      expect(JSON.parse(await manifest.Body!.transformToString())).toMatchObject({
        format: "astrago-predictions/1",
        job_id: p.jobId,
        files: [{ path: "predictions.csv", key: `${prefix}predictions.csv` }],
      });
    },
    120_000,
  );

  it("a predict job whose model job stored nothing fails MODEL_NOT_FOUND (66) and predicts nothing", async () => {
    const o = sink();
    const result = await runLocal(
      options({
        nodes: 1,
        mode: "predict",
        model: "never-trained",
        // Exit 5 if it ran: 66 says the agent stopped before the command.
        command: ["python3", "-c", "raise SystemExit(5)"],
      }),
      deps(o.out),
    );
    expect(result.exitCode, o.text()).toBe(66);
    expect(result.prediction?.exitCode).toBe(66);
    const job = await stub.getJob(result.jobId);
    expect(job?.state).toBe("FAILED");
    expect(job?.done?.exit_code).toBe(66);
    expect(job?.done?.reason).toMatch(
      /^MODEL_NOT_FOUND: no complete checkpoint in s3:\/\/ml-bucket\/checkpoints\/job-never-trained\/ \(MODEL_JOB_ID=never-trained\)/,
    );
    expect(job!.events.some((e) => e.type === "started")).toBe(true);
    const keys = await client.send(
      new ListObjectsV2Command({ Bucket: "ml-bucket", Prefix: `predictions/job-${result.jobId}/` }),
    );
    expect(keys.Contents ?? []).toEqual([]);
    expect(o.text()).toContain("predictions none in the bucket");
  }, 60_000);

  it("ends the job FAILED itself when every agent died before reporting done", async () => {
    const dir = join(tmp, "crash");
    await mkdir(dir, { recursive: true });
    // A plugin whose module kills the agent while it loads: no agent gets to send `done`.
    await writeFile(join(dir, "crash.mjs"), "process.exit(9);\n");
    const o = sink();
    const result = await runLocal(
      options({ dataset: undefined, plugin: join(dir, "crash.mjs"), command: ["python3", "-c", "pass"] }),
      deps(o.out),
    );
    expect(result.exitCode, o.text()).toBe(9);
    const job = await stub.getJob(result.jobId);
    expect(job?.state).toBe("FAILED");
    expect(job?.done?.reason).toMatch(/^node[01] exited 9 before reporting done \(see its output\.log\)$/);
    expect(o.text()).toContain("run folder "); // kept after a failure, for the logs
  }, 60_000);

  it("an external plugin written to a temp folder is loaded with --plugin and its reports reach the backend", async () => {
    const dir = join(tmp, "plugin");
    await mkdir(dir, { recursive: true });
    const pluginPath = join(dir, "plugin.mjs");
    // A plugin for a made-up framework that prints `progress epoch=N/M loss=X`: no ::trainer:: lines at all.
    await writeFile(
      pluginPath,
      `export default function progressPlugin() {
  return {
    name: "progress-lines",
    parseLine(line) {
      const m = /^progress epoch=(\\d+)\\/(\\d+) loss=([\\d.]+)$/.exec(line);
      return m ? [{ kind: "epoch", epoch: Number(m[1]), totalEpochs: Number(m[2]), metrics: { loss: Number(m[3]) } }] : undefined;
    },
  };
}
`,
    );
    const script = join(dir, "train.py");
    await writeFile(
      script,
      `import time\nfor e in range(1, 4):\n    time.sleep(0.2)\n    print("progress epoch=%d/3 loss=%.2f" % (e, 1.0 / e), flush=True)\n`,
    );
    const o = sink();
    const result = await runLocal(
      options({ nodes: 1, dataset: undefined, plugin: pluginPath, command: ["python3", script] }),
      deps(o.out),
    );
    expect(result.exitCode, o.text()).toBe(0);
    const job = await stub.getJob(result.jobId);
    expect(job?.state).toBe("SUCCEEDED");
    expect(job?.epoch).toBe(3);
    expect(job?.total_epochs).toBe(3);
    expect(job?.latest_metrics).toEqual({ loss: 0.33 });
    expect(job?.heartbeats.length).toBeGreaterThanOrEqual(1);
    expect(job?.heartbeats.every((h) => h.metrics.loss !== undefined)).toBe(true);
  }, 60_000);
});
