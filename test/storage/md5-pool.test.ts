/** Md5Pool: Content-MD5 of upload parts on worker threads, for parts in shared memory and in owned buffers. */
import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { Md5Pool } from "../../src/storage/internal/md5-pool.ts";

const pools: Md5Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});
const md5 = (b: Uint8Array): string => createHash("md5").update(b).digest("hex");

describe("Md5Pool", () => {
  it("hashes a part in shared memory in place: the same buffer stays readable and reusable", async () => {
    const pool = new Md5Pool(2);
    pools.push(pool);
    const part = Buffer.from(new SharedArrayBuffer(2 * 1024 * 1024));
    for (let round = 0; round < 3; round++) {
      randomBytes(part.length).copy(part); // the uploader reads the next part into the same buffer
      const expected = md5(part);
      const { digest, body } = await pool.digest(part);
      expect(digest.toString("hex")).toBe(expected);
      expect(body).toBe(part);
      expect(md5(body)).toBe(expected);
    }
  });

  it("hashes an owned buffer on a worker and hands its bytes back; a pooled slice is hashed inline", async () => {
    const pool = new Md5Pool(1);
    pools.push(pool);
    const owned = Buffer.allocUnsafeSlow(1024 * 1024 + 7);
    randomBytes(owned.length).copy(owned);
    const expected = md5(owned);
    const { digest, body } = await pool.digest(owned);
    expect(digest.toString("hex")).toBe(expected);
    expect(owned.length).toBe(0); // its memory moved to the worker and came back as `body`
    expect(md5(body)).toBe(expected);
    const small = Buffer.from("a pooled buffer shares its memory with others");
    const inline = await pool.digest(small);
    expect(inline.body).toBe(small);
    expect(inline.digest.toString("hex")).toBe(md5(small));
  });
});
