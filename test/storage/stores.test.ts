/**
 * The other stores: STORAGE_TYPE=file (a local directory as the bucket) and s3rver (on-disk server; the one whose
 * multipart ETag is a plain MD5 and which has no AbortMultipartUpload: the uploader must cope with both).
 */
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage } from "../../src/storage/index.ts";
import { Pool, forEachLimit } from "../../src/storage/internal/pool.ts";
import {
  archive,
  config,
  createBucket,
  makeTree,
  put,
  quietLogger,
  startS3rver,
  tmpDir,
  treeHash,
  type TestServer,
} from "./helpers.ts";

let work: string;
let expected: Record<string, string>;
beforeAll(async () => {
  work = await tmpDir("stores-");
  await fs.mkdir(path.join(work, "src"));
  await makeTree(path.join(work, "src"));
  expected = await treeHash(path.join(work, "src"));
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe("STORAGE_TYPE=file", () => {
  it("pulls zip and prefix datasets, uploads and restores a checkpoint, all inside STORAGE_PATH", async () => {
    const root = path.join(work, "bucket");
    await fs.mkdir(path.join(root, "datasets"), { recursive: true });
    archive(path.join(work, "src"), path.join(root, "datasets", "fz.zip"), "zip");
    await fs.cp(path.join(work, "src"), path.join(root, "datasets", "fp"), { recursive: true });
    for (const id of ["fz", "fp"]) {
      const dir = path.join(await tmpDir(), "ds");
      const s = await createStorage(
        config({ STORAGE_TYPE: "file", STORAGE_PATH: root, DATASET_ID: id, DATASET_DIR: dir }),
        { logger: quietLogger(), tuning: { downloadPartSize: 32 * 1024 } },
      );
      await s.pullDataset({});
      expect(await treeHash(dir)).toEqual(expected);
    }
    const ck = await tmpDir();
    const s = await createStorage(
      config({ STORAGE_TYPE: "file", STORAGE_PATH: root, JOB_ID: "fj", CHECKPOINT_DIR: ck, STORAGE_PART_SIZE_MB: "5" }),
      { logger: quietLogger() },
    );
    const sync = s.startCheckpointSync({});
    await fs.writeFile(path.join(ck, "m.pt"), Buffer.alloc(11 * 1024 * 1024, 9));
    sync.notify("m.pt");
    expect((await sync.finalSync()).map((c) => c.key)).toEqual(["checkpoints/job-fj/m.pt"]);
    expect((await fs.stat(path.join(root, "checkpoints/job-fj/m.pt"))).size).toBe(11 * 1024 * 1024);
    const ck2 = await tmpDir();
    const s2 = await createStorage(
      config({ STORAGE_TYPE: "file", STORAGE_PATH: root, JOB_ID: "fj", CHECKPOINT_DIR: ck2 }),
      { logger: quietLogger() },
    );
    expect((await s2.restoreLatestCheckpoint({}))?.path).toBe(path.join(ck2, "m.pt"));
    // No temporary files left in the "bucket".
    const all = await fs.readdir(root, { recursive: true });
    expect(all.filter((n) => n.includes(".trainer-tmp-"))).toEqual([]);
  });
});

describe("s3rver", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startS3rver();
    await createBucket(server.endpoint, "s3r");
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("zip pull with explicit ranges, sharded checkpoint upload (multipart, plain-MD5 ETag) and restore", async () => {
    archive(path.join(work, "src"), path.join(work, "r.zip"), "zip");
    await put(server.endpoint, "s3r", "datasets/r.zip", await fs.readFile(path.join(work, "r.zip")));
    const base = {
      S3_ENDPOINT: server.endpoint,
      S3_BUCKET: "s3r",
      JOB_ID: "sj",
      CHECKPOINT_UPLOAD: "sharded",
      PET_NNODES: "2",
      PET_NODE_RANK: "1",
      STORAGE_PART_SIZE_MB: "5",
    };
    const dir = path.join(await tmpDir(), "ds");
    const ck = await tmpDir();
    const s = await createStorage(config({ ...base, DATASET_ID: "r", DATASET_DIR: dir, CHECKPOINT_DIR: ck }), {
      logger: quietLogger(),
      tuning: { downloadPartSize: 64 * 1024 },
    });
    await s.pullDataset({});
    expect(await treeHash(dir)).toEqual(expected);
    const sync = s.startCheckpointSync({});
    const big = Buffer.alloc(12 * 1024 * 1024, 5);
    await fs.writeFile(path.join(ck, "shard.pt"), big);
    sync.notify(path.join(ck, "shard.pt"));
    expect((await sync.finalSync()).map((c) => c.key)).toEqual(["checkpoints/job-sj/node-1/shard.pt"]);
    const ck2 = await tmpDir();
    const s2 = await createStorage(config({ ...base, CHECKPOINT_DIR: ck2 }), { logger: quietLogger() });
    const r = await s2.restoreLatestCheckpoint({});
    expect(r?.path).toBe(path.join(ck2, "shard.pt"));
    expect(Buffer.compare(await fs.readFile(path.join(ck2, "shard.pt")), big)).toBe(0);
    // Node 0 of the same sharded job has nothing of its own to restore.
    const s0 = await createStorage(config({ ...base, PET_NODE_RANK: "0", CHECKPOINT_DIR: await tmpDir() }), {
      logger: quietLogger(),
    });
    expect(await s0.restoreLatestCheckpoint({})).toBeNull();
  });
});

describe("rank0 mode", () => {
  it("a node other than rank 0 uploads nothing", async () => {
    const root = await tmpDir();
    const ck = await tmpDir();
    const s = await createStorage(
      config({
        STORAGE_TYPE: "file",
        STORAGE_PATH: root,
        JOB_ID: "r0",
        CHECKPOINT_DIR: ck,
        PET_NNODES: "2",
        PET_NODE_RANK: "1",
      }),
      { logger: quietLogger() },
    );
    const sync = s.startCheckpointSync({});
    await fs.writeFile(path.join(ck, "x.pt"), "x");
    sync.notify("x.pt");
    expect(await sync.finalSync()).toEqual([]);
    expect(await fs.readdir(root)).toEqual([]);
  });
});

describe("Pool", () => {
  it("never runs more than its limit at once", async () => {
    const pool = new Pool(3);
    let active = 0;
    let peak = 0;
    await forEachLimit(
      Array.from({ length: 40 }, (_, i) => i),
      10,
      (i) =>
        pool.run(async () => {
          active += 1;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, i % 3));
          active -= 1;
        }),
    );
    expect(peak).toBe(3);
    expect(pool.peak).toBe(3);
  });
});
