/**
 * Uploads one local file: PutObject below the part size, otherwise multipart with equal-size parts (R2 requires
 * it) read by position, at most STORAGE_CONCURRENCY in flight (shared pool), Content-MD5 on every request, the
 * returned multipart ETag compared with the MD5-of-MD5s we computed, AbortMultipartUpload on any failure.
 * A file whose size or mtime changes while it is read is not stored (FileChangedError): it was still being written.
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import { AgentError } from "../../errors/index.ts";
import type { Md5Pool } from "../internal/md5-pool.ts";
import type { Pool } from "../internal/pool.ts";
import type { ObjectStore } from "../store/types.ts";

const MiB = 1024 * 1024;
const MAX_PARTS = 9_500;

export class FileChangedError extends Error {
  constructor(file: string) {
    super(`${file} changed while it was being uploaded`);
    this.name = "FileChangedError";
  }
}

export interface UploadedFile {
  key: string;
  size: number;
  etag: string;
  /** Part size used (the ETag of a multipart object depends on it); equals size for a single PUT. */
  partSize: number;
  mtimeMs: number;
}

/** Part size for a file: at least minPart, large enough to stay under 9,500 parts, a whole number of MiB. */
export function partSizeFor(size: number, minPart: number): number {
  return Math.max(minPart, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/**
 * The ETag to record for a just-written object: the one the write returned, else (Ceph RGW 16 answers
 * CompleteMultipartUpload with an empty <ETag>) the object's own from a HEAD. Never empty: a manifest entry without
 * one would skip the multipart check here and the comparison on restore.
 */
async function storedEtag(store: ObjectStore, key: string, size: number, returned: string): Promise<string> {
  if (returned !== "") return returned;
  const info = await store.head(key);
  if (info === null || info.size !== size || info.etag === "")
    throw new AgentError(
      "CHECKPOINT_UPLOAD_FAILED",
      `${store.label}/${key}: the store returned no ETag for the upload and a HEAD found ${
        info === null ? "no object" : info.etag === "" ? "none either" : `${info.size} bytes, not ${size}`
      }`,
    );
  return info.etag;
}

export async function uploadFile(opts: {
  store: ObjectStore;
  pool: Pool;
  file: string;
  key: string;
  minPartSize: number;
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
  /** Hashes parts off the event loop when given. */
  md5?: Md5Pool;
}): Promise<UploadedFile> {
  const { store, pool, file, key } = opts;
  const fh = await fs.open(file, "r");
  try {
    const before = await fh.stat();
    const size = before.size;
    const partSize = partSizeFor(size, opts.minPartSize);
    // Full-size part buffers are reused across the parts of this file (at most STORAGE_CONCURRENCY exist): a fresh
    // 16 MiB allocation per part costs page faults and, for a 1 GiB file, 1.4 s of garbage collection. They are
    // shared memory, which the MD5 worker reads in place: a buffer transferred to it and back counts as new external
    // memory on each trip (1 GiB of parts ran ~40 full collections of the agent's heap, docs/storage.md).
    const spare: Buffer[] = [];
    const reuse = (b: Buffer): void => {
      if (b.length === partSize && b.buffer instanceof SharedArrayBuffer) spare.push(b);
    };
    const readPart = async (offset: number, len: number): Promise<Buffer> => {
      const buf =
        len === partSize ? (spare.pop() ?? Buffer.from(new SharedArrayBuffer(len))) : Buffer.allocUnsafeSlow(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, offset + got);
        if (bytesRead === 0) throw new FileChangedError(file);
        got += bytesRead;
      }
      return buf;
    };
    const unchanged = async (): Promise<void> => {
      const after = await fs.stat(file);
      if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ino !== before.ino)
        throw new FileChangedError(file);
    };

    if (size <= partSize) {
      const body = await pool.run(async () => {
        const b = await readPart(0, size);
        await unchanged();
        const md5 = createHash("md5").update(b).digest("base64");
        const etag = await storedEtag(store, key, size, await store.putObject(key, b, md5, opts.signal));
        opts.onBytes?.(size);
        return { b, etag, md5 };
      });
      const hex = Buffer.from(body.md5, "base64").toString("hex");
      if (/^[0-9a-f]{32}$/.test(body.etag) && body.etag !== hex)
        throw new AgentError(
          "CHECKPOINT_UPLOAD_FAILED",
          `${store.label}/${key}: the store's ETag does not match the uploaded bytes`,
        );
      return { key, size, etag: body.etag, partSize: size, mtimeMs: before.mtimeMs };
    }

    const upload = await store.createMultipart(key, opts.signal);
    const count = Math.ceil(size / partSize);
    const digests: Buffer[] = new Array<Buffer>(count);
    const etags: string[] = new Array<string>(count);
    const stop = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
    try {
      await Promise.all(
        Array.from({ length: count }, (_, i) =>
          pool
            .run(async () => {
              signal.throwIfAborted();
              const offset = i * partSize;
              const read = await readPart(offset, Math.min(partSize, size - offset));
              const { digest, body } = opts.md5
                ? await opts.md5.digest(read)
                : { digest: createHash("md5").update(read).digest(), body: read };
              digests[i] = digest;
              etags[i] = await upload.uploadPart({ partNumber: i + 1, body, md5: digest.toString("base64") }, signal);
              opts.onBytes?.(body.length);
              // Only after a part succeeded: a failed request may still be writing it (and then fails Content-MD5).
              reuse(body);
            })
            .catch((error: unknown) => {
              stop.abort();
              throw error;
            }),
        ),
      );
      await unchanged();
      const etag = await storedEtag(
        store,
        key,
        size,
        await upload.complete(etags.map((e, i) => ({ partNumber: i + 1, etag: e }))),
      );
      const expected = `${createHash("md5").update(Buffer.concat(digests)).digest("hex")}-${count}`;
      if (/^[0-9a-f]{32}-\d+$/.test(etag) && etag !== expected)
        throw new AgentError(
          "CHECKPOINT_UPLOAD_FAILED",
          `${store.label}/${key}: the store's multipart ETag ${etag} does not match the uploaded parts (${expected})`,
        );
      return { key, size, etag, partSize, mtimeMs: before.mtimeMs };
    } catch (error) {
      await upload.abort();
      throw error;
    }
  } finally {
    await fh.close();
  }
}

/** Checks a downloaded file against an S3 ETag (plain MD5, or MD5-of-MD5s-N with the given part size). */
export async function matchesEtag(file: string, etag: string, partSize: number): Promise<boolean | undefined> {
  const multi = /^([0-9a-f]{32})-(\d+)$/.exec(etag);
  if (!multi && !/^[0-9a-f]{32}$/.test(etag)) return undefined;
  const fh = await fs.open(file, "r");
  try {
    const whole = createHash("md5");
    const parts: Buffer[] = [];
    const chunk = multi ? partSize : 8 * MiB;
    const buf = Buffer.allocUnsafe(Math.min(chunk, 64 * MiB));
    let part = createHash("md5");
    let inPart = 0;
    for (;;) {
      const want = multi ? Math.min(buf.length, chunk - inPart) : buf.length;
      const { bytesRead } = await fh.read(buf, 0, want, null);
      if (bytesRead === 0) break;
      const view = buf.subarray(0, bytesRead);
      if (multi) {
        part.update(view);
        inPart += bytesRead;
        if (inPart === chunk) {
          parts.push(part.digest());
          part = createHash("md5");
          inPart = 0;
        }
      } else whole.update(view);
    }
    if (!multi) return whole.digest("hex") === etag;
    if (inPart > 0) parts.push(part.digest());
    return `${createHash("md5").update(Buffer.concat(parts)).digest("hex")}-${parts.length}` === etag;
  } finally {
    await fh.close();
  }
}
