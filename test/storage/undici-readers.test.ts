/**
 * The two undici readers share one ranged-read path (store/undici-get.ts readRange): UndiciGet for S3 keys (SigV4
 * signed) and UrlReader for a presigned URL (DATASET_URL). The same faults go through both, against fauxqs (it
 * answers a stale If-Match with 412) behind the fault proxy, so a difference creeping into either caller's use of
 * the shared path shows here case for case.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPresigner } from "../../backend-stub/src/storage/checkpoint-urls.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { createS3Store } from "../../src/storage/store/s3.ts";
import type { RangeRead } from "../../src/storage/store/types.ts";
import { UrlReader } from "../../src/storage/store/url.ts";
import { startFaultProxy, type Fault, type FaultProxy } from "./fault-proxy.ts";
import { config, createBucket, put, startFauxqs, type TestServer } from "./helpers.ts";

const KEY = "sets/shared.bin";
const body = randomBytes(512 * 1024 + 3);
const OPTIONS = { connections: 4, connectTimeoutMs: 2_000, requestTimeoutMs: 3_000 };
let server: TestServer;
let etag = "";

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "data");
  await put(server.endpoint, "data", KEY, body);
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

/** One reader behind a fresh fault proxy: readInto with the object pinned to `pin` (its ETag unless told). */
interface Through {
  proxy: FaultProxy;
  read(req: RangeRead): Promise<boolean>;
  close(): Promise<void>;
}

type Kind = "UndiciGet (S3 key, SigV4)" | "UrlReader (presigned URL)";

async function through(kind: Kind, plan: (n: number) => Fault): Promise<Through> {
  const proxy = await startFaultProxy(server.endpoint, plan);
  if (kind === "UndiciGet (S3 key, SigV4)") {
    const store = await createS3Store(config({ S3_ENDPOINT: proxy.endpoint }).storage, "data", {
      maxSockets: 4,
      requestTimeoutMs: 3_000,
      connectTimeoutMs: 2_000,
      maxAttempts: 2,
      rangeReader: "undici",
    });
    etag ||= (await store.head(KEY))?.etag ?? "";
    return {
      proxy,
      read: (req) => (store.readInto as (r: RangeRead) => Promise<boolean>)(req),
      async close() {
        store.close();
        await proxy.close();
      },
    };
  }
  const presigner = await createPresigner({
    endpoint: proxy.endpoint,
    bucket: "data",
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
  });
  const url = new URL((await presigner.presign("GET", KEY)).url);
  presigner.client.destroy();
  const reader = new UrlReader(OPTIONS);
  etag ||= (await reader.probe(url)).etag;
  return {
    proxy,
    read: (req) => reader.readInto(url, req, { etag: req.etag, lastModified: undefined }),
    async close() {
      reader.close();
      await proxy.close();
    },
  };
}

function range(start: number, end: number, pin = etag): RangeRead & { landed: number[] } {
  const landed: number[] = [];
  return {
    key: KEY,
    start,
    end,
    etag: pin,
    into: Buffer.alloc(end - start),
    onBytes: (n) => landed.push(n),
    idleTimeoutMs: 2_000,
    landed,
  };
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describe.each<Kind>(["UndiciGet (S3 key, SigV4)", "UrlReader (presigned URL)"])("shared ranged read: %s", (kind) => {
  it("a 500 answer is declined (false, nothing landed); the next read lands exact bytes", async () => {
    const t = await through(kind, (n) => (n === 1 ? "500" : "pass"));
    try {
      const failed = range(1000, 70_000);
      expect(await t.read(failed)).toBe(false);
      expect(failed.landed).toEqual([]);
      const ok = range(1000, 70_000);
      expect(await t.read(ok)).toBe(true);
      expect(ok.into.equals(body.subarray(1000, 70_000))).toBe(true);
      expect(sum(ok.landed)).toBe(69_000);
      // Exactly the two ranged GETs: a declined answer is not retried here (the caller's slow path retries).
      expect(t.proxy.rangedGets).toBe(2);
      expect(t.proxy.requests.filter((r) => r.range !== undefined && r.range !== "bytes=0-0").length).toBe(2);
    } finally {
      await t.close();
    }
  });

  it("a read pinned to another version gets 412: declined, nothing landed, the pin sent as If-Match", async () => {
    const t = await through(kind, () => "pass");
    try {
      const stale = range(0, 4096, "0123456789abcdef0123456789abcdef");
      expect(await t.read(stale)).toBe(false);
      expect(stale.landed).toEqual([]);
      expect(stale.into.equals(Buffer.alloc(4096))).toBe(true);
      const sent = t.proxy.requests.at(-1);
      expect(sent?.range).toBe("bytes=0-4095");
      expect(sent?.ifMatch).toBe('"0123456789abcdef0123456789abcdef"');
    } finally {
      await t.close();
    }
  });

  it("a body reset mid-way: STORAGE_FAILED naming the read (no query), after reporting what landed", async () => {
    const t = await through(kind, () => "reset");
    try {
      const req = range(0, body.length);
      const error = await t.read(req).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isAgentError(error) && error.code).toBe("STORAGE_FAILED");
      const message = (error as Error).message;
      const named = new RegExp(`^GET \\S+${KEY.replace(/[/.]/g, "\\$&")} bytes 0-${body.length - 1}: `);
      expect(message).toMatch(named);
      expect(message).not.toMatch(/X-Amz|Signature|\?/);
      const landed = sum(req.landed);
      expect(landed).toBeGreaterThan(0);
      expect(landed).toBeLessThan(body.length);
      expect(req.into.subarray(0, landed).equals(body.subarray(0, landed))).toBe(true);
    } finally {
      await t.close();
    }
  });
});
