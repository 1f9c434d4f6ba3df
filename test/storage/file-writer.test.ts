/** FileWriter: batched small-file writes on worker threads (and inline without workers). Real files in a temp dir. */
import fs from "node:fs/promises";
import path from "node:path";
import zlib from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { copyInto, FileWriter, makeUnpack } from "../../src/storage/internal/file-writer.ts";
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

  it("inflates and checks each entry before writing it: a lie about size or CRC32 writes nothing of that file", async () => {
    const dir = await tmpDir();
    const w = make();
    const body = (n: number): Buffer => Buffer.from(`line ${n} of a text-like entry\n`.repeat(200 + n * 37));
    const entry = (n: number) => ({
      data: zlib.deflateRawSync(body(n)),
      size: body(n).length,
      crc: zlib.crc32(body(n)),
    });
    const flipped = Buffer.from(entry(1).data);
    flipped[7] = (flipped[7] as number) ^ 0xff;
    const cases: { name: string; data: Buffer; inflate: boolean; size: number; crc: number; error?: RegExp }[] = [
      { name: "good-0", ...entry(0), inflate: true },
      { name: "corrupt", ...entry(1), data: flipped, inflate: true, error: /invalid|incorrect|distance/ },
      { name: "truncated", ...entry(2), data: entry(2).data.subarray(0, 40), inflate: true, error: /unexpected end/ },
      { name: "too-long", ...entry(3), size: entry(3).size - 1, inflate: true, error: /past its declared size/ },
      { name: "too-short", ...entry(4), size: entry(4).size + 1, inflate: true, error: /differs from the declared/ },
      { name: "bad-crc", ...entry(5), crc: (entry(5).crc + 1) >>> 0, inflate: true, error: /CRC32 mismatch/ },
      { name: "stored-bad-crc", data: body(6), size: body(6).length, crc: 7, inflate: false, error: /CRC32 mismatch/ },
      { name: "stored", data: body(7), size: body(7).length, crc: zlib.crc32(body(7)), inflate: false },
      // After a bad entry the same worker inflates the next ones right (its zlib engine and buffer are reused).
      { name: "good-8", ...entry(8), inflate: true },
      { name: "good-1", ...entry(1), inflate: true },
      { name: "empty", data: zlib.deflateRawSync(Buffer.alloc(0)), size: 0, crc: 0, inflate: true },
    ];
    for (const c of cases) {
      // One batch each, so that a bad entry fails only itself.
      const p = w.write({ path: path.join(dir, c.name), data: c.data, mode: 0o644, check: c });
      w.flush();
      if (c.error === undefined) await p;
      else await expect(p, c.name).rejects.toMatchObject({ code: "ECORRUPT", message: expect.stringMatching(c.error) });
    }
    const written = (await fs.readdir(dir)).sort();
    expect(written).toEqual(
      cases
        .filter((c) => c.error === undefined)
        .map((c) => c.name)
        .sort(),
    );
    expect(await fs.readFile(path.join(dir, "good-8"), "utf8")).toBe(body(8).toString());
    expect(await fs.readFile(path.join(dir, "good-1"), "utf8")).toBe(body(1).toString());
    expect(await fs.readFile(path.join(dir, "stored"), "utf8")).toBe(body(7).toString());
    expect((await fs.stat(path.join(dir, "empty"))).size).toBe(0);
  });

  it("fails a batch from its bad file on: the files before it are written, the error names the bad one", async () => {
    const dir = await tmpDir();
    const w = make();
    const b = Buffer.from("contents\n".repeat(100));
    const ok = { inflate: false, size: b.length, crc: zlib.crc32(b) };
    const names = ["a", "bad", "c"];
    const writes = names.map((n) =>
      w.write({ path: path.join(dir, n), data: b, mode: 0o644, check: n === "bad" ? { ...ok, crc: 1 } : ok }),
    );
    w.flush();
    const settled = await Promise.allSettled(writes);
    expect(settled[0]?.status).toBe("fulfilled");
    expect(settled[1]).toMatchObject({ status: "rejected", reason: { code: "ECORRUPT", message: "CRC32 mismatch" } });
    // In a batch, what follows the bad file is not written; inline, each file stands alone.
    expect(settled[2]?.status).toBe(workers === 0 ? "fulfilled" : "rejected");
    expect((await fs.readdir(dir)).sort()).toEqual(workers === 0 ? ["a", "c"] : ["a"]);
    if (workers > 0) expect((settled[1] as PromiseRejectedResult).reason.path).toBe(path.join(dir, "bad"));
  });

  it("inflates entries of many sizes in one batch, each to its own bytes (a reused buffer leaks nothing)", async () => {
    const dir = await tmpDir();
    const w = make();
    const bodies = Array.from({ length: 40 }, (_, i) => Buffer.from(`${i}:`.repeat(((i * 7919) % 30_000) + 1)));
    const writes = bodies.map((b, i) =>
      w.write({
        path: path.join(dir, `e-${i}`),
        data: zlib.deflateRawSync(b),
        mode: 0o644,
        check: { inflate: true, size: b.length, crc: zlib.crc32(b) },
      }),
    );
    w.flush();
    await Promise.all(writes);
    for (const [i, b] of bodies.entries())
      expect((await fs.readFile(path.join(dir, `e-${i}`))).equals(b), `e-${i}`).toBe(true);
  });
});

describe("makeUnpack", () => {
  // The reused engine goes through fields Node does not document; without them the same checks run on inflateRawSync.
  it.each([
    ["Node's engine", zlib],
    ["an engine without the undocumented fields", { ...zlib, InflateRaw: class {} } as unknown as typeof zlib],
  ])("with %s: inflates, and refuses a lie about the size", (_, z) => {
    const unpack = makeUnpack(z, true);
    const body = Buffer.from("weights and biases\n".repeat(500));
    const data = zlib.deflateRawSync(body);
    const check = { inflate: true, size: body.length, crc: zlib.crc32(body) };
    expect(Buffer.from(unpack(data, check)).equals(body)).toBe(true);
    expect(() => unpack(data, { ...check, size: body.length - 1 })).toThrow(/past its declared size/);
    expect(Buffer.from(unpack(data, check)).equals(body)).toBe(true);
  });
});

describe("copyInto (a staging slot's copy)", () => {
  // All but the last byte go as a memmove and the last by index: each length lands whole, at any offset, nothing
  // past it touched. Lengths 0-2 are the edges of that split.
  it.each([0, 1, 2, 3, 4096, 107_003])("copies %i bytes into shared memory at odd and even offsets", (n) => {
    const src = Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255));
    for (const at of [0, 1, 5, 8]) {
      const into = Buffer.from(new SharedArrayBuffer(n + 16)).fill(0xee);
      expect(copyInto(src, into, at)).toBe(n);
      expect(into.subarray(at, at + n).equals(src)).toBe(true);
      expect(into.subarray(0, at).every((b) => b === 0xee)).toBe(true);
      expect(into.subarray(at + n).every((b) => b === 0xee)).toBe(true);
    }
  });
});
