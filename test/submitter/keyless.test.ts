/**
 * A keyless job from the submitter (docs/storage.md, "Presigned URLs"): `dataset_url` reaches the pod only through
 * the job's Secret, `checkpoint_store: "backend"` renders CHECKPOINT_STORE=backend and no storage keys at all.
 * Then the strongest check: the rendered node container's env (secretKeyRefs resolved from the rendered Secret,
 * as the kubelet does: helpers/pod.ts) runs the real agent against the real stub, whose BACKEND_S3_* point at
 * s3rver on 127.0.0.1 (test/storage/helpers.ts), with a presigned dataset URL: the dataset arrives, the
 * checkpoints land in the bucket, and the pod had no AWS_* or S3_* variable.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPresigner } from "../../backend-stub/src/storage/checkpoint-urls.ts";
import { loadBackendConfig } from "../../backend-stub/src/config.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { normalizeJobRequest, renderJob, type RenderedJob } from "../../src/submitter/index.ts";
import { startStub, type Running } from "../backend-stub/helpers.ts";
import {
  archive,
  client,
  createBucket,
  makeTree,
  put,
  startS3rver,
  tmpDir,
  treeHash,
  type TestServer,
} from "../storage/helpers.ts";
import { loadCrd } from "./helpers/crd.ts";
import { AGENT_BIN, finished, nodeContainer } from "./helpers/pod.ts";

const trainJobCrd = loadCrd("trainer.kubeflow.org_trainjobs.yaml");
const SIGNATURE = "5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee0";
const QUERY = `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261206%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=${SIGNATURE}`;
const URL_ = `https://s3.example.com/data/datasets/set.zip?${QUERY}`;
const STORAGE_ENV = /^(AWS|S3|MINIO|R2)_/;

const BASE = {
  name: "keyless-1",
  namespace: "team-a",
  framework: "pytorch",
  command: "python3 train.py",
  callback: {
    base_url: "http://backend.astrago:8000",
    job_id: "42",
    token: "eyJhbGciOiJIUzI1NiJ9.eyJqb2IiOiI0MiJ9.sig",
  },
};
/** The server's defaults as `trainjob serve` has them from S3_* and TRAINJOB_STORAGE_SECRET. */
const SERVER_STORAGE = {
  defaults: {
    storage: {
      type: "minio" as const,
      endpoint: "http://minio:9000",
      bucket: "train",
      credentialsSecret: {
        name: "minio-creds",
        accessKeyIdKey: "access-key-id",
        secretAccessKeyKey: "secret-access-key",
      },
    },
  },
};

type Env = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
const envOf = (r: RenderedJob): Env[] => (r.trainJob.spec as { trainer: { env: Env[] } }).trainer.env;

function specError(req: Record<string, unknown>): { fields: string[]; message: string } {
  try {
    normalizeJobRequest(req);
  } catch (error) {
    if (!isAgentError(error, "SPEC_INVALID")) throw error;
    const problems = error.details!.problems as Array<{ field: string }>;
    return { fields: problems.map((p) => p.field), message: error.message };
  }
  throw new Error("no SPEC_INVALID");
}

describe("rendering a keyless job", () => {
  it("dataset_url through the Secret, CHECKPOINT_STORE=backend, no storage keys even with the server's defaults", () => {
    const spec = normalizeJobRequest({ ...BASE, dataset_url: URL_, checkpoint_store: "backend" }, SERVER_STORAGE);
    const r = renderJob(spec);
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const env = envOf(r);
    expect(env.filter((e) => STORAGE_ENV.test(e.name) || e.name === "STORAGE_TYPE")).toEqual([]);
    expect(env.find((e) => e.name === "DATASET_URL")).toEqual({
      name: "DATASET_URL",
      valueFrom: { secretKeyRef: { name: "keyless-1-trainer-secrets", key: "dataset-url" } },
    });
    expect(env.find((e) => e.name === "CHECKPOINT_STORE")).toEqual({ name: "CHECKPOINT_STORE", value: "backend" });
    // The only Secret referenced is the job's own, holding the token and the URL: no storage Secret at all.
    const refs = new Set(env.flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name] : [])));
    expect([...refs]).toEqual(["keyless-1-trainer-secrets"]);
    expect(Object.keys(r.secret!.stringData as object).sort()).toEqual(["callback-token", "dataset-url"]);
    expect((r.secret!.stringData as Record<string, string>)["dataset-url"]).toBe(URL_);
    const shown = JSON.stringify([r.trainJob, r.configMap ?? null, r.warnings, spec.warnings]);
    expect(shown).not.toContain(SIGNATURE);
    expect(shown).not.toContain("X-Amz-Credential");
    expect(r.warnings).toEqual([]);
  });

  it("a storage block given with the request is not rendered, and says so; a bucket dataset keeps the keys", () => {
    const storage = { bucket: "b", access_key_id: "AKIA1", secret_access_key: "SECRETKEY/abc+123" };
    const dropped = renderJob(
      normalizeJobRequest({ ...BASE, dataset_url: URL_, checkpoint_store: "backend", storage }),
    );
    expect(envOf(dropped).filter((e) => STORAGE_ENV.test(e.name))).toEqual([]);
    expect(JSON.stringify(dropped.secret)).not.toContain("SECRETKEY");
    expect(dropped.warnings.join("\n")).toMatch(/^storage: not rendered: with checkpoint_store "backend"/);

    // Checkpoints through the backend, the dataset still from the bucket: the bucket's keys are needed and kept.
    const mixed = renderJob(
      normalizeJobRequest({ ...BASE, dataset_id: "mnist", checkpoint_store: "backend" }, SERVER_STORAGE),
    );
    const names = envOf(mixed).map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(["S3_BUCKET", "S3_ACCESS_KEY_ID", "CHECKPOINT_STORE", "DATASET_ID"]));
  });

  it("a user env DATASET_URL wins over dataset_url with a warning that does not show either", () => {
    const r = renderJob(
      normalizeJobRequest({
        ...BASE,
        dataset_url: URL_,
        env_vars: [{ name: "DATASET_URL", value: `https://other.example.com/x.zip?${QUERY}` }],
      }),
    );
    const entries = envOf(r).filter((e) => e.name === "DATASET_URL");
    expect(entries).toHaveLength(1);
    // A literal presigned URL in env_vars is moved to the Secret too: its query is a credential.
    expect(entries[0]!.valueFrom?.secretKeyRef?.key).toBe("dataset-url");
    expect(JSON.stringify(r.trainJob)).not.toContain(SIGNATURE);
    expect(r.warnings.join("\n")).toMatch(/env DATASET_URL: the job's own value is kept/);
    expect(r.warnings.join("\n")).not.toContain(SIGNATURE);
  });

  it.each([
    [
      "dataset_url",
      { dataset_url: `ftp://h/set.zip?${QUERY}` },
      /must be an https:\/\/ URL.*got "ftp:\/\/h\/set\.zip\?\*\*\*"/,
    ],
    [
      "dataset_url",
      { dataset_url: `https://user:pw0rd@h/set.zip?${QUERY}` },
      /user:password@.*"https:\/\/\*\*\*@h\/set\.zip\?\*\*\*"/,
    ],
    ["dataset_url", { dataset_url: URL_, dataset_id: "mnist" }, /either as dataset_url or as dataset_id, not both/],
    ["datasetUrl", { datasetUrl: URL_, dataset_uri: "s3://b/set.zip" }, /either as datasetUrl or as dataset_uri/],
    ["checkpoint_store", { checkpoint_store: "gcs" }, /must be "bucket" .* or "backend" .*got "gcs"/],
    ["checkpoint_store", { checkpoint_store: "backend", callback: undefined }, /needs the callback API/],
    [
      "checkpoint_uri",
      { checkpoint_store: "backend", checkpoint_uri: "s3://b/c/" },
      /does not apply with checkpoint_store "backend"/,
    ],
  ])("%s: a clear error, the URL's credentials never shown", (field, patch, message) => {
    const e = specError({ ...BASE, ...patch });
    expect(e.fields).toEqual([field]);
    expect(e.message).toMatch(message);
    expect(e.message).not.toContain(SIGNATURE);
    expect(e.message).not.toContain("pw0rd");
  });
});

describe("a rendered keyless pod, run by the real agent against the stub and s3rver", () => {
  let s3: TestServer;
  let stub: Running;
  let source: string;
  const KEYS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

  beforeAll(async () => {
    s3 = await startS3rver();
    await createBucket(s3.endpoint, "data");
    await createBucket(s3.endpoint, "ckpt");
    source = await tmpDir("keyless-src-");
    await makeTree(source, { bigBytes: 300 * 1024 });
    const zip = path.join(await tmpDir("keyless-zip-"), "set.zip");
    archive(source, zip, "zip");
    await put(s3.endpoint, "data", "datasets/set.zip", await fs.readFile(zip));
    // The stub's bucket as its operator configures it: BACKEND_S3_* through the stub's own config reader.
    const { checkpointStorage } = loadBackendConfig({
      BACKEND_S3_ENDPOINT: s3.endpoint,
      BACKEND_S3_BUCKET: "ckpt",
      BACKEND_S3_ACCESS_KEY_ID: KEYS.accessKeyId,
      BACKEND_S3_SECRET_ACCESS_KEY: KEYS.secretAccessKey,
    });
    expect(checkpointStorage).toBeDefined();
    stub = await startStub({ checkpointStorage: checkpointStorage! });
  }, 60_000);

  afterAll(async () => {
    await stub?.stop();
    await s3?.stop();
  });

  it("pulls the presigned dataset and stores its checkpoint in the bucket, with no storage keys in the pod", async () => {
    const presigner = await createPresigner({ endpoint: s3.endpoint, bucket: "data", ...KEYS });
    const { url } = await presigner.presign("GET", "datasets/set.zip");
    presigner.client.destroy();
    const signature = new URL(url).searchParams.get("X-Amz-Signature")!;
    expect(signature.length).toBeGreaterThan(20);

    const job = await stub.stub.createJob({ name: "keyless-run" });
    // What a keyless `trainjob submit` renders: the server's storage defaults are there and must not reach the pod.
    const rendered = renderJob(
      normalizeJobRequest(
        {
          name: "keyless-run",
          framework: "pytorch",
          callback: { base_url: stub.url, job_id: job.id, token: job.token },
          dataset_url: url,
          checkpoint_store: "backend",
          command: [
            "sh",
            "-c",
            'test -f "$DATASET_DIR/big.bin" && mkdir -p "$CHECKPOINT_DIR/epoch-1" && ' +
              'cp "$DATASET_DIR/big.bin" "$CHECKPOINT_DIR/epoch-1/model.pt" && ' +
              'echo "::trainer::{\\"epoch\\":1,\\"total_epochs\\":1,\\"checkpoint\\":\\"$CHECKPOINT_DIR/epoch-1\\"}"',
          ],
        },
        SERVER_STORAGE,
      ),
    );
    const { args, env } = nodeContainer(rendered);
    expect(Object.keys(env).filter((k) => STORAGE_ENV.test(k))).toEqual([]);
    expect(env.DATASET_URL).toBe(url);
    for (const text of [JSON.stringify(rendered.trainJob), rendered.warnings.join("\n")])
      expect(text).not.toContain(signature);

    const work = await tmpDir("keyless-pod-");
    Object.assign(env, { DATASET_DIR: path.join(work, "dataset"), CHECKPOINT_DIR: path.join(work, "checkpoints") });
    const { code, output } = await finished(
      spawn(process.execPath, [AGENT_BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"], cwd: work }),
    );
    expect(code, output).toBe(0);
    expect(await treeHash(path.join(work, "dataset"))).toEqual(await treeHash(source));

    const s3client = client(s3.endpoint);
    const listed = await s3client.send(
      new ListObjectsV2Command({ Bucket: "ckpt", Prefix: `checkpoints/job-${job.id}/` }),
    );
    const keys = (listed.Contents ?? []).map((o) => o.Key!);
    expect(keys).toContain(`checkpoints/job-${job.id}/epoch-1/model.pt`);
    expect(keys.some((k) => k.includes("/_manifests/"))).toBe(true);
    const stored = await s3client.send(
      new GetObjectCommand({ Bucket: "ckpt", Key: `checkpoints/job-${job.id}/epoch-1/model.pt` }),
    );
    const bytes = Buffer.from(await stored.Body!.transformToByteArray());
    expect(bytes.equals(await fs.readFile(path.join(source, "big.bin")))).toBe(true);
    s3client.destroy();

    const view = JSON.stringify(await stub.stub.getJob(job.id));
    expect(view).toContain('"succeeded"');
    expect(view).toContain(`checkpoints/job-${job.id}/epoch-1/`);
    for (const text of [view, output]) expect(text).not.toContain(signature);
  }, 120_000);
});
