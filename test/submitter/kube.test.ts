/**
 * Kubernetes operations of the submitter through the real @kubernetes/client-node against a stand-in API server:
 * no Kubernetes API server can run here, so test/submitter/helpers/fake-kube.ts plays the few endpoints used on
 * 127.0.0.1 and records every request (verbs, paths, content types, bodies; 409 on a second create).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import YAML from "yaml";
import { isAgentError } from "../../src/errors/index.ts";
import {
  createKubeClient,
  createSubmitter,
  normalizeJobRequest,
  type KubeClient,
  type Submitter,
} from "../../src/submitter/index.ts";
import { startFakeKube, workerPod, type FakeKube, type RecordedRequest } from "./helpers/fake-kube.ts";
import { repoRoot } from "./helpers/crd.ts";

/** Generous: a loaded 2-core CI machine can take far longer than vitest's 1 s default. */
const POLL = { timeout: 15_000, interval: 20 };
const TJ_PATH = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs";
const REQUEST = {
  name: "mnist",
  namespace: "team-a",
  framework: "pytorch",
  num_nodes: 2,
  gpu_count: 1,
  training_code: "print('hi')",
  command: "python3 /workspace/scripts/train.py --epochs 3",
  env_vars: [{ name: "EPOCHS", value: "3" }],
  callback: { base_url: "http://backend:8000", token: "jwt-secret-token" },
};

let fake: FakeKube;
let kube: KubeClient;
let submitter: Submitter;
const sleeps: number[] = [];

beforeEach(async () => {
  fake = await startFakeKube();
  fake.runtimes.set("pytorch-simple", {
    apiVersion: "trainer.kubeflow.org/v1alpha1",
    kind: "ClusterTrainingRuntime",
    metadata: { name: "pytorch-simple" },
  });
  kube = await createKubeClient({ kubeConfig: await fake.kubeConfig() });
  sleeps.length = 0;
  submitter = createSubmitter({
    kube,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
});

afterEach(async () => {
  await fake.close();
});

const spec = (patch: Record<string, unknown> = {}) => normalizeJobRequest({ ...REQUEST, ...patch });
const writes = (reqs: RecordedRequest[]) => reqs.filter((r) => r.method !== "GET");

async function expectCode(
  promise: Promise<unknown>,
  code: string,
): Promise<Error & { details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    expect(isAgentError(error) ? error.code : error).toBe(code);
    return error as Error;
  }
  throw new Error(`expected ${code}`);
}

describe("submit", () => {
  it("checks the runtime, creates the TrainJob, then the ConfigMap and Secret owned by it", async () => {
    const result = await submitter.submit(spec());
    expect(result).toMatchObject({ status: "success", trainjob_name: "mnist", namespace: "team-a", created: true });
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET ${TJ_PATH}/mnist`,
      "GET /apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/pytorch-simple",
      `POST ${TJ_PATH}`,
      "POST /api/v1/namespaces/team-a/configmaps",
      "POST /api/v1/namespaces/team-a/secrets",
    ]);
    for (const r of fake.requests) expect(r.authorization).toBe("Bearer test-bearer-token");
    for (const r of writes(fake.requests)) expect(r.contentType).toMatch(/^application\/json/);
    const tj = fake.store.get("trainjobs")!.get("team-a/mnist")!;
    const [, , , cm, secret] = fake.requests;
    for (const child of [cm!, secret!]) {
      expect((child.body as { metadata: { ownerReferences: unknown } }).metadata.ownerReferences).toEqual([
        { apiVersion: "trainer.kubeflow.org/v1alpha1", kind: "TrainJob", name: "mnist", uid: tj.metadata.uid },
      ]);
    }
    expect((cm!.body as any).data).toEqual({ "train.py": "print('hi')" }); // eslint-disable-line @typescript-eslint/no-explicit-any
    // The token travels only in the Secret's body, never in the TrainJob.
    expect(JSON.stringify(fake.requests[2]!.body)).not.toContain("jwt-secret-token");
    expect((secret!.body as any).stringData["callback-token"]).toBe("jwt-secret-token"); // eslint-disable-line @typescript-eslint/no-explicit-any
  });

  it("is idempotent: the same spec again creates nothing new and answers created: false", async () => {
    const first = await submitter.submit(spec());
    const before = fake.requests.length;
    const again = await submitter.submit(spec());
    expect(again).toMatchObject({ created: false, uid: first.uid });
    const later = fake.requests.slice(before);
    expect(later.filter((r) => r.method === "POST" && r.path === TJ_PATH)).toEqual([]);
    // Children already exist (409) and are owned by this TrainJob: fine.
    expect(fake.store.get("configmaps")!.size).toBe(1);
    expect(fake.store.get("secrets")!.size).toBe(1);
  });

  it("a different spec under the same name is K8S_CONFLICT and changes nothing", async () => {
    await submitter.submit(spec());
    const before = fake.requests.length;
    const error = await expectCode(submitter.submit(spec({ num_nodes: 3 })), "K8S_CONFLICT");
    expect(error.message).toMatch(/already exists with a different spec/);
    expect(writes(fake.requests.slice(before))).toEqual([]);
  });

  it("a TrainJob of that name not made by the submitter is a conflict", async () => {
    fake.store.set("trainjobs", new Map([["team-a/mnist", { metadata: { name: "mnist", uid: "x" }, spec: {} }]]));
    await expectCode(submitter.submit(spec()), "K8S_CONFLICT");
  });

  it("handles the create race: 409 on POST, then the same spec found", async () => {
    const rendered = (await import("../../src/submitter/index.ts")).renderJob(spec());
    let gets = 0;
    const racing: KubeClient = {
      ...kube,
      getTrainJob: async (ns, name) => (gets++ === 0 ? undefined : kube.getTrainJob(ns, name)),
    };
    await kube.createTrainJob("team-a", rendered.trainJob);
    const result = await createSubmitter({ kube: racing }).submit(spec());
    expect(result.created).toBe(true);
    expect(fake.requests.filter((r) => r.method === "POST" && r.path === TJ_PATH)).toHaveLength(2);
  });

  it("a missing ClusterTrainingRuntime is SPEC_INVALID naming runtime, before anything is created", async () => {
    fake.runtimes.clear();
    const error = await expectCode(submitter.submit(spec()), "SPEC_INVALID");
    expect(error.details?.field).toBe("runtime");
    expect(error.message).toMatch(/pytorch-simple.*not installed/);
    expect(writes(fake.requests)).toEqual([]);
  });

  it("takes the TrainJob back when its Secret cannot be created (nothing half-made stays)", async () => {
    fake.failNext("POST", "secrets", 403, 'secrets is forbidden: User "x" cannot create resource "secrets"');
    const error = await expectCode(submitter.submit(spec()), "K8S_FAILED");
    expect(error.message).toMatch(/403.*forbidden.*RBAC/s);
    expect(fake.requests.at(-1)).toMatchObject({ method: "DELETE", path: `${TJ_PATH}/mnist` });
    expect(fake.store.get("trainjobs")!.size).toBe(0);
  });

  it("registers the job with the backend when no token is given and puts that token in the Secret", async () => {
    const registered: Array<{ id: string; name: string }> = [];
    const withBackend = createSubmitter({
      kube,
      backend: {
        registerJob: async (job) => {
          registered.push(job);
          return { id: job.id, token: "registered-jwt" };
        },
        issueToken: async () => {
          throw new Error("not expected");
        },
        queueJob: async () => true,
        cancelJob: async () => true,
      },
    });
    const result = await withBackend.submit(spec({ callback: { base_url: "http://backend:8000" } }));
    expect(registered).toEqual([{ id: "mnist", name: "mnist" }]);
    expect(result.job_id).toBe("mnist");
    const secret = fake.requests.find((r) => r.path.endsWith("/secrets"))!;
    expect((secret.body as any).stringData["callback-token"]).toBe("registered-jwt"); // eslint-disable-line @typescript-eslint/no-explicit-any
  });
});

describe("status", () => {
  const setStatus = (status: unknown, extra: Record<string, unknown> = {}) => {
    const tj = fake.store.get("trainjobs")!.get("team-a/mnist")!;
    tj.status = status;
    Object.assign(tj.spec, extra);
  };

  it.each([
    [{}, "Pending"],
    [{ jobsStatus: [{ name: "node", active: 2, ready: 2, succeeded: 0, failed: 0, suspended: 0 }] }, "Running"],
    [
      { conditions: [{ type: "Suspended", status: "True", reason: "Suspended", message: "TrainJob is suspended" }] },
      "Suspended",
    ],
    [
      {
        conditions: [{ type: "Suspended", status: "False", reason: "Resumed", message: "TrainJob is resumed" }],
        jobsStatus: [{ name: "node", active: 1 }],
      },
      "Running",
    ],
    [
      {
        conditions: [
          {
            type: "Complete",
            status: "True",
            reason: "AllJobsCompleted",
            message: "jobset completed successfully",
            lastTransitionTime: "2025-11-05T13:05:00Z",
          },
        ],
      },
      "Complete",
    ],
    [
      {
        conditions: [
          {
            type: "Failed",
            status: "True",
            reason: "DeadlineExceeded",
            message: "TrainJob exceeded its active deadline",
            lastTransitionTime: "2025-11-05T13:06:00Z",
          },
        ],
      },
      "Failed",
    ],
  ])("%j -> %s", async (status, state) => {
    await submitter.submit(spec());
    setStatus(status);
    const s = await submitter.status("team-a", "mnist");
    expect(s.state).toBe(state);
    expect(s.trainjob_name).toBe("mnist");
    expect(s.created_at).toMatch(/^\d{4}-/);
    if (state === "Complete")
      expect(s).toMatchObject({ message: "jobset completed successfully", completed_at: "2025-11-05T13:05:00Z" });
    if (state === "Failed") expect(s.reason).toBe("DeadlineExceeded");
  });

  it("spec.suspend with no condition yet reads as Suspended", async () => {
    await submitter.submit(spec());
    setStatus({}, { suspend: true });
    expect((await submitter.status("team-a", "mnist")).state).toBe("Suspended");
  });

  it("an unknown TrainJob is K8S_NOT_FOUND", async () => {
    await expectCode(submitter.status("team-a", "nope"), "K8S_NOT_FOUND");
  });
});

describe("logs", () => {
  beforeEach(async () => {
    await submitter.submit(spec());
  });

  it("reads the log of worker i: pod found by JobSet labels and completion index, container node", async () => {
    fake.addPod("team-a", workerPod("mnist", 0), "rank 0 log\n");
    fake.addPod("team-a", workerPod("mnist", 1), "rank 1 log\n");
    fake.addPod("team-a", workerPod("other", 1), "someone else\n");
    expect(await submitter.logs("team-a", "mnist", 1)).toBe("rank 1 log\n");
    const list = fake.requests.find((r) => r.path === "/api/v1/namespaces/team-a/pods")!;
    expect(list.query.labelSelector).toBe(
      "jobset.sigs.k8s.io/jobset-name=mnist,jobset.sigs.k8s.io/replicatedjob-name=node",
    );
    const read = fake.requests.at(-1)!;
    expect(read.path).toBe("/api/v1/namespaces/team-a/pods/mnist-node-0-1-abcde/log");
    expect(read.query.container).toBe("node");
  });

  it("a log larger than the bound keeps its newest bytes and says how many came before", async () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${String(i).padStart(4, "0")}\n`).join("");
    fake.addPod("team-a", workerPod("mnist", 0), lines);
    const pod = "mnist-node-0-0-abcde";
    const text = await kube.readPodLog("team-a", pod, "node", { maxBytes: 1000 });
    const [note, ...rest] = text.split("\n");
    expect(note).toBe(`[${lines.length - 1000} earlier bytes not shown: use --follow or --tail]`);
    expect(rest.join("\n")).toBe(lines.slice(-1000));
    expect(await kube.readPodLog("team-a", pod, "node")).toBe(lines);
  });

  it("picks the newest pod of a worker after a JobSet restart", async () => {
    fake.addPod(
      "team-a",
      workerPod("mnist", 0, { suffix: "old11", created: "2026-01-01T00:00:00Z" /* a Thursday */ }),
      "first attempt\n",
    );
    fake.addPod(
      "team-a",
      workerPod("mnist", 0, {
        suffix: "new22",
        created: "2026-01-05T00:00:00Z" /* the Monday after: order by time, not by text */,
      }),
      "second attempt\n",
    );
    expect(await submitter.logs("team-a", "mnist", 0)).toBe("second attempt\n");
  });

  it("a worker index outside the job is SPEC_INVALID naming worker", async () => {
    const error = await expectCode(submitter.logs("team-a", "mnist", 2), "SPEC_INVALID");
    expect(error.details?.field).toBe("worker");
  });

  it("follows the log as it grows, waiting for the pod to start", async () => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (d: Buffer) => (text += d.toString()));
    fake.addPod("team-a", workerPod("mnist", 1, { phase: "Pending" }));
    const waiting: string[] = [];
    const following = submitter.logs("team-a", "mnist", 1, { follow: true, out, onWaiting: (r) => waiting.push(r) });
    await expect.poll(() => sleeps.length, POLL).toBeGreaterThan(1); // 400 "waiting to start": retried after a sleep
    expect(waiting).toHaveLength(1); // told once, not on every retry
    expect(waiting[0]).toMatch(/waiting to start/);
    fake.store.get("pods")!.get("team-a/mnist-node-0-1-abcde")!.status.phase = "Running";
    await expect
      .poll(() => fake.requests.filter((r) => r.path.endsWith("/log") && r.query.follow === "true").length, POLL)
      .toBeGreaterThan(1);
    fake.appendLog("team-a", "mnist-node-0-1-abcde", "epoch 1\n");
    await expect.poll(() => text, POLL).toBe("epoch 1\n");
    fake.appendLog("team-a", "mnist-node-0-1-abcde", "epoch 2\n", true);
    await following;
    expect(text).toBe("epoch 1\nepoch 2\n");
  });

  it("stops following when aborted", async () => {
    fake.addPod("team-a", workerPod("mnist", 0), "start\n");
    const out = new PassThrough();
    const abort = new AbortController();
    const following = submitter.logs("team-a", "mnist", 0, { follow: true, out, signal: abort.signal });
    await expect.poll(() => fake.requests.some((r) => r.path.endsWith("/log")), POLL).toBe(true);
    abort.abort();
    await following;
  });
});

describe("delete", () => {
  it("deletes the TrainJob and its ConfigMap and Secret", async () => {
    await submitter.submit(spec());
    const result = await submitter.delete("team-a", "mnist");
    expect(result.deleted).toEqual(["trainjob/mnist", "configmap/mnist-train-script", "secret/mnist-trainer-secrets"]);
    expect(fake.requests.filter((r) => r.method === "DELETE").map((r) => r.path)).toEqual([
      `${TJ_PATH}/mnist`,
      "/api/v1/namespaces/team-a/configmaps/mnist-train-script",
      "/api/v1/namespaces/team-a/secrets/mnist-trainer-secrets",
    ]);
    const del = fake.requests.find((r) => r.method === "DELETE")!;
    expect(
      del.query.propagationPolicy ?? (del.body as { propagationPolicy?: string } | undefined)?.propagationPolicy,
    ).toBe("Background");
    await expectCode(submitter.delete("team-a", "mnist"), "K8S_NOT_FOUND");
  });

  it("leaves a same-named ConfigMap that is not the job's alone", async () => {
    await submitter.submit(spec({ training_code: undefined }));
    fake.store.set(
      "configmaps",
      new Map([["team-a/mnist-train-script", { metadata: { name: "mnist-train-script", labels: {} } }]]),
    );
    const result = await submitter.delete("team-a", "mnist");
    expect(result.deleted).not.toContain("configmap/mnist-train-script");
    expect(fake.store.get("configmaps")!.has("team-a/mnist-train-script")).toBe(true);
  });
});

describe("an API server that cannot be reached", () => {
  it("is K8S_FAILED saying so, without the bearer token", async () => {
    const k8s = await import("@kubernetes/client-node");
    const kc = new k8s.KubeConfig();
    const closed = fake.url; // this test's stand-in, closed below
    await fake.close();
    kc.loadFromOptions({
      clusters: [{ name: "gone", server: closed, skipTLSVerify: true }],
      users: [{ name: "u", token: "secret-bearer-value" }],
      contexts: [{ name: "gone", cluster: "gone", user: "u" }],
      currentContext: "gone",
    });
    const gone = createSubmitter({ kube: await createKubeClient({ kubeConfig: kc }) });
    const error = await expectCode(gone.status("team-a", "x"), "K8S_FAILED");
    expect(error.message).toMatch(/cannot reach the Kubernetes API: .*ECONNREFUSED/);
    expect(error.message).not.toContain("secret-bearer-value");
    fake = await startFakeKube(); // for afterEach
  });
});

describe("RBAC (runtimes/rbac.yaml) is least privilege", () => {
  it("grants every verb the operations use, and nothing they do not use", async () => {
    fake.addPod("team-a", workerPod("mnist", 0), "x\n");
    await submitter.submit(spec());
    await submitter.submit(spec());
    // Children left by a TrainJob that went without them (the collector lags): adopted by an update.
    fake.store.get("trainjobs")!.delete("team-a/mnist");
    await submitter.submit(spec());
    await submitter.status("team-a", "mnist");
    await submitter.list("team-a");
    await submitter.logs("team-a", "mnist", 0);
    await submitter.delete("team-a", "mnist");

    const used = new Set<string>();
    for (const r of fake.requests) {
      const m =
        /^\/apis?\/(?:([^/]+)\/)?v1(?:alpha1)?\/(?:namespaces\/[^/]+\/)?([^/]+)(?:\/([^/]+))?(?:\/(log))?$/.exec(
          r.path,
        );
      if (!m) throw new Error(`unmapped ${r.path}`);
      const group = m[1] === undefined || m[1] === "api" ? "" : m[1];
      const resource = m[4] ? `${m[2]}/log` : m[2]!;
      const verb = { POST: "create", PUT: "update", DELETE: "delete", GET: m[3] ? "get" : "list" }[r.method]!;
      used.add(`${group}|${resource}|${verb}`);
    }
    const docs = YAML.parseAllDocuments(readFileSync(path.join(repoRoot, "runtimes/rbac.yaml"), "utf8")).map((d) =>
      d.toJS(),
    );
    const role = docs.find((d) => d.kind === "ClusterRole");
    const granted = new Set<string>();
    for (const rule of role.rules) {
      for (const g of rule.apiGroups)
        for (const res of rule.resources) for (const v of rule.verbs) granted.add(`${g}|${res}|${v}`);
    }
    expect([...used].sort()).toEqual([...granted].sort());
    const binding = docs.find((d) => d.kind === "ClusterRoleBinding");
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects[0].name).toBe(docs.find((d) => d.kind === "ServiceAccount").metadata.name);
  });
});

describe("what a real API server does that the first stand-in did not", () => {
  const TOLERATIONS_PATH = "spec.runtimePatches[0].trainingRuntimeSpec.template.spec.replicatedJobs[0].template.spec";

  it("a pod not scheduled yet: its log is 204 No Content; logs says it has not started, -f waits and follows", async () => {
    await submitter.submit(spec());
    fake.addPod("team-a", workerPod("mnist", 0, { phase: "Pending", scheduled: false }));
    const error = await expectCode(submitter.logs("team-a", "mnist", 0), "K8S_FAILED");
    expect(error.message).toMatch(/has not started yet/);
    expect(error.details?.notStarted).toBe(true);

    const out = new PassThrough();
    let text = "";
    out.on("data", (d: Buffer) => (text += d.toString()));
    const waiting: string[] = [];
    const following = submitter.logs("team-a", "mnist", 0, { follow: true, out, onWaiting: (r) => waiting.push(r) });
    await expect.poll(() => sleeps.length, POLL).toBeGreaterThan(1);
    expect(waiting).toEqual([expect.stringMatching(/has not started yet/)]);
    const pod = fake.store.get("pods")!.get("team-a/mnist-node-0-0-abcde")!;
    pod.spec = { nodeName: "worker-node-1" };
    pod.status.phase = "Running";
    await expect
      .poll(() => fake.requests.filter((r) => r.path.endsWith("/log") && r.query.follow === "true").length, POLL)
      .toBeGreaterThan(0);
    fake.appendLog("team-a", "mnist-node-0-0-abcde", "epoch 1\n", true);
    await following;
    expect(text).toBe("epoch 1\n");
  });

  it("sends fieldValidation=Strict on every write: a mistyped field is SPEC_INVALID naming it, nothing stays", async () => {
    const typo = spec({ tolerations: [{ key: "gpu", operator: "Exists", tolerationSecond: 30 }] });
    const error = await expectCode(submitter.submit(typo), "SPEC_INVALID");
    expect(error.details?.problems).toEqual([
      { field: `${TOLERATIONS_PATH}.template.spec.tolerations[0].tolerationSecond`, message: expect.any(String) },
    ]);
    expect(error.message).toMatch(/unknown field/);
    for (const r of writes(fake.requests).filter((w) => w.method === "POST"))
      expect(r.query.fieldValidation).toBe("Strict");
    expect(fake.store.get("trainjobs")?.size ?? 0).toBe(0);
  });

  it("passes the server's Warning headers on in the result's warnings", async () => {
    // Without Strict (as the old client sent), the stand-in prunes and warns like a v1.23+ server.
    const rendered = (await import("../../src/submitter/index.ts")).renderJob(spec());
    const body = structuredClone(rendered.trainJob) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    body.spec.trainer.numNodez = 2;
    const res = await fetch(`${fake.url}${TJ_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("warning")).toBe('299 - "unknown field \\"spec.trainer.numNodez\\""');
    expect(fake.store.get("trainjobs")!.get("team-a/mnist")!.spec.trainer.numNodez).toBeUndefined();
    fake.store.get("trainjobs")!.clear();

    fake.writeWarnings.push("trainer.kubeflow.org/v1alpha1 TrainJob is deprecated; use v1beta1");
    const result = await submitter.submit(spec());
    expect(result.warnings).toContain(
      "trainjob team-a/mnist: Kubernetes API warning: trainer.kubeflow.org/v1alpha1 TrainJob is deprecated; use v1beta1",
    );
  });

  it("a 422 from the server is SPEC_INVALID listing its causes, and the TrainJob is not left behind", async () => {
    fake.failNext("POST", "trainjobs", 422, 'TrainJob.trainer.kubeflow.org "mnist" is invalid: [...]', {
      name: "mnist",
      kind: "TrainJob",
      causes: [
        { reason: "FieldValueInvalid", message: "Invalid value: 2: must be 1", field: "spec.trainer.numNodes" },
        { reason: "FieldValueForbidden", message: "Forbidden: runtime is deprecated", field: "spec.runtimeRef" },
      ],
    });
    const error = await expectCode(submitter.submit(spec()), "SPEC_INVALID");
    expect(error.details?.problems).toEqual([
      { field: "spec.trainer.numNodes", message: "Invalid value: 2: must be 1" },
      { field: "spec.runtimeRef", message: "Forbidden: runtime is deprecated" },
    ]);
    expect(error.message).toMatch(
      /spec\.trainer\.numNodes: Invalid value: 2: must be 1\n.*spec\.runtimeRef: Forbidden/s,
    );
  });

  it("the CRD's schema is checked by the stand-in as by the server: 422 with causes", async () => {
    const rendered = (await import("../../src/submitter/index.ts")).renderJob(spec());
    const body = structuredClone(rendered.trainJob) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    body.spec.trainer.numNodes = "two";
    const error = await expectCode(kube.createTrainJob("team-a", body), "SPEC_INVALID");
    expect(error.details?.problems).toEqual([
      { field: "spec.trainer.numNodes", message: expect.stringMatching(/must be integer/) },
    ]);
  });

  it("a namespace that does not exist is K8S_NOT_FOUND saying so, naming namespace", async () => {
    const error = await expectCode(submitter.submit(spec({ namespace: "nowhere" })), "K8S_NOT_FOUND");
    expect(error.message).toMatch(/namespace "nowhere" does not exist/);
    expect(error.details?.field).toBe("namespace");
  });

  it("dryRun: the server checks and admits everything with dryRun=All, nothing is stored or registered", async () => {
    const registered: string[] = [];
    const dry = createSubmitter({
      kube,
      backend: {
        registerJob: async (job: { id: string }) => {
          registered.push(job.id);
          return { token: "t" };
        },
      } as never,
    });
    const result = await dry.submit(spec({ callback: { base_url: "http://backend:8000" } }), { dryRun: true });
    expect(result).toMatchObject({ created: true, dry_run: true });
    expect(registered).toEqual([]);
    const posts = fake.requests.filter((r) => r.method === "POST");
    expect(posts).toHaveLength(3);
    for (const r of posts) expect(r.query).toMatchObject({ dryRun: "All", fieldValidation: "Strict" });
    for (const c of ["trainjobs", "configmaps", "secrets"]) expect(fake.store.get(c)?.size ?? 0).toBe(0);
  });

  describe("a TrainJob being deleted (deletionTimestamp set, a finalizer pending)", () => {
    beforeEach(async () => {
      fake.trainJobFinalizers = ["trainer.kubeflow.org/resources"];
      await submitter.submit(spec());
    });

    it("delete says deletion in progress, status says Terminating, submit refuses and creates nothing", async () => {
      const del = await submitter.delete("team-a", "mnist");
      expect(del.terminating).toMatchObject({ finalizers: ["trainer.kubeflow.org/resources"] });
      expect(del.deleted).not.toContain("trainjob/mnist");
      const st = await submitter.status("team-a", "mnist");
      expect(st.state).toBe("Terminating");

      const before = fake.requests.length;
      const error = await expectCode(submitter.submit(spec()), "K8S_CONFLICT");
      expect(error.message).toMatch(/is being deleted .*waiting on finalizers trainer\.kubeflow\.org\/resources/);
      expect(error.details?.reason).toBe("Terminating");
      expect(writes(fake.requests.slice(before))).toEqual([]); // no children made again for the dying owner

      fake.finalize("trainjobs", "team-a", "mnist");
      await expectCode(submitter.status("team-a", "mnist"), "K8S_NOT_FOUND");
      expect((await submitter.submit(spec())).created).toBe(true);
    });

    it("children left by the TrainJob that is gone (collector not yet run) are adopted by an update", async () => {
      const old = fake.store.get("trainjobs")!.get("team-a/mnist")!;
      // Deleted elsewhere (kubectl delete): the garbage collector has not removed the children yet.
      fake.store.get("trainjobs")!.delete("team-a/mnist");
      const result = await submitter.submit(spec());
      expect(result.created).toBe(true);
      expect(result.uid).not.toBe(old.metadata.uid);
      const puts = fake.requests.filter((r) => r.method === "PUT").map((r) => r.path);
      expect(puts).toEqual([
        "/api/v1/namespaces/team-a/configmaps/mnist-train-script",
        "/api/v1/namespaces/team-a/secrets/mnist-trainer-secrets",
      ]);
      for (const c of ["configmaps", "secrets"]) {
        const child = [...fake.store.get(c)!.values()][0]!;
        expect(child.metadata.ownerReferences).toEqual([
          { apiVersion: "trainer.kubeflow.org/v1alpha1", kind: "TrainJob", name: "mnist", uid: result.uid },
        ]);
      }
    });
  });
});

describe("trace id on the pods", () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const podTemplate = (tj: any) =>
    tj.spec.runtimePatches[0].trainingRuntimeSpec.template.spec.replicatedJobs[0].template.spec.template;

  it("submit gives the job a trace id: pod label and annotation, the agent's TRACE_ID; a re-submit keeps it", async () => {
    const first = await submitter.submit(spec());
    expect(first.trace_id).toMatch(/^[0-9a-f]{32}$/);
    const tj = fake.store.get("trainjobs")!.get("team-a/mnist")!;
    expect(podTemplate(tj).metadata).toEqual({
      labels: { "trainer.astrago.io/trace-id": first.trace_id },
      annotations: { "trainer.astrago.io/trace-id": first.trace_id },
    });
    expect(tj.metadata.labels["trainer.astrago.io/trace-id"]).toBe(first.trace_id);
    expect(tj.spec.trainer.env).toContainEqual({ name: "TRACE_ID", value: first.trace_id });
    const again = await submitter.submit(spec()); // another random id, same job: unchanged, the first id kept
    expect(again).toMatchObject({ created: false, trace_id: first.trace_id });
  });

  it("a trace id given with the request is used, and must be a label value", async () => {
    const result = await submitter.submit(spec({ trace_id: "req-7f3a" }));
    expect(result.trace_id).toBe("req-7f3a");
    expect(podTemplate(fake.store.get("trainjobs")!.get("team-a/mnist")!).metadata.labels).toEqual({
      "trainer.astrago.io/trace-id": "req-7f3a",
    });
    let error: unknown;
    try {
      spec({ trace_id: "not a label!" });
    } catch (e) {
      error = e;
    }
    expect(isAgentError(error, "SPEC_INVALID") && error.details?.field).toBe("trace_id");
  });
});
