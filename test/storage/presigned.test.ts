/**
 * Storage with no keys in the pod: a dataset from a presigned GET URL (DATASET_URL) and checkpoints through URLs
 * the backend stub presigns (CHECKPOINT_STORE=backend), against s3rver (it enforces a presigned URL's expiry) and
 * the real stub over HTTP. A pass-through proxy in front of s3rver counts the ranged GETs; it also checks every
 * presigned request's SigV4 query signature independently (sigv4-verify.ts), since s3rver does not.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { inspect } from "node:util";
import { fileURLToPath } from "node:url";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackendStub, type BackendStub } from "../../backend-stub/src/index.ts";
import { createPresigner, type Presign } from "../../backend-stub/src/storage/checkpoint-urls.ts";
import { loadAgentConfig, maskSecrets, secretValues } from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { createStorage } from "../../src/storage/index.ts";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.ts";
import {
  archive,
  client,
  createBucket,
  makeTree,
  memoryLogger,
  put,
  quietLogger,
  rgwLane,
  RGW_MISSING,
  startS3rver,
  tmpDir,
  treeHash,
  type TestServer,
} from "./helpers.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const KEYS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

let server: TestServer;
let proxy: FaultProxy;
let presign: Presign;
let fixtures: string;
let source: string;

beforeAll(async () => {
  server = await startS3rver();
  await createBucket(server.endpoint, "data");
  proxy = await startFaultProxy(server.endpoint, () => "pass");
  ({ presign } = await createPresigner({ endpoint: proxy.endpoint, bucket: "data", ...KEYS }));
  source = await tmpDir("presigned-src-");
  await makeTree(source, { bigBytes: 600 * 1024 });
  const zip = path.join(await tmpDir("presigned-zip-"), "set.zip");
  archive(source, zip, "zip");
  await put(server.endpoint, "data", "datasets/set.zip", await fs.readFile(zip));
  fixtures = await tmpDir("presigned-fixtures-");
  execFileSync("/usr/bin/python3", [path.resolve("test/fixtures/storage/make_archives.py"), fixtures]);
  await put(
    server.endpoint,
    "data",
    "datasets/zip-dotdot.zip",
    await fs.readFile(path.join(fixtures, "zip-dotdot.zip")),
  );
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await server?.stop();
});

/** No S3 keys anywhere: only what a pod without storage credentials has. */
function keylessConfig(env: Record<string, string>) {
  return loadAgentConfig({ PATH: process.env.PATH ?? "/usr/bin:/bin", ...env });
}

/** A presigned GET of set.zip that s3rver already refuses as expired: waits on the server's verdict, not a clock. */
async function expiredUrl(): Promise<string> {
  const short = await createPresigner({ endpoint: server.endpoint, bucket: "data", ...KEYS, expiresSeconds: 1 });
  const { url } = await short.presign("GET", "datasets/set.zip");
  short.client.destroy();
  for (;;) {
    const res = await fetch(url, { headers: { range: "bytes=0-0" } });
    await res.arrayBuffer();
    if (res.status === 403) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return url;
}

async function pullFromUrl(url: string, logger = quietLogger()) {
  const root = await tmpDir("presigned-pull-");
  const config = keylessConfig({
    DATASET_URL: url,
    DATASET_DIR: path.join(root, "dataset"),
    CHECKPOINT_DIR: path.join(root, "ckpt"),
  });
  const storage = await createStorage(config, { logger, tuning: { downloadPartSize: 64 * 1024 } });
  try {
    return { root, config, result: await storage.pullDataset({}), error: undefined };
  } catch (error) {
    return { root, config, result: undefined, error };
  } finally {
    storage.close();
  }
}

describe("DATASET_URL (presigned GET)", () => {
  it("pulls a zip with parallel ranged reads pinned to its ETag, and names it without the query", async () => {
    const { url } = await presign("GET", "datasets/set.zip");
    const before = proxy.requests.length;
    const { root, result, error } = await pullFromUrl(url);
    expect(error).toBeUndefined();
    expect(await treeHash(path.join(root, "dataset"))).toEqual(await treeHash(source));
    const reads = proxy.requests.slice(before).filter((r) => r.range !== undefined && r.range !== "bytes=0-0");
    expect(reads.length).toBeGreaterThan(3);
    expect(reads.every((r) => r.ifMatch !== undefined && r.url.includes("X-Amz-Signature="))).toBe(true);
    expect(new Set(proxy.requests.slice(before).map((r) => r.sigV4))).toEqual(new Set(["ok"]));
    expect(result?.source).toBe(`${proxy.endpoint}/data/datasets/set.zip`);
    const marker = await fs.readFile(path.join(root, ".dataset.trainer-dataset.json"), "utf8");
    expect(marker).not.toContain("X-Amz");
  });

  it("refuses a ../ zip from a URL with the same code as from a bucket, leaving no dataset", async () => {
    const { url } = await presign("GET", "datasets/zip-dotdot.zip");
    const { root, error } = await pullFromUrl(url);
    expect(isAgentError(error) && error.code).toBe("ARCHIVE_UNSAFE_PATH");
    await expect(fs.access(path.join(root, "dataset"))).rejects.toThrow();
    const fromBucket = await createStorage(
      loadAgentConfig({
        S3_ENDPOINT: server.endpoint,
        S3_BUCKET: "data",
        S3_ACCESS_KEY_ID: "S3RVER",
        S3_SECRET_ACCESS_KEY: "S3RVER",
        DATASET_URI: "s3://data/datasets/zip-dotdot.zip",
        DATASET_DIR: path.join(root, "d2"),
        CHECKPOINT_DIR: path.join(root, "ck2"),
      }),
      { logger: quietLogger() },
    );
    const bucketError = await fromBucket.pullDataset({}).then(
      () => undefined,
      (e: unknown) => e,
    );
    fromBucket.close();
    expect(isAgentError(bucketError) && bucketError.code).toBe("ARCHIVE_UNSAFE_PATH");
  });

  it("an expired URL fails with STORAGE_DENIED and S3's reason, its query masked everywhere", async () => {
    const url = await expiredUrl();
    const mem = memoryLogger();
    const { config, error } = await pullFromUrl(url, mem.logger);
    expect(isAgentError(error) && error.code).toBe("STORAGE_DENIED");
    const message = (error as Error).message;
    expect(message).toContain("Request has expired");
    expect(message).toContain(`${server.endpoint}/data/datasets/set.zip`);
    const query = new URL(url).search.slice(1);
    const signature = new URL(url).searchParams.get("X-Amz-Signature") as string;
    for (const text of [message, ...mem.lines]) expect(text).not.toContain(signature);
    for (const shown of [JSON.stringify(config), inspect(config)]) expect(shown).not.toContain(signature);
    // What the agent sends to the backend (done's reason, events) is masked by the same secret list.
    expect(maskSecrets(`failed: ${url}`, secretValues(config))).not.toContain(query);
  });

  it("rejects a DATASET_URL that is not http(s), without showing its query", () => {
    expect(() => keylessConfig({ DATASET_URL: "ftp://h/x.zip?X-Amz-Signature=abcdef123456" })).toThrow(
      /DATASET_URL must be an https:\/\/ URL .*got "ftp:\/\/h\/x.zip\?\*\*\*"/,
    );
  });

  describe("a plain server: Last-Modified as the pin, Content-Type as the kind", () => {
    let srv: http.Server;
    let base: string;
    let body: Buffer;
    let modified = new Date("2026-01-01T00:00:00Z");
    /** Replaces the object after this many ranged GETs (Infinity: never). */
    let replaceAfter = Infinity;
    const seen: { range?: string; ifUnmodifiedSince?: string; ifMatch?: string }[] = [];

    beforeAll(async () => {
      body = await fs.readFile(path.join(fixtures, "good.zip"));
      // Serves one object with ranges, a Last-Modified and no ETag; If-Unmodified-Since as HTTP defines it.
      srv = http.createServer((req, res) => {
        const range = req.headers.range;
        seen.push({
          range,
          ifUnmodifiedSince: req.headers["if-unmodified-since"],
          ifMatch: req.headers["if-match"],
        });
        if (seen.filter((r) => r.range !== undefined).length > replaceAfter)
          modified = new Date(modified.getTime() + 60_000);
        const since = req.headers["if-unmodified-since"];
        if (since !== undefined && modified.getTime() > Date.parse(since)) {
          res.writeHead(412).end();
          return;
        }
        const headers = { "content-type": "application/zip", "last-modified": modified.toUTCString() };
        const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
        if (m === null) {
          res.writeHead(200, { ...headers, "content-length": body.length }).end(body);
          return;
        }
        const [start, end] = [Number(m[1]), Math.min(Number(m[2]), body.length - 1)];
        res
          .writeHead(206, {
            ...headers,
            "content-length": end - start + 1,
            "content-range": `bytes ${start}-${end}/${body.length}`,
          })
          .end(body.subarray(start, end + 1));
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
      base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => srv.close(() => r())));

    it("pulls a zip named by its Content-Type, every range pinned with If-Unmodified-Since", async () => {
      seen.length = 0;
      replaceAfter = Infinity;
      const { root, error, result } = await pullFromUrl(`${base}/download?token=abcdef123456`);
      expect(error).toBeUndefined();
      expect(result?.files).toBeGreaterThan(0);
      expect(result?.source).toBe(`${base}/download`);
      const ranged = seen.filter((r) => r.range !== undefined && r.range !== "bytes=0-0");
      expect(ranged.length).toBeGreaterThan(0);
      expect(ranged.every((r) => r.ifUnmodifiedSince === modified.toUTCString() && r.ifMatch === undefined)).toBe(true);
      await fs.access(path.join(root, "dataset"));
    });

    it("an object replaced between ranges fails with DATASET_CHANGED and leaves no dataset", async () => {
      seen.length = 0;
      replaceAfter = 2;
      const { root, error } = await pullFromUrl(`${base}/download?token=abcdef123456`);
      expect(isAgentError(error) && error.code).toBe("DATASET_CHANGED");
      await expect(fs.access(path.join(root, "dataset"))).rejects.toThrow();
    });
  });
});

const lane = rgwLane();
// Every run writes under its own names: the lane outlives test runs.
const run = randomUUID().slice(0, 8);

if (lane === undefined) describe.skip(RGW_MISSING, () => it("runs presigned URLs against RGW", () => {}));
else
  describe("presigned URLs against Ceph RGW (it verifies every signature and expiry)", () => {
    const keys = { accessKeyId: lane.accessKeyId, secretAccessKey: lane.secretAccessKey };

    it.each([
      ["http", lane.endpoint],
      ["https", lane.httpsEndpoint],
    ])("pulls a zip from a presigned GET over %s", async (_scheme, endpoint) => {
      const rgw = await createPresigner({ endpoint, bucket: lane.bucket, ...keys });
      const zip = path.join(await tmpDir("presigned-rgw-"), "set.zip");
      archive(source, zip, "zip");
      await rgw.client.send(
        new PutObjectCommand({ Bucket: lane.bucket, Key: `${run}/set.zip`, Body: await fs.readFile(zip) }),
      );
      const { url } = await rgw.presign("GET", `${run}/set.zip`);
      const { root, error } = await pullFromUrl(url);
      expect(error).toBeUndefined();
      expect(await treeHash(path.join(root, "dataset"))).toEqual(await treeHash(source));
      rgw.client.destroy();
    });

    it("stores a multipart checkpoint through the stub's presigned UploadParts and restores it", async () => {
      const stub = createBackendStub({
        secret: "presign-rgw-secret",
        checkpointStorage: { endpoint: lane.endpoint, bucket: lane.bucket, ...keys },
      });
      const base = (await stub.listen(0)).url;
      try {
        const job = await stub.createJob({ id: `presign-${run}` });
        const dir = await tmpDir("presigned-rgw-ck-");
        const env = (ck: string) =>
          keylessConfig({
            JOB_ID: job.id,
            BACKEND_BASE_URL: base,
            CALLBACK_TOKEN: job.token,
            CHECKPOINT_STORE: "backend",
            CHECKPOINT_DIR: ck,
            DATASET_DIR: path.join(dir, `dataset-${path.basename(ck)}`),
            STORAGE_PART_SIZE_MB: "5",
          });
        const ck = path.join(dir, "ck");
        await fs.mkdir(path.join(ck, "step-1"), { recursive: true });
        await fs.writeFile(path.join(ck, "step-1", "model.pt"), randomBytes(6 * 1024 * 1024 + 17));
        await fs.writeFile(path.join(ck, "step-1", "meta.json"), "{}");
        const storage = await createStorage(env(ck), { logger: quietLogger() });
        const sync = storage.startCheckpointSync({});
        sync.notify(path.join(ck, "step-1"));
        const stored = await sync.finalSync();
        storage.close();
        expect(stored.map((c) => c.key)).toEqual([`checkpoints/job-${job.id}/step-1/`]);
        const restoreDir = path.join(dir, "restore");
        const again = await createStorage(env(restoreDir), { logger: quietLogger() });
        try {
          expect((await again.restoreLatestCheckpoint({}))?.path).toBe(path.join(restoreDir, "step-1"));
        } finally {
          again.close();
        }
        expect(await treeHash(path.join(restoreDir, "step-1"))).toEqual(await treeHash(path.join(ck, "step-1")));
        // RGW answers the real multipart ETag (MD5 of the parts' MD5s, -2): the uploader checked it against its own.
        const { client: rgw } = await createPresigner({ endpoint: lane.endpoint, bucket: lane.bucket, ...keys });
        const listed = await rgw.send(
          new ListObjectsV2Command({ Bucket: lane.bucket, Prefix: `checkpoints/job-${job.id}/step-1/model.pt` }),
        );
        rgw.destroy();
        expect(listed.Contents?.[0]?.ETag).toMatch(/-2"$/);
      } finally {
        await stub.close();
      }
    }, 60_000);
  });

describe("CHECKPOINT_STORE=backend (presigned PUTs from the stub)", () => {
  let stub: BackendStub;
  let base: string;

  beforeAll(async () => {
    await createBucket(server.endpoint, "ckpt");
    stub = createBackendStub({
      secret: "presign-test-secret",
      checkpointStorage: { endpoint: proxy.endpoint, bucket: "ckpt", ...KEYS },
    });
    base = (await stub.listen(0)).url;
  });
  afterAll(async () => {
    await stub?.close();
  });

  async function call(jobId: string, token: string, body: unknown): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${base}/v1/jobs/${jobId}/checkpoint-urls`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  it("hands out URLs only for the job's own prefix and only with its token", async () => {
    const job = await stub.createJob({ id: "p-auth" });
    const other = await stub.createJob({ id: "p-other" });
    const ok = await call(job.id, job.token, { op: "get", key: "checkpoints/job-p-auth/a.pt" });
    expect(ok.status).toBe(200);
    expect((ok.body as { url: string }).url).toContain("X-Amz-Signature=");
    const outside = await call(job.id, job.token, { op: "get", key: "checkpoints/job-p-other/a.pt" });
    expect(outside.status).toBe(403);
    expect((outside.body as { error: { code: string } }).error.code).toBe("key_outside_job");
    const dotdot = await call(job.id, job.token, { op: "list", prefix: "checkpoints/job-p-auth/../job-p-other/" });
    expect(dotdot.status).toBe(403);
    const wrongToken = await call(job.id, other.token, { op: "get", key: "checkpoints/job-p-auth/a.pt" });
    expect(wrongToken.status).toBe(401);
    const bad = await call(job.id, job.token, { op: "put", key: "checkpoints/job-p-auth/a.pt", content_md5: "x" });
    expect(bad.status).toBe(400);
  });

  it("an agent run with an expired DATASET_URL: exit 77, done names S3's reason, the signature nowhere", async () => {
    const job = await stub.createJob({ id: "p-expired" });
    const url = await expiredUrl();
    const dir = await tmpDir("presigned-expired-");
    const child = spawn(process.execPath, [BIN, "run", "--", "sh", "-c", "echo never"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        JOB_ID: job.id,
        BACKEND_BASE_URL: base,
        CALLBACK_TOKEN: job.token,
        DATASET_URL: url,
        DATASET_DIR: path.join(dir, "dataset"),
        CHECKPOINT_DIR: path.join(dir, "ck"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, output).toBe(77);
    const view = JSON.stringify(await stub.getJob(job.id));
    expect(view).toContain("Request has expired");
    expect(view).toContain(`${server.endpoint}/data/datasets/set.zip`);
    const signature = new URL(url).searchParams.get("X-Amz-Signature") as string;
    for (const text of [view, output]) expect(text).not.toContain(signature);
    expect(output).not.toContain("never");
  }, 60_000);

  it("an agent run with no storage keys stores its checkpoints (single PUT and multipart) with a full manifest", async () => {
    const job = await stub.createJob({ id: "p-run" });
    const dir = await tmpDir("presigned-run-");
    const ck = path.join(dir, "ckpt");
    // 6 MiB: above the 5 MiB part size, so the file goes as a multipart upload of presigned UploadParts.
    const script =
      'mkdir -p "$CHECKPOINT_DIR/epoch-1" && echo meta > "$CHECKPOINT_DIR/epoch-1/meta.json" && ' +
      'head -c 6291456 /dev/urandom > "$CHECKPOINT_DIR/epoch-1/model.pt" && ' +
      'echo "::trainer::{\\"checkpoint\\":\\"$CHECKPOINT_DIR/epoch-1\\"}"';
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      JOB_ID: job.id,
      BACKEND_BASE_URL: base,
      CALLBACK_TOKEN: job.token,
      CHECKPOINT_STORE: "backend",
      CHECKPOINT_DIR: ck,
      DATASET_DIR: path.join(dir, "dataset"),
      STORAGE_PART_SIZE_MB: "5",
    };
    expect(Object.keys(env).filter((k) => /^(AWS|S3|MINIO|R2)_/.test(k))).toEqual([]);
    const child = spawn(process.execPath, [BIN, "run", "--", "sh", "-c", script], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, stderr).toBe(0);

    const s3 = client(server.endpoint);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: "ckpt", Prefix: "checkpoints/job-p-run/" }));
    const keys = (listed.Contents ?? []).map((o) => o.Key);
    expect(keys).toEqual(
      expect.arrayContaining(["checkpoints/job-p-run/epoch-1/meta.json", "checkpoints/job-p-run/epoch-1/model.pt"]),
    );
    const manifestKey = keys.find((k) => k?.includes("/_manifests/")) as string;
    const manifest = JSON.parse(
      await (await s3.send(new GetObjectCommand({ Bucket: "ckpt", Key: manifestKey }))).Body!.transformToString(),
    ) as { files: { key: string; size: number; etag: string }[] };
    expect(manifest.files.map((f) => f.key).sort()).toEqual([
      "checkpoints/job-p-run/epoch-1/meta.json",
      "checkpoints/job-p-run/epoch-1/model.pt",
    ]);
    for (const f of manifest.files) {
      const o = (listed.Contents ?? []).find((c) => c.Key === f.key);
      expect(o?.Size).toBe(f.size);
      expect(o?.ETag?.replace(/"/g, "")).toBe(f.etag);
    }
    // s3rver answers a multipart ETag without the -N suffix; the parts it got show the upload was multipart.
    const parts = proxy.requests.filter(
      (r) => r.method === "PUT" && r.url.includes("model.pt?") && /[?&]partNumber=\d/.test(r.url),
    );
    expect(parts.map((r) => r.contentMd5 !== undefined && r.url.includes("X-Amz-Signature="))).toEqual([true, true]);
    expect(new Set(proxy.requests.filter((r) => r.method === "PUT").map((r) => r.sigV4))).toEqual(new Set(["ok"]));
    const view = await stub.getJob(job.id);
    expect(JSON.stringify(view)).toContain("checkpoints/job-p-run/epoch-1/");

    // Restore with no keys either: the newest manifest through the backend, bytes through presigned GETs.
    const restoreDir = path.join(dir, "restore");
    const storage = await createStorage(
      keylessConfig({
        JOB_ID: job.id,
        BACKEND_BASE_URL: base,
        CALLBACK_TOKEN: job.token,
        CHECKPOINT_STORE: "backend",
        CHECKPOINT_DIR: restoreDir,
        DATASET_DIR: path.join(dir, "dataset2"),
      }),
      { logger: quietLogger() },
    );
    try {
      const restored = await storage.restoreLatestCheckpoint({});
      expect(restored?.path).toBe(path.join(restoreDir, "epoch-1"));
    } finally {
      storage.close();
    }
    expect(await treeHash(path.join(restoreDir, "epoch-1"))).toEqual(await treeHash(path.join(ck, "epoch-1")));
  }, 60_000);
});
