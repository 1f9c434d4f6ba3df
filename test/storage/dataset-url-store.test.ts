/**
 * The DATASET_URL store is made once per storage: every pull reuses it (its connection pool) and storage.close()
 * closes it. UrlStore is wrapped (vi.mock over the real module) only to count how many are made; the store itself,
 * the HTTP server and the pulls are real.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import fs from "node:fs/promises";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { loadAgentConfig } from "../../src/config/index.ts";
import { createStorage } from "../../src/storage/index.ts";
import { quietLogger, tmpDir } from "./helpers.ts";

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
let srv: http.Server;
let base = "";

beforeAll(async () => {
  // One object with a strong ETag, served in ranges.
  srv = http.createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    const headers = { etag: '"v1"', "content-type": "text/plain" };
    if (m === null) {
      res.writeHead(200, { ...headers, "content-length": BODY.length }).end(BODY);
      return;
    }
    const [start, end] = [Number(m[1]), Math.min(Number(m[2]), BODY.length - 1)];
    res
      .writeHead(206, {
        ...headers,
        "content-length": end - start + 1,
        "content-range": `bytes ${start}-${end}/${BODY.length}`,
      })
      .end(BODY.subarray(start, end + 1));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => srv.close(() => r())));

it("two pulls through one storage make one DATASET_URL store; the second finds the data in place", async () => {
  const root = await tmpDir("url-store-once-");
  const config = loadAgentConfig({
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    DATASET_URL: `${base}/sets/lines.txt?token=abcdef123456`,
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
