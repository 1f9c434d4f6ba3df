import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import { createStorage } from "../../src/storage/index.ts";
import { config, createBucket, pullError, put, quietLogger, startFauxqs, tmpDir, type TestServer } from "./helpers.ts";

let server: TestServer;
let fixtures: string;

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "data");
  fixtures = await tmpDir("unsafe-fixtures-");
  execFileSync("/usr/bin/python3", [path.resolve("test/fixtures/storage/make_archives.py"), fixtures]);
  for (const name of await fs.readdir(fixtures))
    await put(server.endpoint, "data", `datasets/${name}`, await fs.readFile(path.join(fixtures, name)));
  // Prefix datasets: a key that is both a file and a folder, and a key with a 300-byte component.
  await put(server.endpoint, "data", "datasets/nested/a", "x");
  await put(server.endpoint, "data", "datasets/nested/a/b", "y");
  await put(server.endpoint, "data", `datasets/long/${"n".repeat(300)}`, "x");
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await fs.rm(fixtures, { recursive: true, force: true });
});

/** What every refused pull must leave: the checkpoint beside the dataset folder, and nothing else. */
const LEFT = ["work", path.join("work", "checkpoints"), path.join("work", "checkpoints", "epoch-7.pt")];

async function pull(name: string, extra: Record<string, string> = {}): Promise<{ root: string; error: unknown }> {
  const root = await tmpDir("unsafe-");
  await fs.mkdir(path.join(root, "work", "checkpoints"), { recursive: true });
  await fs.writeFile(path.join(root, "work", "checkpoints", "epoch-7.pt"), "weights");
  const storage = await createStorage(
    config({
      S3_ENDPOINT: server.endpoint,
      S3_BUCKET: "data",
      DATASET_URI: `s3://data/datasets/${name}`,
      DATASET_DIR: path.join(root, "work", "dataset"),
      CHECKPOINT_DIR: path.join(root, "work", "checkpoints"),
      ...extra,
    }),
    { logger: quietLogger(), tuning: { downloadPartSize: 16 * 1024 } },
  );
  try {
    await storage.pullDataset({});
    return { root, error: undefined };
  } catch (error) {
    return { root, error };
  } finally {
    storage.close();
  }
}

/** Everything under root, files and folders. */
async function listAll(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(root, { recursive: true, withFileTypes: true }))
    out.push(path.relative(root, path.join(e.parentPath, e.name)));
  return out.sort();
}

describe("archive safety: each unsafe archive is refused and nothing is written (fauxqs)", () => {
  it.each([
    ["zip-dotdot.zip", "ARCHIVE_UNSAFE_PATH"],
    ["zip-absolute.zip", "ARCHIVE_UNSAFE_PATH"],
    ["zip-backslash.zip", "ARCHIVE_UNSAFE_PATH"],
    ["zip-symlink-out.zip", "ARCHIVE_UNSAFE_ENTRY"],
    ["zip-symlink-abs.zip", "ARCHIVE_UNSAFE_ENTRY"],
    ["zip-device.zip", "ARCHIVE_UNSAFE_ENTRY"],
    ["zip-bomb.zip", "DATASET_TOO_LARGE"],
    ["tar-dotdot.tar", "ARCHIVE_UNSAFE_PATH"],
    ["tar-absolute.tar", "ARCHIVE_UNSAFE_PATH"],
    ["tar-symlink-out.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-hardlink-out.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-device.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-fifo.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-through-link.tar", "ARCHIVE_UNSAFE_PATH"],
    ["tgz-bomb.tar.gz", "DATASET_TOO_LARGE"],
    ["zip-truncated.zip", "DATASET_CORRUPT"],
    ["zip-corrupt.zip", "DATASET_CORRUPT"],
    ["zip-bad-crc.zip", "DATASET_CORRUPT"],
    ["zip-size-lie.zip", "DATASET_CORRUPT"],
    ["tar-truncated.tar", "DATASET_CORRUPT"],
    ["tar-cut-at-boundary.tar", "DATASET_CORRUPT"],
    ["tgz-truncated.tgz", "DATASET_CORRUPT"],
    // issue 13: links resolved through each other, names the file system cannot hold, a file and a folder of one name
    ["zip-symlink-chain.zip", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-symlink-chain.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-symlink-chain-reversed.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-symlink-via-link.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-symlink-loop.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-link-under-link.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-duplicate-link.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-hardlink-to-symlink.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["tar-symlink-backslash.tar", "ARCHIVE_UNSAFE_ENTRY"],
    ["zip-file-then-dir.zip", "DATASET_CORRUPT"],
    ["zip-dir-then-file.zip", "DATASET_CORRUPT"],
    ["tar-file-then-dir.tar", "DATASET_CORRUPT"],
    ["tar-file-then-dir-entry.tar", "DATASET_CORRUPT"],
    ["tar-link-then-file.tar", "DATASET_CORRUPT"],
    ["tar-deep.tar", "ARCHIVE_UNSAFE_PATH"],
    ["zip-deep.zip", "ARCHIVE_UNSAFE_PATH"],
    ["tar-long-name.tar", "ARCHIVE_UNSAFE_PATH"],
    ["zip-nul.zip", "ARCHIVE_UNSAFE_PATH"],
    ["nested/", "DATASET_CORRUPT"],
    ["long/", "ARCHIVE_UNSAFE_PATH"],
  ])("%s -> %s", async (name, code) => {
    const { root, error } = await pull(name);
    expect(isAgentError(error) ? error.code : error).toBe(code);
    // A short message whatever the entry's name (a 10k-deep path is 20 KB).
    expect((error as Error).message.length).toBeLessThan(600);
    // Not even the innocent first entry, no temp folder, no marker, nothing outside, the checkpoint in place.
    expect(await listAll(root)).toEqual(LEFT);
    expect(await fs.readFile(path.join(root, "work", "checkpoints", "epoch-7.pt"), "utf8")).toBe("weights");
    await expect(fs.stat("/tmp/escape-abs.txt")).rejects.toThrow();
    await fs.rm(root, { recursive: true, force: true });
  });

  it.each([
    ["zip-bad-crc.zip", "entry data.txt: CRC32 mismatch"],
    ["zip-size-lie.zip", "entry data.txt: inflates past its declared size 95900"],
  ])("%s names the entry at fault, not another of its batch", async (name, why) => {
    // The check runs on the writer's thread, where ok.txt and data.txt travel in one batch.
    const { root, error } = await pull(name);
    expect((error as Error).message).toContain(`${name} is not a valid zip archive: ${why}`);
    await fs.rm(root, { recursive: true, force: true });
  });

  it.each<[string, string[], Record<string, string>]>([
    ["tar-symlink-inside.tar", ["d", "d/ok", "d/self", "d/up", "ok.txt"], { "d/ok": "fine\n" }],
    ["tar-zeros.tar", [], {}],
    ["tar-empty-dir.tar", [], {}],
    ["zip-empty.zip", [], {}],
    ["tar-case.tar", ["OK.txt", "Ok.txt", "ok.txt"], { "OK.txt": "OK", "Ok.txt": "Ok" }],
    ["tar-duplicate-file.tar", ["hl", "ok.txt"], { "ok.txt": "again\n", hl: "again\n" }],
  ])(
    "%s is a valid dataset (links inside through each other, empty archives, tar appends)",
    async (name, want, has) => {
      const { root, error } = await pull(name);
      expect(error).toBeUndefined();
      const dir = path.join(root, "work", "dataset");
      expect(await listAll(dir)).toEqual(want.map((p) => path.join(...p.split("/"))));
      for (const [file, text] of Object.entries(has))
        expect(await fs.readFile(path.join(dir, file), "utf8")).toBe(text);
    },
  );

  it("DATASET_MAX_BYTES caps a legitimate archive too, with a message naming the variable", async () => {
    const { error } = await pull("good.zip", { DATASET_MAX_BYTES: "1000" });
    expect(isAgentError(error, "DATASET_TOO_LARGE")).toBe(true);
    expect((error as Error).message).toContain("DATASET_MAX_BYTES");
  });

  it("a failed pull keeps the previous complete dataset in place", async () => {
    const root = await tmpDir("unsafe-keep-");
    const dir = path.join(root, "dataset");
    const base = {
      S3_ENDPOINT: server.endpoint,
      S3_BUCKET: "data",
      DATASET_DIR: dir,
    };
    const ok = await createStorage(config({ ...base, DATASET_URI: "s3://data/datasets/good.zip" }), {
      logger: quietLogger(),
    });
    await ok.pullDataset({});
    const before = await listAll(root);
    const bad = await createStorage(config({ ...base, DATASET_URI: "s3://data/datasets/zip-corrupt.zip" }), {
      logger: quietLogger(),
    });
    await expect(bad.pullDataset({})).rejects.toMatchObject({ code: "DATASET_CORRUPT" });
    expect(await listAll(root)).toEqual(before);
    expect(before).toContain(path.join("dataset", "data.bin"));
    ok.close();
    bad.close();
  });

  describe("the pull replaces only a DATASET_DIR it made", () => {
    const pullInto = (dir: string, ck: string, name = "good.zip"): Promise<unknown> =>
      pullError({
        S3_ENDPOINT: server.endpoint,
        S3_BUCKET: "data",
        DATASET_URI: `s3://data/datasets/${name}`,
        DATASET_DIR: dir,
        CHECKPOINT_DIR: ck,
      });

    it("refuses when CHECKPOINT_DIR reaches into DATASET_DIR through a symbolic link, and keeps the checkpoint", async () => {
      const root = await tmpDir("unsafe-cklink-");
      const dir = path.join(root, "dataset");
      expect(await pullInto(dir, path.join(root, "ck"))).toBeUndefined();
      await fs.mkdir(path.join(dir, "ck"));
      await fs.writeFile(path.join(dir, "ck", "epoch-7.pt"), "weights");
      await fs.symlink(path.join(dir, "ck"), path.join(root, "ck-link"));
      const error = await pullInto(dir, path.join(root, "ck-link"), "tar-zeros.tar");
      expect(isAgentError(error, "CONFIG_INVALID")).toBe(true);
      expect((error as Error).message).toMatch(/DATASET_DIR .*CHECKPOINT_DIR .*symbolic link/);
      expect(await fs.readFile(path.join(dir, "ck", "epoch-7.pt"), "utf8")).toBe("weights");
    });

    it("refuses a DATASET_DIR holding files no pull put there, and leaves them", async () => {
      const root = await tmpDir("unsafe-foreign-");
      const dir = path.join(root, "dataset");
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, "mine.txt"), "keep me");
      const error = await pullInto(dir, path.join(root, "ck"));
      expect(isAgentError(error, "CONFIG_INVALID")).toBe(true);
      expect((error as Error).message).toContain("DATASET_DIR");
      expect(await listAll(root)).toEqual(["dataset", path.join("dataset", "mine.txt")]);
    });

    it("replaces a folder an interrupted pull left (its marker says pending) and one a finished pull made", async () => {
      const root = await tmpDir("unsafe-pending-");
      const dir = path.join(root, "dataset");
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, "half.bin"), "x");
      await fs.writeFile(
        path.join(root, ".dataset.trainer-dataset.json"),
        JSON.stringify({ pending: true, source: "s", version: "v", bytes: 0, files: 0, completed_at: "" }),
      );
      expect(await pullInto(dir, path.join(root, "ck"))).toBeUndefined();
      expect(await listAll(dir)).toEqual(["data.bin", "ok.txt"]);
      expect(await pullInto(dir, path.join(root, "ck"), "tar-symlink-inside.tar")).toBeUndefined();
      expect(await listAll(dir)).toContain("ok.txt");
      expect(await listAll(dir)).not.toContain("data.bin");
    });
  });
});
