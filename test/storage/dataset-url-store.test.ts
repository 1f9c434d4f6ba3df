/**
 * The DATASET_URL store is made once per storage: every pull reuses it (its connection pool) and storage.close()
 * closes it. UrlStore is wrapped (vi.mock over the real module) only to count how many are made; the store itself,
 * the presigned URL, the S3 server (fauxqs) and the pulls are real.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { createPresigner } from "../../backend-stub/src/storage/checkpoint-urls.ts";
import { loadAgentConfig } from "../../src/config/index.ts";
import { createStorage } from "../../src/storage/index.ts";
import { createBucket, put, quietLogger, startFauxqs, tmpDir, type TestServer } from "./helpers.ts";

const made = vi.hoisted(() => ({ count: 0 }));

vi.mock("../../src/storage/store/url.ts", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/storage/store/url.ts")>();
  class CountedUrlStore extends real.UrlStore {
    constructor(...args: ConstructorParameters<typeof real.UrlStore>) {
      super(...args);
      made.count++;
    }
  }
  return { ...real, UrlStore: CountedUrlStore };
});

const BODY = Buffer.from("one line of data\n".repeat(4096));
let server: TestServer;
let url = "";

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "data");
  await put(server.endpoint, "data", "sets/lines.txt", BODY);
  const presigner = await createPresigner({
    endpoint: server.endpoint,
    bucket: "data",
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
  });
  ({ url } = await presigner.presign("GET", "sets/lines.txt"));
  presigner.client.destroy();
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

it("two pulls through one storage make one DATASET_URL store; the second finds the data in place", async () => {
  const root = await tmpDir("url-store-once-");
  const config = loadAgentConfig({
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    DATASET_URL: url,
    DATASET_DIR: path.join(root, "dataset"),
    CHECKPOINT_DIR: path.join(root, "ckpt"),
  });
  const storage = await createStorage(config, { logger: quietLogger(), tuning: { downloadPartSize: 16 * 1024 } });
  try {
    made.count = 0;
    const first = await storage.pullDataset({});
    expect(first?.skipped).toBe(false);
    expect(await fs.readFile(path.join(root, "dataset", "lines.txt"))).toEqual(BODY);
    const second = await storage.pullDataset({});
    expect(second?.skipped).toBe(true);
    expect(made.count).toBe(1);
  } finally {
    storage.close();
  }
});
