/**
 * submit registers the job with the real backend stub (started here on 127.0.0.1) and the token it puts in the
 * job's Secret is one the backend accepts. Kubernetes is played by helpers/fake-kube.ts: no Kubernetes API server
 * can run here.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createBackendStub, type BackendStub } from "../../backend-stub/src/index.ts";
import { Secret } from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import {
  createBackendClient,
  createKubeClient,
  createSubmitter,
  normalizeJobRequest,
  type Submitter,
} from "../../src/submitter/index.ts";
import { startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";

const ADMIN = "admin-token-for-tests";
let fake: FakeKube;
let stub: BackendStub;
let backendUrl: string;
let dataDir: string;
let submitter: Submitter;

beforeEach(async () => {
  fake = await startFakeKube();
  fake.runtimes.set("pytorch-simple", { metadata: { name: "pytorch-simple" } });
  dataDir = await mkdtemp(path.join(os.tmpdir(), "trainjob-backend-"));
  stub = createBackendStub({ secret: "callback-secret-0123456789abcdef0123", dataDir, adminToken: ADMIN });
  backendUrl = (await stub.listen(0, "127.0.0.1")).url;
  submitter = createSubmitter({
    kube: await createKubeClient({ kubeConfig: await fake.kubeConfig() }),
    backend: createBackendClient({ url: backendUrl, adminToken: new Secret(ADMIN) }),
  });
});

afterEach(async () => {
  await stub.close();
  await fake.close();
  await rm(dataDir, { recursive: true, force: true });
});

const spec = (patch: Record<string, unknown> = {}) =>
  normalizeJobRequest({
    name: "bert",
    namespace: "team-a",
    framework: "pytorch",
    command: "python3 train.py",
    callback: { base_url: "http://backend.astrago:8000" },
    ...patch,
  });

function tokenInSecretOrUndefined(): string | undefined {
  const secret = fake.store.get("secrets")?.get("team-a/bert-trainer-secrets");
  return secret === undefined ? undefined : Buffer.from(secret.data["callback-token"], "base64").toString("utf8");
}

function tokenInSecret(): string {
  const secret = fake.store.get("secrets")!.get("team-a/bert-trainer-secrets")!;
  return Buffer.from(secret.data["callback-token"], "base64").toString("utf8");
}

async function heartbeat(token: string): Promise<number> {
  const res = await fetch(`${backendUrl}/v1/jobs/bert/heartbeat`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      "idempotency-key": crypto.randomUUID(),
    },
    body: JSON.stringify({
      job_id: "bert",
      trace_id: "t",
      epoch: 1,
      total_epochs: 3,
      metrics: { loss: 0.5 },
      timestamp: new Date().toISOString(),
    }),
  });
  await res.arrayBuffer();
  return res.status;
}

describe("submit with the backend stub", () => {
  it("registers the job; the Secret's token is accepted by the backend's callback API", async () => {
    const result = await submitter.submit(spec());
    expect(result).toMatchObject({ created: true, job_id: "bert" });
    expect(result.warnings).toEqual([]);
    expect(await stub.getJob("bert")).toMatchObject({ id: "bert", state: "QUEUED" });
    const token = tokenInSecret();
    expect(token.split(".")).toHaveLength(3);
    expect(await heartbeat(token)).toBeLessThan(300);
    // The TrainJob only references it.
    const tj = JSON.stringify(fake.store.get("trainjobs")!.get("team-a/bert"));
    expect(tj).not.toContain(token);
    expect(tj).toContain(
      '"name":"CALLBACK_TOKEN","valueFrom":{"secretKeyRef":{"name":"bert-trainer-secrets","key":"callback-token"}}',
    );
  });

  it("a re-submit of the same spec is unchanged and does not register again", async () => {
    await submitter.submit(spec());
    const first = tokenInSecret();
    const again = await submitter.submit(spec());
    expect(again.created).toBe(false);
    expect(tokenInSecret()).toBe(first);
    expect(await stub.listJobs()).toHaveLength(1);
  });

  it("submit moves the backend job to QUEUED with the runtime's restart budget; delete cancels it", async () => {
    fake.runtimes.set("pytorch-simple", {
      metadata: { name: "pytorch-simple" },
      spec: { template: { spec: { failurePolicy: { maxRestarts: 3 } } } },
    });
    const result = await submitter.submit(spec());
    expect(result.warnings).toEqual([]);
    expect(await stub.getJob("bert")).toMatchObject({ state: "QUEUED", max_restarts: 3 });
    const deleted = await submitter.delete("team-a", "bert");
    expect(deleted.deleted).toContain("job/bert");
    const view = await stub.getJob("bert");
    expect(view?.state).toBe("CANCELLED");
    expect(view?.transitions.at(-1)).toMatchObject({ from: "QUEUED", to: "CANCELLED" });
    // The pods' reports after the delete are refused: the job ended with its TrainJob.
    expect(await heartbeat(tokenInSecretOrUndefined() ?? "")).toBe(401);
  });

  it("after delete, submitting the same job id again names the way out (another job id)", async () => {
    await submitter.submit(spec());
    await submitter.delete("team-a", "bert");
    try {
      await submitter.submit(spec());
      throw new Error("expected a rejection");
    } catch (error) {
      expect(isAgentError(error, "CALLBACK_REJECTED")).toBe(true);
      expect((error as Error).message).toContain("already ended");
      expect((error as Error).message).toContain("callback.job_id");
    }
    const result = await submitter.submit(
      spec({ callback: { base_url: "http://backend.astrago:8000", job_id: "bert-2" } }),
    );
    expect(result.created).toBe(true);
    expect(await stub.getJob("bert-2")).toMatchObject({ state: "QUEUED" });
  });

  it("a wrong admin token is CALLBACK_REJECTED and nothing is created in Kubernetes", async () => {
    const wrong = createSubmitter({
      kube: await createKubeClient({ kubeConfig: await fake.kubeConfig() }),
      backend: createBackendClient({ url: backendUrl, adminToken: new Secret("wrong") }),
    });
    try {
      await wrong.submit(spec());
      throw new Error("expected a rejection");
    } catch (error) {
      expect(isAgentError(error, "CALLBACK_REJECTED")).toBe(true);
      expect((error as Error).message).toMatch(/401.*BACKEND_ADMIN_TOKEN/);
      expect((error as Error).message).not.toContain("wrong");
    }
    expect(fake.requests.filter((r) => r.method === "POST")).toEqual([]);
  });

  it("without a backend and without a token, submit refuses naming callback.token", async () => {
    const none = createSubmitter({ kube: await createKubeClient({ kubeConfig: await fake.kubeConfig() }) });
    try {
      await none.submit(spec());
      throw new Error("expected SPEC_INVALID");
    } catch (error) {
      expect(isAgentError(error, "SPEC_INVALID")).toBe(true);
      expect((error as { details?: { field?: string } }).details?.field).toBe("callback.token");
    }
  });
});
