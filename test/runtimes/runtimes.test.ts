import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import YAML from "yaml";
import { normalizeJobRequest, renderJob } from "../../src/submitter/index.ts";
import { formatObjects, renderedObjects } from "../../src/cli/submitter/index.ts";
import { loadCrd, repoRoot, trainerFixtures } from "../submitter/helpers/crd.ts";

// Real torch runs through the agent (seconds alone, far more on a loaded CI machine).
vi.setConfig({ testTimeout: 180_000 });

const run = promisify(execFile);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
const runtimesDir = path.join(repoRoot, "runtimes");
// Each CRD parsed once for this file.
const crds = {
  TrainJob: loadCrd("trainer.kubeflow.org_trainjobs.yaml"),
  ClusterTrainingRuntime: loadCrd("trainer.kubeflow.org_clustertrainingruntimes.yaml"),
};

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(name) ? [full] : [];
  });
}

const files = yamlFiles(runtimesDir);
const docs = files.flatMap((file) =>
  YAML.parseAllDocuments(readFileSync(file, "utf8")).map((d, i) => ({
    file: path.relative(repoRoot, file),
    index: i,
    obj: d.toJS(),
  })),
);
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const runtime = (file: string): Obj => docs.find((d) => d.file === file)!.obj;
const podSpec = (rt: Obj): Obj =>
  rt.spec.template.spec.replicatedJobs.find((j: Obj) => j.name === "node").template.spec.template.spec;

describe("every YAML under runtimes/", () => {
  it("finds the runtimes, examples and RBAC", () => {
    expect(files.map((f) => path.relative(runtimesDir, f)).sort()).toEqual([
      "pytorch/runtime.baked.yaml",
      "pytorch/runtime.yaml",
      "pytorch/trainjob.yaml",
      "rbac.yaml",
      "tensorflow/runtime.baked.yaml",
      "tensorflow/runtime.yaml",
      "tensorflow/trainjob.yaml",
    ]);
  });

  it.each(docs.map((d) => [`${d.file}#${d.index} ${d.obj.kind}`, d] as const))("%s is valid", (_label, d) => {
    const crd = crds[d.obj.kind as keyof typeof crds];
    if (crd !== undefined) {
      expect(crd.validate(d.obj)).toEqual([]);
    } else if (d.obj.kind === "ConfigMap") {
      expect(d.obj.apiVersion).toBe("v1");
      for (const key of Object.keys(d.obj.data)) expect(key).toMatch(/^[-._a-zA-Z0-9]+$/);
    } else {
      expect(["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]).toContain(d.obj.kind);
    }
  });

  it("the validator accepts upstream's own runtimes (a check that it is not too strict)", () => {
    const upstream = path.join(trainerFixtures, "runtimes");
    const files = readdirSync(upstream);
    expect(files).toHaveLength(3);
    for (const f of files) {
      expect(crds.ClusterTrainingRuntime.validate(YAML.parse(readFileSync(path.join(upstream, f), "utf8"))), f).toEqual(
        [],
      );
    }
  });
});

describe("ClusterTrainingRuntimes", () => {
  it.each([
    ["pytorch", "pytorch-simple"],
    ["tensorflow", "tensorflow-distributed"],
  ])("%s: %s runs the agent, which gets PET_* from mlPolicy.torch", (fw, name) => {
    for (const file of [`runtimes/${fw}/runtime.yaml`, `runtimes/${fw}/runtime.baked.yaml`]) {
      const rt = runtime(file);
      expect(rt.metadata.name).toBe(name);
      // Trainer has no TensorFlow plugin: the torch policy delivers PET_NNODES/NODE_RANK/MASTER_ADDR for TF_CONFIG.
      expect(rt.spec.mlPolicy.torch).toEqual({});
      const job = rt.spec.template.spec.replicatedJobs.find((j: Obj) => j.name === "node");
      expect(job.template.metadata.labels["trainer.kubeflow.org/trainjob-ancestor-step"]).toBe("trainer");
      const node = podSpec(rt).containers.find((c: Obj) => c.name === "node");
      expect(node.command.slice(1, 5)).toEqual(["run", "--framework", fw, "--"]);
      // SIGTERM: the child's grace ends well before the pod's, leaving the agent time to upload and report done.
      const childGrace = Number(node.env.find((e: Obj) => e.name === "TERMINATION_GRACE_SECONDS").value);
      expect(podSpec(rt).terminationGracePeriodSeconds - childGrace).toBeGreaterThanOrEqual(30);
      // A failed pod restarts all ranks together (static rendezvous cannot take one new pod).
      expect(job.template.spec.backoffLimit).toBe(0);
      expect(rt.spec.template.spec.failurePolicy.maxRestarts).toBeGreaterThan(0);
    }
  });

  it.each(["pytorch", "tensorflow"])(
    "%s stock-image variant: the init container copies the agent into the shared emptyDir",
    (fw) => {
      const spec = podSpec(runtime(`runtimes/${fw}/runtime.yaml`));
      expect(spec.initContainers).toEqual([
        {
          name: "install-agent",
          image: "astrago/trainer-agent:0.1.0",
          command: ["trainer-agent", "install", "/opt/agent"],
          volumeMounts: [{ name: "trainer-agent", mountPath: "/opt/agent" }],
        },
      ]);
      expect(spec.volumes).toContainEqual({ name: "trainer-agent", emptyDir: {} });
      const node = spec.containers.find((c: Obj) => c.name === "node");
      expect(node.command[0]).toBe("/opt/agent/trainer-agent");
      expect(node.volumeMounts).toContainEqual({ name: "trainer-agent", mountPath: "/opt/agent" });
      expect(node.env).toContainEqual({ name: "PYTHONPATH", value: "/opt/agent" });
      expect(node.image).not.toMatch(/astrago/);
    },
  );

  it.each(["pytorch", "tensorflow"])("%s baked variant: the image has the agent on PATH, no init container", (fw) => {
    const spec = podSpec(runtime(`runtimes/${fw}/runtime.baked.yaml`));
    expect(spec.initContainers).toBeUndefined();
    const node = spec.containers.find((c: Obj) => c.name === "node");
    expect(node.image).toBe(`astrago/trainer-${fw}:0.1.0`);
    expect(node.command[0]).toBe("trainer-agent");
  });

  it("the TrainJob command the submitter renders matches each variant's agent path", () => {
    for (const [agent, file] of [
      ["init", "runtimes/pytorch/runtime.yaml"],
      ["baked", "runtimes/pytorch/runtime.baked.yaml"],
    ] as const) {
      const rendered = renderJob(
        normalizeJobRequest({ name: "x", framework: "pytorch", agent, command: "python3 t.py" }),
      );
      const node = podSpec(runtime(file)).containers.find((c: Obj) => c.name === "node");
      expect((rendered.trainJob.spec as Obj).trainer.command[0]).toBe(node.command[0]);
    }
  });
});

describe("example TrainJobs", () => {
  it.each(["pytorch", "tensorflow"])(
    "runtimes/%s/trainjob.yaml is what `trainjob render` makes of its header command",
    async (fw) => {
      const text = readFileSync(path.join(runtimesDir, fw, "trainjob.yaml"), "utf8");
      const header = /^# {3}node bin\/trainjob\.js render (.*)$/m.exec(text)![1]!;
      const { stdout } = await run(process.execPath, ["bin/trainjob.js", "render", ...header.split(" ")], {
        cwd: repoRoot,
      });
      const body = text.replace(/^(#.*\n)+/, "");
      expect(body, `regenerate with: node bin/trainjob.js render ${header}`).toBe(stdout);
      // ... and the ConfigMap in it carries the current train.py.
      const cm = YAML.parseAllDocuments(body)
        .map((d) => d.toJS())
        .find((o) => o.kind === "ConfigMap");
      expect(cm.data["train.py"]).toBe(readFileSync(path.join(runtimesDir, fw, "train.py"), "utf8"));
    },
  );

  it("formats like kubectl: YAML documents joined by ---, JSON as a List", async () => {
    const rendered = renderJob(normalizeJobRequest({ name: "x", framework: "pytorch", training_code: "print(1)" }));
    const yaml = await formatObjects(renderedObjects(rendered, false), "yaml");
    expect(YAML.parseAllDocuments(yaml).map((d) => d.toJS().kind)).toEqual(["TrainJob", "ConfigMap"]);
    const json = JSON.parse(await formatObjects(renderedObjects(rendered, false), "json"));
    expect(json).toMatchObject({ apiVersion: "v1", kind: "List" });
    expect(json.items).toHaveLength(2);
  });
});

describe("train.py examples", () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "runtimes-test-"));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it.each([
    ["pytorch", "train.py"],
    ["tensorflow", "train.py"],
    ["pytorch", "predict.py"],
    ["tensorflow", "predict.py"],
  ])("runtimes/%s/%s compiles", async (fw, file) => {
    const src = path.join(runtimesDir, fw, file);
    const compiled = path.join(tmp, `${fw}-${file}c`);
    // cfile in a temp dir: no __pycache__ left in the tree.
    await run("/usr/bin/python3", [
      "-c",
      "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
      src,
      compiled,
    ]);
    expect(existsSync(compiled)).toBe(true);
  });

  it("the PyTorch predict.py predicts with the model train.py stored, through trainer-agent --mode predict", async () => {
    const bucket = path.join(tmp, "predict-bucket");
    const agent = path.join(repoRoot, "bin/trainer-agent.js");
    const env = (job: string) => ({
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: tmp,
      EPOCHS: "2",
      SAMPLES: "512",
      STORAGE_TYPE: "file",
      STORAGE_PATH: bucket,
      JOB_ID: job,
      CHECKPOINT_DIR: path.join(tmp, `${job}-checkpoints`),
      DATASET_DIR: path.join(tmp, `${job}-dataset`),
      PYTHONPATH: path.join(repoRoot, "python"),
    });
    const script = (file: string) => ["--framework", "pytorch", "--", "/usr/bin/python3", `runtimes/pytorch/${file}`];
    await run(process.execPath, [agent, "run", ...script("train.py")], {
      cwd: repoRoot,
      env: env("rt-train"),
      timeout: 120_000,
    });
    const predicted = await run(process.execPath, [agent, "run", "--mode", "predict", ...script("predict.py")], {
      cwd: repoRoot,
      env: { ...env("rt-predict"), MODEL_JOB_ID: "rt-train", PREDICTIONS_DIR: path.join(tmp, "rt-predictions") },
      timeout: 120_000,
    });
    expect(predicted.stdout).toMatch(
      /predicting 512 rows of synthetic samples \(SEED \+ 1\) with \S+epoch-2\.pt \(epoch 2\)/,
    );
    const csv = await readFile(path.join(bucket, "predictions/job-rt-predict/predictions.csv"), "utf8");
    const lines = csv.trim().split("\n");
    expect(lines[0]).toBe("row,class,confidence,label");
    expect(lines).toHaveLength(513);
    expect(existsSync(path.join(bucket, "predictions/job-rt-predict/_manifest.json"))).toBe(true);
  });

  it("the PyTorch example runs through trainer-agent with real torch (CPU, gloo), writes checkpoints and resumes", async () => {
    const checkpoints = path.join(tmp, "checkpoints");
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: tmp,
      EPOCHS: "2",
      SAMPLES: "512",
      CHECKPOINT_DIR: checkpoints,
      DATASET_DIR: path.join(tmp, "dataset"),
      PYTHONPATH: path.join(repoRoot, "python"),
    };
    const agent = path.join(repoRoot, "bin/trainer-agent.js");
    const args = [agent, "run", "--framework", "pytorch", "--", "/usr/bin/python3", "runtimes/pytorch/train.py"];
    const first = await run(process.execPath, args, { cwd: repoRoot, env, timeout: 120_000 });
    expect(first.stdout).toMatch(/epoch 2\/2 loss/);
    expect((await readdir(checkpoints)).sort()).toEqual(["epoch-1.pt", "epoch-2.pt"]);
    // Report lines are the agent's, not relayed as log text.
    expect(first.stdout).not.toContain("::trainer::");
    // A longer run picks up from the newest checkpoint instead of starting over.
    const second = await run(process.execPath, args, { cwd: repoRoot, env: { ...env, EPOCHS: "3" }, timeout: 120_000 });
    expect(second.stdout).toMatch(/resumed from .*epoch-2\.pt \(epoch 2\)/);
    expect(second.stdout).not.toMatch(/epoch 1\/3/);
    expect((await readdir(checkpoints)).sort()).toEqual(["epoch-1.pt", "epoch-2.pt", "epoch-3.pt"]);
  });

  it("on SIGTERM to the agent the PyTorch example saves the epoch it is in and exits 143", async () => {
    const checkpoints = path.join(tmp, "sigterm");
    const child = spawn(
      process.execPath,
      [
        path.join(repoRoot, "bin/trainer-agent.js"),
        "run",
        "--framework",
        "pytorch",
        "--",
        "/usr/bin/python3",
        "runtimes/pytorch/train.py",
      ],
      {
        cwd: repoRoot,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: tmp,
          EPOCHS: "1000000",
          SAMPLES: "256",
          CHECKPOINT_DIR: checkpoints,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = once(child, "exit");
    await expect
      .poll(() => existsSync(path.join(checkpoints, "epoch-2.pt")), { timeout: 60_000, interval: 50 })
      .toBe(true);
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(143);
    const stopped = /SIGTERM: checkpoint of epoch (\d+) saved, stopping/.exec(stdout);
    expect(stopped).not.toBeNull();
    const files = await readdir(checkpoints);
    const newest = Math.max(...files.map((f) => Number(/^epoch-(\d+)\.pt$/.exec(f)?.[1] ?? -1)));
    expect(newest).toBe(Number(stopped![1]));
    expect(files.filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("two agents given the PET_* variables of a 2-node TrainJob train one DDP model together (gloo)", async () => {
    const port = await freePort();
    const agent = path.join(repoRoot, "bin/trainer-agent.js");
    const node = (rank: number) =>
      run(
        process.execPath,
        [agent, "run", "--framework", "pytorch", "--", "/usr/bin/python3", "runtimes/pytorch/train.py"],
        {
          cwd: repoRoot,
          timeout: 120_000,
          // What Kubeflow Trainer's torch plugin injects into pod <rank> (PET_MASTER_ADDR would be <job>-node-0-0.<job>).
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            HOME: tmp,
            PET_NNODES: "2",
            PET_NPROC_PER_NODE: "1",
            PET_NODE_RANK: String(rank),
            PET_MASTER_ADDR: "127.0.0.1",
            PET_MASTER_PORT: String(port),
            EPOCHS: "2",
            SAMPLES: "512",
            CHECKPOINT_DIR: path.join(tmp, `ddp-${rank}`),
            PYTHONPATH: path.join(repoRoot, "python"),
          },
        },
      );
    const [r0, r1] = await Promise.all([node(0), node(1)]);
    expect(r0.stdout).toMatch(/^rank 0\/2 /m);
    expect(r1.stdout).toMatch(/^rank 1\/2 /m);
    // all_reduce'd metrics: both ranks print the same global loss.
    const losses = (out: string) => [...out.matchAll(/^epoch \d\/2 loss (\S+)/gm)].map((m) => m[1]);
    expect(losses(r0.stdout)).toHaveLength(2);
    expect(losses(r1.stdout)).toEqual(losses(r0.stdout));
    // Only rank 0 writes checkpoints.
    expect((await readdir(path.join(tmp, "ddp-0"))).sort()).toEqual(["epoch-1.pt", "epoch-2.pt"]);
    expect(existsSync(path.join(tmp, "ddp-1"))).toBe(false);
  });
});
