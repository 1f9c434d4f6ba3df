import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage } from "../../src/storage/index.ts";
import {
  archive,
  config,
  createBucket,
  makeTree,
  memoryLogger,
  put,
  quietLogger,
  startFauxqs,
  tmpDir,
  treeHash,
  type TestServer,
} from "./helpers.ts";

// fauxqs: real ranges (incl. suffix), If-Match, multipart ETags; the most faithful pure-JS server here.
let server: TestServer;
let work: string;
let src: string;
let expected: Record<string, string>;
const tuning = { downloadPartSize: 64 * 1024, requestTimeoutMs: 5_000, idleTimeoutMs: 5_000 };

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "data");
  work = await tmpDir();
  src = path.join(work, "src");
  await fs.mkdir(src);
  await makeTree(src);
  expected = await treeHash(src);
  for (const kind of ["zip", "tar", "tgz"] as const) {
    const file = path.join(work, `ds.${kind}`);
    archive(src, file, kind);
    const key = kind === "tgz" ? "datasets/ds-tgz.tar.gz" : `datasets/ds-${kind}.${kind}`;
    await put(server.endpoint, "data", key, await fs.readFile(file));
  }
  await put(server.endpoint, "data", "datasets/ds-tgz2.tgz", await fs.readFile(path.join(work, "ds.tgz")));
  for (const [rel] of Object.entries(expected))
    await put(server.endpoint, "data", `datasets/ds-prefix/${rel}`, await fs.readFile(path.join(src, rel)));
});

afterAll(async () => {
  await server?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

function env(extra: Record<string, string>): Record<string, string> {
  return { S3_ENDPOINT: server.endpoint, S3_BUCKET: "data", STORAGE_CONCURRENCY: "4", ...extra };
}

describe("dataset pull round trips (fauxqs)", () => {
  it.each(["ds-zip", "ds-tar", "ds-tgz", "ds-tgz2", "ds-prefix"])("%s materialises the exact tree", async (id) => {
    const dir = path.join(await tmpDir(), "dataset");
    const storage = await createStorage(config(env({ DATASET_ID: id, DATASET_DIR: dir })), {
      logger: quietLogger(),
      tuning,
    });
    const r = await storage.pullDataset({});
    expect(r?.skipped).toBe(false);
    const got = await treeHash(dir);
    expect(got).toEqual(expected);
    expect(r?.files).toBe(Object.keys(expected).length);
    // Nothing left beside it but the marker.
    const siblings = await fs.readdir(path.dirname(dir));
    expect(siblings.sort()).toEqual([".dataset.trainer-dataset.json", "dataset"]);
    storage.close();
  });
});

describe("progress", () => {
  it("draws a bar on a TTY and logs structured lines (never a credential) otherwise", async () => {
    const drawn: string[] = [];
    const dir = path.join(await tmpDir(), "dataset");
    const tty = await createStorage(
      config(env({ DATASET_ID: "ds-zip", DATASET_DIR: dir, S3_SECRET_ACCESS_KEY: "sekrit-value" })),
      {
        logger: quietLogger(),
        stderr: { isTTY: true, write: (s: string) => drawn.push(s) > 0 },
        tuning,
      },
    );
    const seen: number[] = [];
    await tty.pullDataset({ onProgress: (p) => seen.push(p.bytes) });
    expect(drawn.at(-1)).toMatch(
      /^\rdataset s3:\/\/data\/datasets\/ds-zip\.zip \[#+\] [\d.]+ [KMG]?i?B\/[\d.]+ [KMG]?i?B [\d.]+ [KMG]?i?B\/s \d+ files?\n$/,
    );
    expect(seen.at(-1)).toBeGreaterThan(0);
    tty.close();

    const { logger, lines } = memoryLogger();
    const dir2 = path.join(await tmpDir(), "dataset");
    const plain = await createStorage(
      config(env({ DATASET_ID: "ds-tgz", DATASET_DIR: dir2, S3_SECRET_ACCESS_KEY: "sekrit-value" })),
      {
        logger,
        stderr: { isTTY: false, write: () => true },
        tuning,
      },
    );
    await plain.pullDataset({});
    const ready = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "dataset ready");
    expect(ready).toMatchObject({ files: Object.keys(expected).length });
    expect(ready?.mb_per_s).toBeGreaterThan(0); // a small, quick pull is not rounded to 0
    expect(lines.join("")).not.toContain("sekrit-value");
    plain.close();
  });
});
