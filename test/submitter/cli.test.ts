/**
 * `trainjob` as a real process. No Kubernetes API server can run here: helpers/fake-kube.ts stands in for it on
 * 127.0.0.1, reached through a real kubeconfig file (KUBECONFIG), as kubectl users would point the CLI at a cluster.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import YAML from "yaml";
import { repoRoot } from "./helpers/crd.ts";
import { startFakeKube, workerPod, type FakeKube } from "./helpers/fake-kube.ts";

// Several real CLI processes per test (about 1 s each alone, far more on a loaded CI machine).
vi.setConfig({ testTimeout: 120_000 });

const BIN = path.join(repoRoot, "bin/trainjob.js");
let tmp: string;
let fake: FakeKube;
let env: NodeJS.ProcessEnv;

function trainjob(
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: repoRoot, env: { ...env, ...extraEnv }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "trainjob-cli-"));
  fake = await startFakeKube();
  fake.runtimes.set("pytorch-simple", { metadata: { name: "pytorch-simple" } });
  const kubeconfig = path.join(tmp, "kubeconfig");
  await writeFile(
    kubeconfig,
    YAML.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "fake", cluster: { server: fake.url, "insecure-skip-tls-verify": true } }],
      users: [{ name: "u", user: { token: "cli-token" } }],
      contexts: [{ name: "fake", context: { cluster: "fake", user: "u", namespace: "team-a" } }],
      "current-context": "fake",
    }),
  );
  env = { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: kubeconfig };
});

afterAll(async () => {
  await fake.close();
  await rm(tmp, { recursive: true, force: true });
});

describe("trainjob --help", () => {
  it.each([[[]], [["render"]], [["submit"]], [["status"]], [["logs"]], [["delete"]], [["serve"]]])(
    "%j --help",
    async (cmd) => {
      const r = await trainjob([...cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: trainjob/);
    },
  );
});

describe("trainjob render", () => {
  it("prints YAML documents like kubectl --dry-run=client -o yaml; the argv after -- stays as given", async () => {
    const r = await trainjob([
      "render",
      "--name",
      "demo",
      "-n",
      "team-a",
      "--gpu",
      "1",
      "-e",
      "EPOCHS=3",
      "--",
      "python3",
      "t.py",
      "--msg",
      "a; b",
      "$(x)",
    ]);
    expect(r.code).toBe(0);
    const docs = YAML.parseAllDocuments(r.stdout).map((d) => d.toJS());
    expect(docs.map((d) => d.kind)).toEqual(["TrainJob"]);
    expect(docs[0].spec.trainer.command).toEqual([
      "/opt/agent/trainer-agent",
      "run",
      "--framework",
      "pytorch",
      "--",
      "python3",
      "t.py",
      "--msg",
      "a; b",
      "$$(x)",
    ]);
    expect(docs[0].spec.trainer.resourcesPerNode).toEqual({
      limits: { "nvidia.com/gpu": "1" },
      requests: { "nvidia.com/gpu": "1" },
    });
  });

  it("--predict renders a predict job; a bad --predict is named as the flag (65)", async () => {
    const r = await trainjob(["render", "--name", "p", "--predict", "train-1", "--", "python3", "predict.py"]);
    expect(r.code, r.stderr).toBe(0);
    const [tj] = YAML.parseAllDocuments(r.stdout).map((d) => d.toJS());
    expect(tj.spec.trainer.command.slice(0, 4)).toEqual(["/opt/agent/trainer-agent", "run", "--mode", "predict"]);
    expect(tj.spec.trainer.env).toContainEqual({ name: "MODEL_JOB_ID", value: "train-1" });
    const bad = await trainjob(["render", "--name", "p", "--predict", "http://x/m.pt", "--", "python3", "p.py"]);
    expect(bad.code).toBe(65);
    expect(bad.stderr).toContain("--predict: must be a job id");
  });

  it("reads a seed request file, redacts Secret values unless --show-secrets, warns on stderr", async () => {
    const file = path.join(tmp, "request.json");
    await writeFile(
      file,
      JSON.stringify({
        user_id: "u1",
        framework: "tensorflow",
        command: "python3 t.py && echo",
        env_vars: [{ name: "WANDB_API_KEY", value: "wandb-secret" }],
      }),
    );
    const r = await trainjob(["render", "-f", file, "-o", "json"]);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout);
    expect(list.items.map((i: { kind: string }) => i.kind)).toEqual(["TrainJob", "Secret"]);
    expect(r.stdout).not.toContain("wandb-secret");
    expect(r.stderr).toMatch(/warning: .*literally/);
    const shown = await trainjob(["render", "-f", file, "-o", "json", "--show-secrets"]);
    expect(JSON.parse(shown.stdout).items[1].stringData["wandb-api-key"]).toBe("wandb-secret");
  });

  it("exits 65 with one line per problem, each naming its field, and no stack trace", async () => {
    const r = await trainjob([
      "render",
      "--name",
      "Bad_Name",
      "--nodes",
      "0",
      "--memory",
      "8GB",
      "--",
      "python3",
      "t.py",
    ]);
    expect(r.code).toBe(65);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/SPEC_INVALID/);
    // Each problem names the flag that was typed, not the request field it fills.
    for (const field of ["--name:", "--nodes:", "--memory:"]) expect(r.stderr).toContain(field);
    expect(r.stderr).not.toMatch(/\bat .*\.ts:\d+/);
  });

  it("-e MINIO_SECRET_KEY=... goes to the Secret, never the TrainJob; stderr names the variable, not the value", async () => {
    const value = "minio-s3cr3t-4f2a";
    const r = await trainjob(["render", "--name", "demo", "-e", `MINIO_SECRET_KEY=${value}`, "-o", "json", "--", "p"]);
    expect(r.code).toBe(0);
    const [trainJob, secret] = JSON.parse(r.stdout).items;
    expect(JSON.stringify(trainJob)).not.toContain(value);
    expect(trainJob.spec.trainer.env).toContainEqual({
      name: "MINIO_SECRET_KEY",
      valueFrom: { secretKeyRef: { name: "demo-trainer-secrets", key: "minio-secret-key" } },
    });
    expect(secret.kind).toBe("Secret");
    expect(r.stderr).toContain("warning: env MINIO_SECRET_KEY: its name looks like a credential");
    expect(r.stderr).not.toContain(value);
  });

  it("flags override a TrainJob document (-f tj.yaml --name other -n team-a --nodes 3)", async () => {
    const doc = path.join(tmp, "tj.yaml");
    const yaml = [
      "apiVersion: trainer.kubeflow.org/v1alpha1",
      "kind: TrainJob",
      "metadata: {name: from-file, namespace: team-z}",
      "spec:",
      "  runtimeRef: {name: pytorch-simple}",
      "  trainer: {numNodes: 1, command: [python3, t.py]}",
    ];
    await writeFile(doc, yaml.join("\n") + "\n");
    const r = await trainjob(["render", "-f", doc, "--name", "other", "-n", "team-a", "--nodes", "3", "-o", "json"]);
    expect(r.code).toBe(0);
    const tj = JSON.parse(r.stdout); // one object: no code, no Secret
    expect(tj.metadata).toMatchObject({ name: "other", namespace: "team-a" });
    expect(tj.spec.trainer.numNodes).toBe(3);
  });

  it("refuses int32 overflows and node selector keys no label can have, naming the flag", async () => {
    const r = await trainjob([
      "render",
      "--name",
      "x",
      "--nodes",
      "2147483648",
      "--proc-per-node",
      "2147483648",
      "--node-selector",
      "bad key!=gpu",
      "--node-selector",
      "pool=not ok",
      "--",
      "p",
    ]);
    expect(r.code).toBe(65);
    expect(r.stderr).toContain('--nodes: must be an integer from 1 to 2147483647, got "2147483648"');
    expect(r.stderr).toContain('--proc-per-node: must be an integer from 1 to 2147483647, got "2147483648"');
    expect(r.stderr).toContain('--node-selector["bad key!"]: key "bad key!" must be at most 63');
    expect(r.stderr).toContain('--node-selector["pool"]: value "not ok" must be empty or at most 63');
    const ok = await trainjob([
      "render",
      "--name",
      "x",
      "--node-selector",
      "nvidia.com/gpu.product=A100-SXM4",
      "--",
      "p",
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("nvidia.com/gpu.product: A100-SXM4");
  });

  it("--git-* flags render CODE_GIT_* on top of the file's git block, and their problems name the flag", async () => {
    const request = path.join(tmp, "git-request.yaml");
    await writeFile(request, "framework: pytorch\ngit: https://git.example.com/org/train.git\n");
    const r = await trainjob(["render", "--name", "g", "-f", request, "--git-revision", "v2", "-o", "json"]);
    expect(r.code, r.stderr).toBe(0);
    const env = JSON.parse(r.stdout).spec.trainer.env as Array<{ name: string; value?: string }>;
    expect(env.filter((e) => e.name.startsWith("CODE_GIT_"))).toEqual([
      { name: "CODE_GIT_REPO", value: "https://git.example.com/org/train.git" },
      { name: "CODE_GIT_REVISION", value: "v2" },
    ]);
    const bad = await trainjob(["render", "--name", "g", "--git-repo", "ext::sh", "--git-subdir", "../up"]);
    expect(bad.code).toBe(65);
    expect(bad.stderr).toContain(
      '--git-repo: must use scheme https, http, ssh, git, file (or user@host:path for ssh), not ext:, got "ext::sh"',
    );
    expect(bad.stderr).toContain('--git-subdir: must stay inside the repository: ".." is not allowed, got "../up"');
  });

  it("--dataset-url and --checkpoint-store backend render a pod with no storage keys; the URL's query never shows", async () => {
    const signature = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const url = `https://s3.example.com/data/set.zip?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=${signature}`;
    const args = ["render", "--name", "k", "--backend-url", "http://backend:8000", "--checkpoint-store", "backend"];
    // The storage defaults of the submitter's environment do not reach a keyless pod.
    const storageEnv = { S3_BUCKET: "train", S3_ENDPOINT: "http://minio:9000", TRAINJOB_STORAGE_SECRET: "minio-creds" };
    const r = await trainjob([...args, "--dataset-url", url, "-o", "json", "--", "python3", "train.py"], storageEnv);
    expect(r.code, r.stderr).toBe(0);
    const env = JSON.parse(r.stdout).items[0].spec.trainer.env as Array<{
      name: string;
      value?: string;
      valueFrom?: unknown;
    }>;
    expect(env.filter((e) => /^(S3|AWS)_/.test(e.name))).toEqual([]);
    expect(env).toContainEqual({ name: "CHECKPOINT_STORE", value: "backend" });
    expect(env).toContainEqual({
      name: "DATASET_URL",
      valueFrom: { secretKeyRef: { name: "k-trainer-secrets", key: "dataset-url" } },
    });
    for (const text of [r.stdout, r.stderr]) expect(text).not.toContain(signature);
    const bad = await trainjob([...args, "--dataset-url", url.replace("https:", "ftp:"), "--", "python3", "t.py"]);
    expect(bad.code).toBe(65);
    expect(bad.stderr).toContain(
      '--dataset-url: must be an https:// URL (a presigned GET) or an http:// URL, got "ftp://s3.example.com/data/set.zip?***"',
    );
    expect(bad.stderr).not.toContain(signature);
  });

  it("rejects a malformed --volume and --env as usage errors (64)", async () => {
    expect((await trainjob(["render", "--name", "x", "-v", "data", "--", "p"])).code).toBe(64);
    expect((await trainjob(["render", "--name", "x", "-e", "NOVALUE", "--", "p"])).code).toBe(64);
  });
});

describe("trainjob submit / status / logs / delete against the stand-in API server", () => {
  it("runs the whole life cycle through KUBECONFIG", async () => {
    const code = path.join(tmp, "train.py");
    await writeFile(code, "print('hi')\n");
    const submit = await trainjob([
      "submit",
      "--name",
      "cli-job",
      "-n",
      "team-a",
      "--nodes",
      "2",
      "--code",
      code,
      "-v",
      "data:data-pvc:/data:ro",
    ]);
    expect(submit.stderr).toBe("");
    expect(submit.stdout).toBe("trainjob.trainer.kubeflow.org/cli-job created (namespace team-a)\n");
    const again = await trainjob([
      "submit",
      "--name",
      "cli-job",
      "-n",
      "team-a",
      "--nodes",
      "2",
      "--code",
      code,
      "-v",
      "data:data-pvc:/data:ro",
    ]);
    expect(again.stdout).toMatch(/cli-job unchanged/);
    const conflict = await trainjob(["submit", "--name", "cli-job", "-n", "team-a", "--nodes", "3", "--code", code]);
    expect(conflict.code).toBe(75);
    expect(conflict.stderr).toMatch(/K8S_CONFLICT/);

    // No -n: the kubeconfig context's namespace (team-a), as kubectl does.
    const status = await trainjob(["status", "cli-job", "-o", "json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({
      trainjob_name: "cli-job",
      namespace: "team-a",
      state: "Pending",
    });
    fake.addPod("team-a", workerPod("cli-job", 1), "hello from rank 1\n");
    const logs = await trainjob(["logs", "cli-job", "-n", "team-a", "--worker", "1"]);
    expect(logs.stdout).toBe("hello from rank 1\n");

    const del = await trainjob(["delete", "cli-job", "-n", "team-a"]);
    expect(del.stdout).toBe("trainjob/cli-job deleted\nconfigmap/cli-job-train-script deleted\n");
    const gone = await trainjob(["status", "cli-job", "-n", "team-a"]);
    expect(gone.code).toBe(66);
    expect(gone.stderr).toMatch(/K8S_NOT_FOUND: trainjob team-a\/cli-job not found/);
    for (const r of fake.requests) expect(r.authorization).toBe("Bearer cli-token");
  });

  it("a pod not scheduled yet and a TrainJob held by a finalizer are said as such", async () => {
    await trainjob(["submit", "--name", "dying-job", "--", "python3", "t.py"]);
    fake.addPod("team-a", workerPod("dying-job", 0, { phase: "Pending", scheduled: false }));
    const logs = await trainjob(["logs", "dying-job"]);
    expect(logs.code).toBe(69);
    expect(logs.stderr).toMatch(/the pod has not started yet \(not scheduled to a node\)/);

    fake.store.get("trainjobs")!.get("team-a/dying-job")!.metadata.finalizers = ["trainer.kubeflow.org/resources"];
    const del = await trainjob(["delete", "dying-job"]);
    expect(del.code).toBe(0);
    expect(del.stdout).toMatch(
      /^trainjob\/dying-job deletion in progress \(since \S+; waiting on finalizers trainer\.kubeflow\.org\/resources\)\n/,
    );
    expect((await trainjob(["status", "dying-job"])).stdout).toMatch(/^dying-job\tTerminating\t/);
    const again = await trainjob(["submit", "--name", "dying-job", "--", "python3", "t.py"]);
    expect(again.code).toBe(75);
    expect(again.stderr).toMatch(/is being deleted/);
    fake.finalize("trainjobs", "team-a", "dying-job");
  });

  it("list and get show state, progress, ETA and the latest metrics from status.trainerStatus", async () => {
    await trainjob(["submit", "--name", "table-job", "--", "python3", "t.py"]);
    fake.store.get("trainjobs")!.get("team-a/table-job")!.status = {
      jobsStatus: [{ name: "node", active: 1, ready: 1, succeeded: 0, failed: 0 }],
      trainerStatus: {
        progressPercentage: 42,
        estimatedRemainingSeconds: 3725,
        metrics: [
          { name: "loss", value: "0.231" },
          { name: "accuracy", value: "0.91" },
        ],
        lastUpdatedTime: "2026-01-01T00:00:00Z",
      },
    };
    const list = await trainjob(["list"]);
    expect(list.code).toBe(0);
    const [header, ...rows] = list.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^NAME\s+STATE\s+READY\s+PROGRESS\s+ETA\s+METRICS\s+AGE$/);
    expect(rows.find((row) => row.startsWith("table-job "))).toMatch(
      /^table-job\s+Running\s+1\/1\s+42%\s+1h2m\s+loss=0\.231,accuracy=0\.91\s+\d+s$/,
    );
    const get = await trainjob(["get", "table-job", "-o", "json"]);
    expect(JSON.parse(get.stdout)[0].progress).toEqual({
      percentage: 42,
      eta_seconds: 3725,
      metrics: [
        { name: "loss", value: "0.231" },
        { name: "accuracy", value: "0.91" },
      ],
      updated_at: "2026-01-01T00:00:00Z",
    });
    const status = await trainjob(["status", "table-job"]);
    expect(status.stdout).toBe(
      "table-job\tRunning\t1 of 1 active pod(s) ready\tprogress 42% ETA 1h2m loss=0.231 accuracy=0.91\n",
    );
  });

  it("status --wait polls until the job finishes and exits 1 when it failed", async () => {
    await trainjob(["submit", "--name", "wait-job", "--", "python3", "t.py"]);
    const waiting = trainjob(["status", "wait-job", "--wait", "--interval", "0.2"]);
    await expect
      .poll(() => fake.requests.filter((r) => r.path.endsWith("/trainjobs/wait-job")).length, { timeout: 20_000 })
      .toBeGreaterThan(3);
    fake.store.get("trainjobs")!.get("team-a/wait-job")!.status = {
      conditions: [{ type: "Failed", status: "True", reason: "FailedJobs", message: "jobset failed" }],
    };
    const r = await waiting;
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("wait-job\tFailed\tjobset failed\n");
  });

  it("says which kubeconfig problem stops it", async () => {
    const r = await trainjob(["status", "x"], { KUBECONFIG: path.join(tmp, "missing-kubeconfig") });
    expect(r.code).not.toBe(0);
    expect(r.stderr.split("\n").filter(Boolean)).toHaveLength(1);
  });
});

describe("trainjob serve", () => {
  it.each([["0.0.0.0"], ["::"], ["10.1.2.3"], ["example.com"]])(
    "refuses --host %s without TRAINJOB_API_TOKEN (exit 78), naming the way out",
    async (host) => {
      const r = await trainjob(["serve", "--port", "0", "--host", host]);
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(`refusing to serve on "${host}" without TRAINJOB_API_TOKEN`);
      expect(r.stderr).toContain("--insecure-no-auth");
    },
  );

  it("refuses TRAINJOB_HOST=0.0.0.0 without a token as well", async () => {
    const r = await trainjob(["serve", "--port", "0"], { TRAINJOB_HOST: "0.0.0.0" });
    expect(r.code).toBe(78);
  });

  it("serves beyond loopback with --insecure-no-auth, warning loudly on stderr", async () => {
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--host", "0.0.0.0", "--insecure-no-auth"], {
      cwd: repoRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const started = /"url":"http:\/\/[^"]+:(\d+)","auth":"none[^"]*","msg":"serving the TrainJob API"/;
    await expect.poll(() => started.exec(stderr), { timeout: 20_000 }).not.toBeNull();
    expect(stderr).toMatch(/WARNING: --insecure-no-auth: serving on "0\.0\.0\.0" WITHOUT AUTHENTICATION/);
    // An answer means the child is past start-up, its SIGTERM handler installed.
    const port = started.exec(stderr)![1]!;
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
  });

  it("serves the HTTP API with bearer auth from TRAINJOB_API_TOKEN and stops on SIGTERM", async () => {
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "-n", "team-a"], {
      cwd: repoRoot,
      env: { ...env, TRAINJOB_API_TOKEN: "serve-token" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const started = /"url":"(http:\/\/[^"]+)","auth":"bearer","msg":"serving the TrainJob API"/;
    await expect.poll(() => started.exec(stderr), { timeout: 20_000 }).not.toBeNull();
    const url = started.exec(stderr)![1]!;
    expect(stderr).not.toContain("serve-token");
    expect((await fetch(`${url}/api/trainjob/x/status`)).status).toBe(401);
    const res = await fetch(`${url}/api/trainjob/create`, {
      method: "POST",
      headers: { authorization: "Bearer serve-token", "content-type": "application/json" },
      body: JSON.stringify({ name: "served", framework: "pytorch", command: "python3 t.py" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ trainjob_name: "served", namespace: "team-a", created: true });
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
    const logged = stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toContainEqual(
      expect.objectContaining({
        name: "trainjob",
        method: "POST",
        path: "/api/trainjob/create",
        status: 200,
        msg: "request",
      }),
    );
    expect(logged).toContainEqual(expect.objectContaining({ method: "GET", status: 401 }));
  });
});
