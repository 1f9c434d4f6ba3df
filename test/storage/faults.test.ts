import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import { createStorage, type StorageDeps } from "../../src/storage/index.ts";
import { startFaultProxy, type Fault } from "./fault-proxy.ts";
import {
  archive,
  config,
  createBucket,
  makeTree,
  put,
  quietLogger,
  startFauxqs,
  tmpDir,
  treeHash,
  type TestServer,
} from "./helpers.ts";

// fauxqs behind a fault-injecting proxy: ranges and If-Match as S3 does them, faults we choose.
let server: TestServer;
let work: string;
let expected: Record<string, string>;
let bigObject: Buffer;
const tuning = {
  downloadPartSize: 64 * 1024,
  requestTimeoutMs: 3_000,
  idleTimeoutMs: 400,
  maxAttempts: 3,
  rangeRetries: 3,
  rangeReader: "socket" as "socket" | "undici",
};

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "data");
  work = await tmpDir();
  const src = path.join(work, "src");
  await fs.mkdir(src);
  await makeTree(src, { bigBytes: 600_000 });
  expected = await treeHash(src);
  bigObject = randomBytes(600_000);
  await put(server.endpoint, "data", "objects/big.bin", bigObject);
  for (const kind of ["zip", "tgz"] as const) {
    const file = path.join(work, `ds.${kind}`);
    archive(src, file, kind);
    await put(server.endpoint, "data", `datasets/f.${kind}`, await fs.readFile(file));
  }
});

afterAll(async () => {
  await server?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

async function pullWith(
  plan: (n: number) => Fault | Promise<Fault>,
  key: string,
  extra: Record<string, string> = {},
  more: Partial<typeof tuning> = {},
  retry?: StorageDeps["retry"],
) {
  const proxy = await startFaultProxy(server.endpoint, plan);
  const dir = path.join(await tmpDir(), "dataset");
  const storage = await createStorage(
    config({
      S3_ENDPOINT: proxy.endpoint,
      S3_BUCKET: "data",
      DATASET_URI: `s3://data/${key}`,
      DATASET_DIR: dir,
      STORAGE_CONCURRENCY: "4",
      ...extra,
    }),
    { logger: quietLogger(), tuning: { ...tuning, ...more }, retry },
  );
  const started = Date.now();
  try {
    const result = await storage.pullDataset({});
    return { result, dir, proxy, error: undefined, ms: Date.now() - started };
  } catch (error) {
    return { result: undefined, dir, proxy, error, ms: Date.now() - started };
  } finally {
    storage.close();
    await proxy.close();
  }
}

// Every case runs with ranged GETs read in place by the socket client (store/direct-get.ts, the default for http
// endpoints), in place by undici's (store/undici-get.ts, what https endpoints use) and through the SDK's streams.
describe.each([
  ["in place (socket)", "true", "socket"],
  ["in place (undici)", "true", "undici"],
  ["through the SDK", "false", "socket"],
] as const)("pull through faults (fauxqs behind a fault proxy), GETs %s", (_how, direct, rangeReader) => {
  const pullThrough = (
    plan: (n: number) => Fault | Promise<Fault>,
    key: string,
    extra: Record<string, string> = {},
    more: Partial<typeof tuning> = {},
    retry?: StorageDeps["retry"],
  ) => pullWith(plan, key, { STORAGE_DIRECT_READS: direct, ...extra }, { rangeReader, ...more }, retry);

  it.each(["datasets/f.zip", "datasets/f.tgz"])(
    "%s: 500 answers on every third ranged GET -> complete and exact",
    async (key) => {
      const r = await pullThrough((n) => (n % 3 === 0 ? "500" : "pass"), key);
      expect(r.error).toBeUndefined();
      expect(await treeHash(r.dir)).toEqual(expected);
      expect(r.proxy.rangedGets).toBeGreaterThan(3);
      // Signed as S3 checks it, whichever client sent it; in place only where asked.
      for (const q of r.proxy.requests) expect(q.sigV4).toBe("ok");
      const own = r.proxy.requests.filter((q) => q.userAgent === "astrago-trainer").length;
      if (direct === "true") expect(own).toBeGreaterThan(3);
      else expect(own).toBe(0);
    },
  );

  it.each(["datasets/f.zip", "datasets/f.tgz"])(
    "%s: connections reset mid-body -> resumed, complete and exact",
    async (key) => {
      const r = await pullThrough((n) => (n % 3 === 0 ? "reset" : "pass"), key, {}, { rangeRetries: 8 });
      expect(r.error).toBeUndefined();
      expect(await treeHash(r.dir)).toEqual(expected);
      // A resumed range asks for the remaining bytes only.
      expect(r.proxy.requests.some((q) => q.range !== undefined && !/^bytes=\d+-\d+$/.test(q.range))).toBe(false);
    },
  );

  it("chunked answers (a proxy in front of the store): complete and exact; the socket client stops asking after a few", async () => {
    const r = await pullThrough(() => "chunked", "datasets/f.zip");
    expect(r.error).toBeUndefined();
    expect(await treeHash(r.dir)).toEqual(expected);
    const own = r.proxy.requests.filter((q) => q.userAgent === "astrago-trainer").length;
    // Three in a row switch the socket client off (at most STORAGE_CONCURRENCY, 4, were already on their way);
    // undici reads chunked bodies in place, each range asked once.
    if (direct === "false") expect(own).toBe(0);
    else if (rangeReader === "socket") expect(own).toBeLessThanOrEqual(3 + 4);
    else expect(own).toBe(r.proxy.rangedGets);
    expect(r.proxy.rangedGets).toBeGreaterThan(10);
  });

  it("an answer labelled as another range fails the pull with STORAGE_FAILED, nothing written", async () => {
    const r = await pullThrough(() => "wrong-range", "datasets/f.zip");
    expect(isAgentError(r.error, "STORAGE_FAILED")).toBe(true);
    expect((r.error as Error).message).toContain("(another range)");
    expect(await fs.readdir(path.dirname(r.dir))).toEqual([]);
  });

  it("a single object of many parts, with resets mid-body: each part written at its offset, exact", async () => {
    const r = await pullThrough((n) => (n % 4 === 0 ? "reset" : "pass"), "objects/big.bin", {}, { rangeRetries: 8 });
    expect(r.error).toBeUndefined();
    expect(r.proxy.rangedGets).toBeGreaterThan(9); // 600 kB in 64 KiB parts
    expect((await fs.readFile(path.join(r.dir, "big.bin"))).equals(bigObject)).toBe(true);
  });

  it("a body broken twice in a row waits as the range policy says before each re-request (injected sleep)", async () => {
    const waits: number[] = [];
    const sleep = (ms: number): Promise<void> => {
      waits.push(ms);
      return Promise.resolve();
    };
    // One GET at a time, so the first two GETs are the same range, reset before 256 KiB arrived.
    const r = await pullThrough(
      (n) => (n <= 2 ? "reset" : "pass"),
      "objects/big.bin",
      { STORAGE_CONCURRENCY: "1" },
      {},
      {
        sleep,
        random: () => 1,
      },
    );
    expect(r.error).toBeUndefined();
    expect((await fs.readFile(path.join(r.dir, "big.bin"))).equals(bigObject)).toBe(true);
    // 200 ms doubling, +50 % at random() = 1.
    expect(waits).toEqual([300, 600]);
  });

  it("stalled bodies (slower than the idle timeout) are dropped and re-requested", async () => {
    const r = await pullThrough((n) => (n <= 3 ? { stallMs: 2_000 } : "pass"), "datasets/f.zip");
    expect(r.error).toBeUndefined();
    expect(await treeHash(r.dir)).toEqual(expected);
  });

  it("a server that always stalls fails with a clear STORAGE_FAILED in bounded time, leaving nothing", async () => {
    const r = await pullThrough(() => ({ stallMs: 60_000 }), "datasets/f.tgz");
    expect(isAgentError(r.error, "STORAGE_FAILED")).toBe(true);
    expect((r.error as Error).message).toMatch(/no data for|failed \d+ times/);
    expect(r.ms).toBeLessThan(20_000);
    expect(await fs.readdir(path.dirname(r.dir))).toEqual([]);
  });

  it("a server that always answers 500 fails with STORAGE_FAILED naming the object, in bounded time", async () => {
    const r = await pullThrough(() => "500", "datasets/f.zip");
    expect(isAgentError(r.error, "STORAGE_FAILED")).toBe(true);
    expect((r.error as Error).message).toContain("s3://data/datasets/f.zip");
    expect(r.ms).toBeLessThan(20_000);
  });

  it("an object replaced mid-pull is detected by If-Match: DATASET_CHANGED, nothing written", async () => {
    await put(server.endpoint, "data", "datasets/moving.tgz", await fs.readFile(path.join(work, "ds.tgz")));
    const r = await pullThrough(async (n): Promise<Fault> => {
      if (n === 3)
        await put(server.endpoint, "data", "datasets/moving.tgz", await fs.readFile(path.join(work, "ds.zip")));
      return "pass";
    }, "datasets/moving.tgz");
    expect(isAgentError(r.error, "DATASET_CHANGED")).toBe(true);
    expect(await fs.readdir(path.dirname(r.dir))).toEqual([]);
    const ranged = r.proxy.requests.filter((q) => q.range !== undefined);
    expect(ranged.length).toBeGreaterThanOrEqual(3);
    expect(new Set(ranged.map((q) => q.ifMatch)).size).toBe(1);
    expect(ranged[0]?.ifMatch).toMatch(/^"[0-9a-f]{32}"$/);
  });

  it("restart with the same object skips the download (no ranged GET); a new ETag downloads again", async () => {
    await put(server.endpoint, "data", "datasets/stable.zip", await fs.readFile(path.join(work, "ds.zip")));
    const dir = path.join(await tmpDir(), "dataset");
    const first = await pullThrough(() => "pass", "datasets/stable.zip", { DATASET_DIR: dir });
    expect(first.result?.skipped).toBe(false);
    const again = await pullThrough(() => "pass", "datasets/stable.zip", { DATASET_DIR: dir });
    expect(again.result?.skipped).toBe(true);
    expect(again.proxy.rangedGets).toBe(0);
    expect(await treeHash(dir)).toEqual(expected);
    // A different object under the same key (new ETag) is downloaded again and replaces the old tree.
    const src2 = path.join(work, "src2");
    await fs.cp(path.join(work, "src"), src2, { recursive: true });
    await fs.writeFile(path.join(src2, "added.txt"), "new version\n");
    archive(src2, path.join(work, "ds2.zip"), "zip");
    await put(server.endpoint, "data", "datasets/stable.zip", await fs.readFile(path.join(work, "ds2.zip")));
    const changed = await pullThrough(() => "pass", "datasets/stable.zip", { DATASET_DIR: dir });
    expect(changed.result?.skipped).toBe(false);
    expect(await treeHash(dir)).toEqual(await treeHash(src2));
  });
});
