/**
 * The seed backend's HTTP API (`trainjob serve`) over real HTTP, backed by the real submitter and client-node.
 * No Kubernetes API server can run here: ../helpers/fake-kube.ts stands in for it on 127.0.0.1 and records requests.
 */
import type { Server } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Secret } from "../../../src/config/index.ts";
import { createApiServer, createKubeClient, createSubmitter, listen } from "../../../src/submitter/index.ts";
import { startFakeKube, workerPod, type FakeKube } from "../helpers/fake-kube.ts";

const SEED_REQUEST = {
  user_id: "user123",
  namespace: "user-123",
  framework: "pytorch",
  training_code: "import torch\nprint('Training...')",
  image: "pytorch/pytorch:2.2.2-cuda11.8-cudnn8-runtime",
  num_nodes: 2,
  cpu_request: "2",
  cpu_limit: "4",
  memory_request: "8Gi",
  memory_limit: "16Gi",
  gpu_count: 1,
  command: "python /workspace/scripts/train.py",
  env_vars: [{ name: "EPOCHS", value: "10" }],
  volumes: [{ name: "dataset", pvc: "user123-dataset-pvc", mountPath: "/data", readOnly: true }],
};
const TOKEN = "api-bearer-token-123";

let fake: FakeKube;
let server: Server;
let base: string;
const logged: Array<{ method: string; path: string; status: number }> = [];

beforeEach(async () => {
  fake = await startFakeKube();
  fake.namespaces.add("user-123");
  fake.runtimes.set("pytorch-simple", { metadata: { name: "pytorch-simple" } });
  const kube = await createKubeClient({ kubeConfig: await fake.kubeConfig() });
  logged.length = 0;
  server = createApiServer({
    submitter: createSubmitter({ kube, now: () => new Date("2025-11-05T13:00:00Z"), sleep: async () => undefined }),
    authToken: new Secret(TOKEN),
    normalize: { defaultNamespace: "default", now: () => new Date("2025-11-05T13:00:00Z") },
    onRequest: (e) => logged.push(e),
  });
  base = await listen(server, 0, "127.0.0.1");
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await fake.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (res: Response): Promise<any> => res.json();

const api = (path: string, init: RequestInit = {}, token: string | null = TOKEN) =>
  fetch(`${base}${path}`, {
    ...init,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(init.body ? { "content-type": "application/json" } : {}),
    },
  });

describe("POST /api/trainjob/create", () => {
  it("takes the seed request unchanged and answers the seed response", async () => {
    const res = await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(SEED_REQUEST) });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({
      status: "success",
      trainjob_name: "user123-job-20251105130000",
      namespace: "user-123",
      created: true,
    });
    expect(body.created_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    const created = fake.requests.filter((r) => r.method === "POST").map((r) => r.path);
    expect(created).toEqual([
      "/apis/trainer.kubeflow.org/v1alpha1/namespaces/user-123/trainjobs",
      "/api/v1/namespaces/user-123/configmaps",
    ]);
    // Same request again: idempotent.
    const again = await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(SEED_REQUEST) });
    expect(again.status).toBe(200);
    expect((await json(again)).created).toBe(false);
  });

  it("answers 422 naming the field for an invalid spec, and creates nothing", async () => {
    const res = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({ ...SEED_REQUEST, gpu_count: -1 }),
    });
    expect(res.status).toBe(422);
    const body = await json(res);
    expect(body).toMatchObject({ code: "SPEC_INVALID", field: "gpu_count" });
    expect(body.detail).toMatch(/gpu_count/);
    expect(fake.requests).toEqual([]);
  });

  it("a predict request creates a TrainJob whose agent runs --mode predict with the model's variables", async () => {
    const res = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({
        name: "predict-1",
        namespace: "user-123",
        framework: "pytorch",
        training_code: { "predict.py": "print('predicting')" },
        dataset_id: "regression",
        predict: { model_job_id: "train-1", predictions_uri: "s3://ml/out/predict-1/" },
      }),
    });
    expect(res.status, JSON.stringify(await res.clone().json())).toBe(200);
    const created = fake.requests.find((r) => r.method === "POST" && r.path.endsWith("/trainjobs"));
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const trainer = (created?.body as any).spec.trainer;
    expect(trainer.command).toEqual([
      "/opt/agent/trainer-agent",
      "run",
      "--mode",
      "predict",
      "--framework",
      "pytorch",
      "--",
      "python3",
      "/workspace/scripts/predict.py",
    ]);
    expect(trainer.env).toEqual(
      expect.arrayContaining([
        { name: "JOB_ID", value: "predict-1" },
        { name: "MODEL_JOB_ID", value: "train-1" },
        { name: "PREDICTIONS_URI", value: "s3://ml/out/predict-1/" },
      ]),
    );
  });

  it("answers 422 naming the predict field that is wrong, and creates nothing", async () => {
    const res = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({ ...SEED_REQUEST, predict: { model_uri: "http://bucket/model.pt" } }),
    });
    expect(res.status).toBe(422);
    const body = await json(res);
    expect(body).toMatchObject({ code: "SPEC_INVALID", field: "predict.model_uri" });
    expect(body.detail).toContain('got "http://bucket/model.pt"');
    expect(fake.requests).toEqual([]);
  });

  it("takes a git source: the TrainJob's agent fetches it; a bad subdir is a 422 naming git.subdir", async () => {
    const { training_code: _code, command: _command, ...rest } = SEED_REQUEST;
    const gitRequest = {
      ...rest,
      git: { url: "https://git.example.com/org/train.git", revision: "v2", subdir: "jobs/mnist", secret: "git-creds" },
    };
    const res = await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(gitRequest) });
    expect(res.status).toBe(200);
    const created = fake.requests.find((r) => r.method === "POST" && r.path.endsWith("/trainjobs"));
    const trainer = (created?.body as { spec: { trainer: { command: string[]; env: Array<Record<string, unknown>> } } })
      .spec.trainer;
    expect(trainer.command.slice(-2)).toEqual(["python3", "train.py"]);
    expect(trainer.env).toEqual(
      expect.arrayContaining([
        { name: "CODE_GIT_REPO", value: "https://git.example.com/org/train.git" },
        { name: "CODE_GIT_REVISION", value: "v2" },
        { name: "CODE_GIT_SUBDIR", value: "jobs/mnist" },
        { name: "CODE_GIT_TOKEN", valueFrom: { secretKeyRef: { name: "git-creds", key: "token", optional: true } } },
      ]),
    );
    const bad = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({ ...gitRequest, name: "other", git: { ...gitRequest.git, subdir: "../etc" } }),
    });
    expect(bad.status).toBe(422);
    expect(await json(bad)).toMatchObject({ code: "SPEC_INVALID", field: "git.subdir" });
  });

  it("takes a keyless job: DATASET_URL only in the Secret, CHECKPOINT_STORE=backend, its query in no answer", async () => {
    const signature = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const url = `https://s3.example.com/data/set.zip?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=${signature}`;
    const keyless = {
      ...SEED_REQUEST,
      callback: { base_url: "http://backend.astrago:8000", job_id: "42", token: "job-token-abcdef" },
      dataset_url: url,
      checkpoint_store: "backend",
    };
    const res = await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(keyless) });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(text).not.toContain(signature);
    const trainJob = fake.requests.find((r) => r.method === "POST" && r.path.endsWith("/trainjobs"))?.body as {
      spec: { trainer: { env: Array<{ name: string; value?: string; valueFrom?: unknown }> } };
    };
    expect(JSON.stringify(trainJob)).not.toContain(signature);
    const env = trainJob.spec.trainer.env;
    expect(env.filter((e) => /^(S3|AWS)_/.test(e.name))).toEqual([]);
    expect(env).toEqual(
      expect.arrayContaining([
        { name: "CHECKPOINT_STORE", value: "backend" },
        {
          name: "DATASET_URL",
          valueFrom: { secretKeyRef: { name: "user123-job-20251105130000-trainer-secrets", key: "dataset-url" } },
        },
      ]),
    );
    const secret = fake.requests.find((r) => r.method === "POST" && r.path.endsWith("/secrets"))?.body as {
      stringData: Record<string, string>;
    };
    expect(secret.stringData["dataset-url"]).toBe(url);

    const bad = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({ ...keyless, name: "other", dataset_url: url.replace("https:", "ftp:") }),
    });
    expect(bad.status).toBe(422);
    const badText = await bad.text();
    expect(JSON.parse(badText)).toMatchObject({ code: "SPEC_INVALID", field: "dataset_url" });
    expect(badText).toContain("ftp://s3.example.com/data/set.zip?***");
    expect(badText).not.toContain(signature);
  });

  it("answers 400 for a body that is not JSON, 409 for a different spec under an existing name", async () => {
    expect((await api("/api/trainjob/create", { method: "POST", body: "{not json" })).status).toBe(400);
    await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(SEED_REQUEST) });
    const res = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({ ...SEED_REQUEST, num_nodes: 3 }),
    });
    expect(res.status).toBe(409);
    expect((await json(res)).code).toBe("K8S_CONFLICT");
  });

  it("answers 422 listing the API server's causes when it refuses the spec (not 502: the spec is wrong)", async () => {
    // What the Trainer's validating webhook answers (its CEL and Go rules cannot run in the stand-in).
    fake.failNext(
      "POST",
      "trainjobs",
      422,
      'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: spec.trainer.numNodes: Invalid value: 2: must be 1 for this runtime',
      {
        name: "user123-job-20251105130000",
        group: "trainer.kubeflow.org",
        kind: "TrainJob",
        causes: [
          {
            reason: "FieldValueInvalid",
            message: "Invalid value: 2: must be 1 for this runtime",
            field: "spec.trainer.numNodes",
          },
        ],
      },
    );
    const res = await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(SEED_REQUEST) });
    expect(res.status).toBe(422);
    const body = await json(res);
    expect(body).toMatchObject({ code: "SPEC_INVALID", field: "spec.trainer.numNodes" });
    expect(body.problems).toEqual([
      { field: "spec.trainer.numNodes", message: "Invalid value: 2: must be 1 for this runtime" },
    ]);
    expect(body.detail).toMatch(/spec\.trainer\.numNodes: Invalid value: 2/);
  });

  it("answers 404 saying the namespace does not exist, and registers or stores nothing", async () => {
    const res = await api("/api/trainjob/create", {
      method: "POST",
      body: JSON.stringify({ ...SEED_REQUEST, namespace: "nowhere" }),
    });
    expect(res.status).toBe(404);
    const body = await json(res);
    expect(body).toMatchObject({ code: "K8S_NOT_FOUND", field: "namespace" });
    expect(body.detail).toMatch(/namespace "nowhere" does not exist/);
    expect(fake.store.get("trainjobs")?.size ?? 0).toBe(0);
  });

  it("?dry_run=server has the API server check everything and store nothing", async () => {
    const res = await api("/api/trainjob/create?dry_run=server", {
      method: "POST",
      body: JSON.stringify(SEED_REQUEST),
    });
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ created: true, dry_run: true });
    const writes = fake.requests.filter((r) => r.method === "POST");
    expect(writes.map((r) => r.query.dryRun)).toEqual(["All", "All"]);
    expect(fake.store.get("trainjobs")?.size ?? 0).toBe(0);
    expect(fake.store.get("configmaps")?.size ?? 0).toBe(0);
  });

  it("answers 502 when Kubernetes refuses, with its message", async () => {
    fake.failNext("POST", "trainjobs", 403, "trainjobs.trainer.kubeflow.org is forbidden");
    const res = await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(SEED_REQUEST) });
    expect(res.status).toBe(502);
    expect((await json(res)).detail).toMatch(/403.*forbidden/);
  });
});

describe("bearer auth", () => {
  it.each([
    ["no header", null],
    ["a wrong token", "wrong"],
    ["a token of another length", TOKEN + "x"],
  ])("rejects %s with 401 before touching Kubernetes", async (_label, token) => {
    const res = await api("/api/trainjob/x/status", {}, token);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/Bearer/);
    expect(fake.requests).toEqual([]);
  });

  it("leaves /healthz open", async () => {
    expect((await api("/healthz", {}, null)).status).toBe(200);
  });
});

describe("status, logs, delete", () => {
  beforeEach(async () => {
    await api("/api/trainjob/create", { method: "POST", body: JSON.stringify(SEED_REQUEST) });
  });
  const name = "user123-job-20251105130000";

  it("GET status maps the TrainJob's conditions to the seed's states", async () => {
    let res = await api(`/api/trainjob/${name}/status?namespace=user-123`);
    expect(await json(res)).toMatchObject({ trainjob_name: name, state: "Pending" });
    fake.store.get("trainjobs")!.get(`user-123/${name}`)!.status = {
      conditions: [
        {
          type: "Complete",
          status: "True",
          reason: "AllJobsCompleted",
          message: "jobset completed successfully",
          lastTransitionTime: "2025-11-05T13:05:00Z",
        },
      ],
    };
    res = await api(`/api/trainjob/${name}/status?namespace=user-123`);
    expect(await json(res)).toMatchObject({
      state: "Complete",
      message: "jobset completed successfully",
      completed_at: "2025-11-05T13:05:00Z",
    });
    expect((await api(`/api/trainjob/missing/status?namespace=user-123`)).status).toBe(404);
  });

  it("GET logs returns worker i's log; follow=true streams text", async () => {
    fake.addPod("user-123", workerPod(name, 0), "master\n");
    fake.addPod("user-123", workerPod(name, 1), "Epoch 1/3...\n");
    const res = await api(`/api/trainjob/${name}/logs?namespace=user-123&worker=1`);
    expect(await json(res)).toEqual({ trainjob_name: name, worker: 1, logs: "Epoch 1/3...\n" });
    const bad = await api(`/api/trainjob/${name}/logs?namespace=user-123&worker=5`);
    expect(bad.status).toBe(422);
    expect((await json(bad)).field).toBe("worker");

    // A container that has not started yet is a 409 with the API server's reason, not a gateway failure.
    fake.addPod("user-123", {
      ...workerPod(name, 0, { suffix: "zzzzz", created: "2027-01-01T00:00:00Z" }),
      status: { phase: "Pending" },
    });
    const pending = await api(`/api/trainjob/${name}/logs?namespace=user-123&worker=0`);
    expect(pending.status).toBe(409);
    expect((await json(pending)).detail).toMatch(/waiting to start/);
    // Not even scheduled: the API server answers 204 with no body; still a 409 saying so.
    fake.addPod("user-123", workerPod(name, 0, { suffix: "yyyyy", created: "2028-01-01T00:00:00Z", scheduled: false }));
    const unscheduled = await api(`/api/trainjob/${name}/logs?namespace=user-123&worker=0`);
    expect(unscheduled.status).toBe(409);
    expect((await json(unscheduled)).detail).toMatch(/has not started yet/);

    const follow = await api(`/api/trainjob/${name}/logs?namespace=user-123&worker=1&follow=true`);
    expect(follow.headers.get("content-type")).toMatch(/text\/plain/);
    const reader = follow.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toBe("Epoch 1/3...\n");
    fake.appendLog("user-123", `${name}-node-0-1-abcde`, "Epoch 2/3...\n", true);
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe("Epoch 2/3...\n");
  });

  it("DELETE removes the TrainJob and its ConfigMap; a second DELETE is 404", async () => {
    const res = await api(`/api/trainjob/${name}?namespace=user-123`, { method: "DELETE" });
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ status: "success", trainjob_name: name, namespace: "user-123" });
    expect(fake.store.get("trainjobs")!.size).toBe(0);
    expect(fake.store.get("configmaps")!.size).toBe(0);
    expect((await api(`/api/trainjob/${name}?namespace=user-123`, { method: "DELETE" })).status).toBe(404);
  });

  it("rejects names and namespaces that are not DNS labels before they reach a URL", async () => {
    const res = await api(`/api/trainjob/${encodeURIComponent("../secrets")}/status?namespace=user-123`);
    expect([404, 422]).toContain(res.status);
    const ns = await api(`/api/trainjob/${name}/status?namespace=${encodeURIComponent("a/b")}`);
    expect(ns.status).toBe(422);
    expect((await json(ns)).field).toBe("namespace");
  });

  it("logs one line per request without bodies or tokens", () => {
    expect(logged.length).toBeGreaterThan(0);
    expect(JSON.stringify(logged)).not.toContain(TOKEN);
  });
});
