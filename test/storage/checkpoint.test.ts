import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { matchesEtag, uploadFile } from "../../src/storage/checkpoint/upload.ts";
import { createStorage } from "../../src/storage/index.ts";
import { Pool } from "../../src/storage/internal/pool.ts";
import { createS3Store } from "../../src/storage/store/s3.ts";
import type { ObjectStore } from "../../src/storage/store/types.ts";
import { startFaultProxy } from "./fault-proxy.ts";
import {
  client,
  config,
  createBucket,
  memoryLogger,
  quietLogger,
  startFauxqs,
  tmpDir,
  type TestServer,
} from "./helpers.ts";

let server: TestServer;
const tuning = { checkpointQuietMs: 150, checkpointPollMs: 50, requestTimeoutMs: 5_000, idleTimeoutMs: 5_000 };

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "ckpt");
});
afterAll(async () => {
  await server?.stop();
});

async function keys(prefix: string): Promise<string[]> {
  const r = await client(server.endpoint).send(new ListObjectsV2Command({ Bucket: "ckpt", Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key as string).sort();
}

function env(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    S3_ENDPOINT: server.endpoint,
    S3_BUCKET: "ckpt",
    JOB_ID: "j1",
    CHECKPOINT_DIR: dir,
    STORAGE_PART_SIZE_MB: "5",
    ...extra,
  };
}

describe("checkpoint upload and restore (fauxqs)", () => {
  it("signs upload bodies as UNSIGNED-PAYLOAD and protects every part with Content-MD5 instead", async () => {
    const proxy = await startFaultProxy(server.endpoint, () => "pass");
    const dir = await tmpDir();
    const storage = await createStorage(config(env(dir, { S3_ENDPOINT: proxy.endpoint, JOB_ID: "unsigned" })), {
      logger: quietLogger(),
      tuning,
    });
    try {
      await fs.writeFile(path.join(dir, "small.pt"), Buffer.alloc(1000, 7));
      await fs.writeFile(path.join(dir, "large.pt"), Buffer.alloc(11 * 1024 * 1024, 9));
      const sync = storage.startCheckpointSync({});
      sync.notify("small.pt");
      sync.notify("large.pt");
      expect(await sync.finalSync()).toHaveLength(2);
    } finally {
      storage.close();
      await proxy.close();
    }
    const bodies = proxy.requests.filter((r) => r.method === "PUT");
    // small.pt as one PutObject, large.pt as three UploadParts of 5 MiB, and the manifests.
    expect(bodies.filter((r) => r.url.includes("uploadId="))).toHaveLength(3);
    expect(bodies.filter((r) => r.url.includes("/small.pt?"))).toHaveLength(1);
    expect(bodies.filter((r) => r.url.includes("/_manifests/")).length).toBeGreaterThanOrEqual(1);
    for (const r of bodies) {
      expect(r.contentSha256, r.url).toBe("UNSIGNED-PAYLOAD");
      expect(r.contentMd5, r.url).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    }
    // Requests whose body is not data keep the SDK's payload hash (CreateMultipartUpload, the Complete XML).
    const posts = proxy.requests.filter((r) => r.method === "POST");
    expect(posts).toHaveLength(2);
    for (const r of posts) expect(r.contentSha256, r.url).toMatch(/^[0-9a-f]{64}$/);
  });

  it("reuses part buffers across parts without mixing their bytes (more parts than STORAGE_CONCURRENCY)", async () => {
    const dir = await tmpDir();
    const jobEnv = env(dir, { JOB_ID: "reuse", STORAGE_CONCURRENCY: "2" });
    const storage = await createStorage(config(jobEnv), { logger: quietLogger(), tuning });
    // Seven 5 MiB parts and a short eighth, each part filled with its own pattern.
    const part = 5 * 1024 * 1024;
    const data = Buffer.allocUnsafe(7 * part + 777);
    for (let i = 0; i < data.length; i++) data[i] = (Math.floor(i / part) * 37 + (i % 251)) & 0xff;
    await fs.writeFile(path.join(dir, "model.pt"), data);
    const sync = storage.startCheckpointSync({});
    sync.notify("model.pt");
    const [stored] = await sync.finalSync();
    expect(stored?.etag).toMatch(/-8$/);
    storage.close();
    const dir2 = await tmpDir();
    const storage2 = await createStorage(config(env(dir2, { JOB_ID: "reuse" })), { logger: quietLogger(), tuning });
    await storage2.restoreLatestCheckpoint({});
    storage2.close();
    expect(Buffer.compare(await fs.readFile(path.join(dir2, "model.pt")), data)).toBe(0);
  });

  it("uploads reported checkpoints (multipart for a large one), writes manifests, and a new pod restores the latest", async () => {
    const dir = await tmpDir();
    const jobEnv = env(dir, { JOB_ID: "rt" });
    const storage = await createStorage(config(jobEnv), { logger: quietLogger(), tuning });
    expect(await storage.restoreLatestCheckpoint({})).toBeNull();
    const uploaded: string[] = [];
    const sync = storage.startCheckpointSync({ onUploaded: (c) => uploaded.push(c.key) });
    await fs.writeFile(path.join(dir, "epoch-1.pt"), Buffer.alloc(1000, 1));
    sync.notify(path.join(dir, "epoch-1.pt"));
    const big = Buffer.alloc(12 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    await fs.writeFile(path.join(dir, "epoch-2.pt"), big);
    sync.notify("epoch-2.pt");
    const stored = await sync.finalSync();
    expect(stored.map((s) => s.key).sort()).toEqual(["checkpoints/job-rt/epoch-1.pt", "checkpoints/job-rt/epoch-2.pt"]);
    expect(stored.find((s) => s.key.endsWith("epoch-2.pt"))?.etag).toMatch(/-3$/);
    expect(uploaded).toHaveLength(2);
    const all = await keys("checkpoints/job-rt/");
    expect(all.filter((k) => k.includes("_manifests/"))).toHaveLength(2);

    const dir2 = await tmpDir();
    const storage2 = await createStorage(config(env(dir2, { JOB_ID: "rt" })), { logger: quietLogger(), tuning });
    const restored = await storage2.restoreLatestCheckpoint({});
    expect(restored?.path).toBe(path.join(dir2, "epoch-2.pt"));
    expect(Buffer.compare(await fs.readFile(path.join(dir2, "epoch-2.pt")), big)).toBe(0);
    // The restored file is known: a final sync uploads nothing new.
    const sync2 = storage2.startCheckpointSync({});
    expect(await sync2.finalSync()).toEqual([]);
    storage.close();
    storage2.close();
  });

  it("watch mode: a folder checkpoint is uploaded once it is quiet, as one manifest, and restored as a folder", async () => {
    const dir = await tmpDir();
    const { logger, lines } = memoryLogger();
    const storage = await createStorage(config(env(dir, { JOB_ID: "watch" })), { logger, tuning });
    const sync = storage.startCheckpointSync({});
    await fs.mkdir(path.join(dir, "step-100"));
    await fs.writeFile(path.join(dir, "step-100", "model.bin"), Buffer.alloc(4000, 3));
    await fs.writeFile(path.join(dir, "step-100", "optim.bin"), Buffer.alloc(3000, 4));
    await fs.writeFile(path.join(dir, "step-100", ".tmp-ignored"), "x");
    for (let i = 0; i < 200 && (await keys("checkpoints/job-watch/_manifests/")).length === 0; i++)
      await new Promise((r) => setTimeout(r, 25));
    const stored = await sync.finalSync();
    expect(stored).toEqual([{ key: "checkpoints/job-watch/step-100/", bytes: 7000 }]);
    expect(await keys("checkpoints/job-watch/step-100/")).toEqual([
      "checkpoints/job-watch/step-100/model.bin",
      "checkpoints/job-watch/step-100/optim.bin",
    ]);
    const dir2 = await tmpDir();
    const storage2 = await createStorage(config(env(dir2, { JOB_ID: "watch" })), { logger: quietLogger(), tuning });
    const r = await storage2.restoreLatestCheckpoint({});
    expect(r?.path).toBe(path.join(dir2, "step-100"));
    expect((await fs.readdir(r?.path as string)).sort()).toEqual(["model.bin", "optim.bin"]);
    expect(lines.join("")).not.toContain("S3RVER");
    storage.close();
    storage2.close();
  });
});

describe("a store that answers a write without an ETag (Ceph RGW 16's CompleteMultipartUpload)", () => {
  // fauxqs underneath; the wrapper drops the ETag from what the writes return, as RGW 16 does for Complete.
  async function etaglessStore(): Promise<ObjectStore> {
    const real = await createS3Store(config({ S3_ENDPOINT: server.endpoint }).storage, "ckpt", {
      maxSockets: 2,
      requestTimeoutMs: 5_000,
      connectTimeoutMs: 2_000,
      maxAttempts: 1,
    });
    return {
      label: real.label,
      head: (k, s) => real.head(k, s),
      list: (p, s) => real.list(p, s),
      getRange: (k, a, b, e, s) => real.getRange(k, a, b, e, s),
      putObject: async (k, b, m, s) => (await real.putObject(k, b, m, s), ""),
      createMultipart: async (k, s) => {
        const up = await real.createMultipart(k, s);
        return { ...up, complete: async (parts) => (await up.complete(parts), "") };
      },
      deleteObject: (k) => real.deleteObject(k),
      close: () => real.close(),
    };
  }

  it.each([
    ["multipart", 11 * 1024 * 1024 + 5, /^[0-9a-f]{32}-3$/],
    ["single PUT", 1000, /^[0-9a-f]{32}$/],
  ])("%s: records the object's own ETag from a HEAD, never an empty one", async (_what, size, form) => {
    const store = await etaglessStore();
    const dir = await tmpDir();
    const file = path.join(dir, "model.pt");
    await fs.writeFile(file, randomBytes(size));
    try {
      const key = `etagless/${size}.pt`;
      const up = await uploadFile({ store, pool: new Pool(2), file, key, minPartSize: 5 * 1024 * 1024 });
      expect(up.etag).toMatch(form);
      expect(up.etag).toBe((await store.head(key))?.etag);
      expect(await matchesEtag(file, up.etag, up.partSize)).toBe(true);
    } finally {
      store.close();
    }
  });
});

describe("a bucket service without S3_BUCKET", () => {
  it("turns checkpoints off with the reason, before asking the server anything", async () => {
    const dir = await tmpDir();
    const { logger, lines } = memoryLogger();
    const storage = await createStorage(config({ ...env(dir), S3_BUCKET: undefined }), { logger, tuning });
    try {
      expect(await storage.restoreLatestCheckpoint({})).toBeNull();
    } finally {
      storage.close();
    }
    expect(lines.join("")).toContain("checkpoint restore off: S3_BUCKET is not set");
  });
});
