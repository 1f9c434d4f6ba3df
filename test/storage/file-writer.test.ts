/** FileWriter: batched small-file writes on worker threads (and inline without workers). Real files in a temp dir. */
import fs from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileWriter } from "../../src/storage/internal/file-writer.ts";
import { tmpDir } from "./helpers.ts";

const writers: FileWriter[] = [];
afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.close()));
});

describe.each([1, 2, 0])("FileWriter with %i worker(s)", (workers) => {
  const make = (): FileWriter => {
    const w = new FileWriter(workers);
    writers.push(w);
    return w;
  };

  it("writes every file byte for byte with its mode, from whole buffers, chunk lists and pooled slices", async () => {
    const dir = await tmpDir();
    const w = make();
    const expected = new Map<string, Buffer>();
    const done: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      // Sizes from 0 bytes to past the 1 MiB batch, and small buffers from Node's shared pool.
      const size = i === 0 ? 0 : i % 50 === 0 ? 1_500_000 : (i * 7919) % 20_000;
      const body = Buffer.allocUnsafe(size);
      for (let j = 0; j < size; j++) body[j] = (i + j * 31) & 0xff;
      const file = path.join(dir, `f-${i}.bin`);
      expected.set(file, Buffer.from(body));
      const data = i % 3 === 0 ? [body.subarray(0, size >> 1), body.subarray(size >> 1)] : body;
      done.push(w.write({ path: file, data, mode: i % 2 === 0 ? 0o600 : 0o644 }));
      body.fill(0); // the writer copied it already: changing it now must not change the file
    }
    w.flush();
    await Promise.all(done);
    for (const [file, body] of expected) expect(Buffer.compare(await fs.readFile(file), body), file).toBe(0);
    expect((await fs.stat(path.join(dir, "f-2.bin"))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.join(dir, "f-1.bin"))).mode & 0o777).toBe(0o644);
  });

  it("lands two writes of one name in order (the later one wins)", async () => {
    const dir = await tmpDir();
    const w = make();
    const file = path.join(dir, "same.txt");
    const writes = ["first", "second", "third"].map((s) => w.write({ path: file, data: Buffer.from(s), mode: 0o644 }));
    w.flush();
    await Promise.all(writes);
    expect(await fs.readFile(file, "utf8")).toBe("third");
  });

  it("fails the write with the system error (code and path) when a file cannot be created", async () => {
    const dir = await tmpDir();
    const w = make();
    const missing = path.join(dir, "no-such-folder", "x.bin");
    const p = w.write({ path: missing, data: Buffer.from("x"), mode: 0o644 });
    w.flush();
    await expect(p).rejects.toMatchObject({ code: "ENOENT" });
  });
});
