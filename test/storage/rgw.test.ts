/**
 * The storage layer against Ceph's RADOS Gateway (scripts/rgw.sh): a production S3 server that verifies SigV4, does
 * real multipart uploads and MD5 ETags and answers a stale If-Match with 412, over plain http and over https with
 * the lane's own CA (the way R2 and AWS are reached). Skipped, saying so, when the lane is not running; CI
 * (.ci/run) starts it.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import { createStorage } from "../../src/storage/index.ts";
import { PartBuffers, Pool } from "../../src/storage/internal/pool.ts";
import { readRangeInto } from "../../src/storage/internal/ranges.ts";
import { createS3Store } from "../../src/storage/store/s3.ts";
import type { ObjectStore } from "../../src/storage/store/types.ts";
import { startFaultProxy } from "./fault-proxy.ts";
import {
  RGW_MISSING,
  archive,
  config,
  makeTree,
  quietLogger,
  rgwLane,
  tmpDir,
  treeHash,
  type RgwLane,
} from "./helpers.ts";

const lane = rgwLane();
// Every run writes under its own prefix: the lane outlives test runs.
const run = randomUUID().slice(0, 8);
const tuning = { checkpointQuietMs: 150, checkpointPollMs: 50, requestTimeoutMs: 10_000, idleTimeoutMs: 10_000 };

function laneClient(l: RgwLane, endpoint: string, extra: Partial<ConstructorParameters<typeof S3Client>[0]> = {}) {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: l.accessKeyId, secretAccessKey: l.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    ...extra,
  });
}

const md5 = (b: Buffer): string => createHash("md5").update(b).digest("base64");
const storeOptions = { maxSockets: 4, requestTimeoutMs: 10_000, connectTimeoutMs: 5_000, maxAttempts: 2 };

if (lane === undefined) describe.skip(RGW_MISSING, () => it("runs against RGW", () => {}));
else
  describe.each([
    ["http", lane.endpoint],
    ["https", lane.httpsEndpoint],
  ])("Ceph RGW over %s", (scheme, endpoint) => {
    const bucket = lane.bucket;
    const prefix = `${run}-${scheme}`;
    const env = (extra: Record<string, string> = {}): Record<string, string> => ({
      S3_ENDPOINT: endpoint,
      S3_BUCKET: bucket,
      S3_ACCESS_KEY_ID: lane.accessKeyId,
      S3_SECRET_ACCESS_KEY: lane.secretAccessKey,
      ...extra,
    });
    const store = (extra: Record<string, string> = {}): Promise<ObjectStore> =>
      createS3Store(config(env(extra)).storage, bucket, storeOptions);
    let work: string;
    let expected: Record<string, string>;
    beforeAll(async () => {
      work = await tmpDir("rgw-");
      await makeTree(path.join(work, "src"), { bigBytes: 3 * 1024 * 1024 });
      expected = await treeHash(path.join(work, "src"));
      archive(path.join(work, "src"), path.join(work, "d.zip"), "zip");
      await laneClient(lane, endpoint).send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: `datasets/${prefix}-zip.zip`,
          Body: await fs.readFile(path.join(work, "d.zip")),
        }),
      );
    });
    afterAll(async () => {
      await fs.rm(work, { recursive: true, force: true });
    });

    it("reads ranges in place (never through the SDK's stack) and pulls a zip dataset byte for byte", async () => {
      const key = `datasets/${prefix}-zip.zip`;
      const zip = await fs.readFile(path.join(work, "d.zip"));
      // The socket client (the default, http and https) and undici's reader, which URL-based stores use.
      for (const rangeReader of ["socket", "undici"] as const) {
        const s = await createS3Store(config(env()).storage, bucket, { ...storeOptions, rangeReader });
        expect(s.readInto, "the in-place reader serves http and https alike").toBeDefined();
        const info = await s.head(key);
        const into = Buffer.alloc(100_000);
        const landed = await s.readInto?.({
          key,
          start: 7,
          end: 100_007,
          etag: info?.etag ?? "",
          into,
          onBytes: () => {},
          idleTimeoutMs: 5_000,
        });
        s.close();
        expect(landed, `${rangeReader}: the range landed in place, not through the SDK`).toBe(true);
        expect(into.equals(zip.subarray(7, 100_007)), rangeReader).toBe(true);
      }
      const dir = path.join(await tmpDir(), "ds");
      const storage = await createStorage(config(env({ DATASET_ID: `${prefix}-zip`, DATASET_DIR: dir })), {
        logger: quietLogger(),
        tuning: { ...tuning, downloadPartSize: 256 * 1024 },
      });
      try {
        await storage.pullDataset({});
      } finally {
        storage.close();
      }
      expect(await treeHash(dir)).toEqual(expected);
    });

    it("uploads a multipart checkpoint whose manifest records the object's real ETag, and restores it", async () => {
      const ck = await tmpDir();
      const jobId = `${prefix}-ck`;
      const big = randomBytes(12 * 1024 * 1024 + 5);
      await fs.writeFile(path.join(ck, "model.pt"), big);
      const storage = await createStorage(
        config(env({ JOB_ID: jobId, CHECKPOINT_DIR: ck, STORAGE_PART_SIZE_MB: "5" })),
        { logger: quietLogger(), tuning },
      );
      let uploaded;
      try {
        const sync = storage.startCheckpointSync({});
        sync.notify("model.pt");
        uploaded = await sync.finalSync();
      } finally {
        storage.close();
      }
      expect(uploaded.map((u) => u.key)).toEqual([`checkpoints/job-${jobId}/model.pt`]);
      // RGW answers CompleteMultipartUpload with an empty <ETag>: the one recorded came from a HEAD.
      const s = await store();
      const head = await s.head(`checkpoints/job-${jobId}/model.pt`);
      const manifests = await s.list(`checkpoints/job-${jobId}/_manifests/`);
      s.close();
      expect(head?.etag).toMatch(/^[0-9a-f]{32}-3$/);
      expect(uploaded[0]?.etag).toBe(head?.etag);
      expect(manifests).toHaveLength(1);
      const got = await laneClient(lane, endpoint).send(
        new GetObjectCommand({ Bucket: bucket, Key: (manifests[0] as { key: string }).key }),
      );
      const manifest = JSON.parse(await (got.Body as { transformToString(): Promise<string> }).transformToString());
      expect(JSON.stringify(manifest)).toContain(`"etag":"${head?.etag}"`);

      const ck2 = await tmpDir();
      const again = await createStorage(config(env({ JOB_ID: jobId, CHECKPOINT_DIR: ck2 })), {
        logger: quietLogger(),
        tuning,
      });
      try {
        expect((await again.restoreLatestCheckpoint({}))?.path).toBe(path.join(ck2, "model.pt"));
      } finally {
        again.close();
      }
      expect((await fs.readFile(path.join(ck2, "model.pt"))).equals(big)).toBe(true);
    });

    it("a replaced object fails the pinned ranged read with DATASET_CHANGED (RGW answers If-Match 412)", async () => {
      const key = `${prefix}/changing.bin`;
      const s = await store();
      try {
        const first = randomBytes(300_000);
        const etag = await s.putObject(key, first, md5(first));
        const second = randomBytes(300_000);
        await s.putObject(key, second, md5(second));
        const src = {
          store: s,
          key,
          size: first.length,
          etag,
          pool: new Pool(2),
          buffers: new PartBuffers(100_000, 1),
          partSize: 100_000,
          retries: 2,
          idleTimeoutMs: 5_000,
        };
        const error = await readRangeInto(src, 0, 100_000, Buffer.alloc(100_000)).catch((e: unknown) => e);
        expect(isAgentError(error, "DATASET_CHANGED"), String(error)).toBe(true);
      } finally {
        s.close();
      }
    });

    it("errors with RGW's empty <Message> still say the status, the S3 code and the key", async () => {
      const s = await store();
      try {
        const bad = await s
          .putObject(`${prefix}/md5.bin`, Buffer.from("abc"), "AAAAAAAAAAAAAAAAAAAAAA==")
          .catch((e: unknown) => e);
        expect(isAgentError(bad, "STORAGE_FAILED")).toBe(true);
        expect((bad as Error).message).toBe(`PUT s3://${bucket}/${prefix}/md5.bin failed: HTTP 400 BadDigest`);
        const range = await s.getRange(`${prefix}/none.bin`, 0, 10, "").catch((e: unknown) => e);
        expect(isAgentError(range, "DATASET_CHANGED")).toBe(true); // 404 NoSuchKey mid-read
        expect((range as Error).message).toContain(`s3://${bucket}/${prefix}/none.bin`);
      } finally {
        s.close();
      }
      const wrong = await store({ S3_SECRET_ACCESS_KEY: "not-the-secret" });
      try {
        const refused = await wrong.head(`${prefix}/x`).catch((e: unknown) => e);
        expect(isAgentError(refused, "STORAGE_DENIED")).toBe(true);
        // HEAD has no body, so no code: the status and the object still tell what happened.
        expect((refused as Error).message).toMatch(
          new RegExp(`^HEAD s3://${bucket}/${prefix}/x was refused \\(HTTP 403`),
        );
        const listed = await wrong.list(`${prefix}/`).catch((e: unknown) => e);
        expect((listed as Error).message).toContain("HTTP 403 SignatureDoesNotMatch");
        expect((listed as Error).message).not.toContain("not-the-secret");
      } finally {
        wrong.close();
      }
    });
  });

if (lane !== undefined)
  describe("Ceph RGW and the SDK's flexible checksums", () => {
    it("the SDK's default (aws-chunked with a trailing checksum) gets 411 from RGW", async () => {
      const sdkDefault = laneClient(lane, lane.endpoint, {
        requestChecksumCalculation: "WHEN_SUPPORTED",
        responseChecksumValidation: "WHEN_SUPPORTED",
      });
      const { Readable } = await import("node:stream");
      const error = await sdkDefault
        .send(
          new PutObjectCommand({
            Bucket: lane.bucket,
            Key: `${run}/chunked.bin`,
            Body: Readable.from([Buffer.alloc(1000, 1)]),
            ContentLength: 1000,
          }),
        )
        .catch((e: unknown) => e);
      expect((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(411);
    });

    it("the store sends no flexible-checksum headers (WHEN_REQUIRED), so RGW never sees aws-chunked", async () => {
      const proxy = await startFaultProxy(lane.endpoint, () => "pass", lane.secretAccessKey);
      const s = await createS3Store(
        config({
          S3_ENDPOINT: proxy.endpoint,
          S3_BUCKET: lane.bucket,
          S3_ACCESS_KEY_ID: lane.accessKeyId,
          S3_SECRET_ACCESS_KEY: lane.secretAccessKey,
        }).storage,
        lane.bucket,
        storeOptions,
      );
      try {
        const one = Buffer.alloc(1000, 2);
        expect(await s.putObject(`${run}/sum.bin`, one, md5(one))).toMatch(/^[0-9a-f]{32}$/);
        const up = await s.createMultipart(`${run}/sum-mp.bin`);
        const body = Buffer.alloc(1000, 3);
        const part = await up.uploadPart({ partNumber: 1, body, md5: md5(body) });
        await up.complete([{ partNumber: 1, etag: part }]);
        expect((await s.head(`${run}/sum-mp.bin`))?.etag).toMatch(/^[0-9a-f]{32}-1$/);
      } finally {
        s.close();
        await proxy.close();
      }
      expect(proxy.requests.length).toBeGreaterThanOrEqual(4);
      for (const r of proxy.requests) {
        expect(r.checksumHeaders, `${r.method} ${r.url}`).toEqual([]);
        expect(r.sigV4, `${r.method} ${r.url}`).toBe("ok");
      }
    });
  });
