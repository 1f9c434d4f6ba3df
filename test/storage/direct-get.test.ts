import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import net, { type AddressInfo } from "node:net";
import path from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import { encodeKey } from "../../src/contract/s3-text.ts";
import { createS3Store } from "../../src/storage/store/s3.ts";
import type { ObjectStore, RangeRead } from "../../src/storage/store/types.ts";
import { startFaultProxy, type Fault, type FaultProxy } from "./fault-proxy.ts";
import { config, createBucket, put, startFauxqs, tmpDir, type TestServer } from "./helpers.ts";

// The in-place ranged GET paths against fauxqs behind the fault proxy, which also checks every request's SigV4
// signature (fauxqs does not): the socket client (store/direct-get.ts) over plain http and over TLS (a TLS front with
// its own certificate before the proxy, as R2 and AWS are reached), and undici's (store/undici-get.ts), case for case.
let server: TestServer;
let front: { key: string; cert: string };
const body = randomBytes(3 * 1024 * 1024 + 17);
const KEY = "dir/a b+c=!'()*~ü.bin";
let etag = "";

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "data");
  await put(server.endpoint, "data", KEY, body);
  // A self-signed certificate for 127.0.0.1, trusted by this process (the readers and the SDK alike).
  front = await selfSigned();
  tls.setDefaultCACertificates([...tls.getCACertificates("default"), front.cert]);
});

afterAll(async () => {
  await server?.stop();
});

/** A key and a self-signed certificate for 127.0.0.1 (openssl). */
async function selfSigned(): Promise<{ key: string; cert: string }> {
  const dir = await tmpDir("tls-front-");
  execFileSync("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
    ...["-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-subj", "/CN=127.0.0.1"],
    ...["-addext", "subjectAltName=IP:127.0.0.1"],
  ]);
  const pair = {
    key: await fs.readFile(path.join(dir, "key.pem"), "utf8"),
    cert: await fs.readFile(path.join(dir, "cert.pem"), "utf8"),
  };
  await fs.rm(dir, { recursive: true, force: true });
  return pair;
}

type Reader = "socket" | "socket over TLS" | "undici";
const storeOptions = { maxSockets: 4, requestTimeoutMs: 3_000, connectTimeoutMs: 2_000, maxAttempts: 2 };
let reader: Reader = "socket";

/** Terminates TLS on 127.0.0.1 and relays the bytes to upstream, one upstream connection per client connection. */
async function tlsFront(
  upstream: string,
  identity: { key: string; cert: string } = front,
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const { hostname, port } = new URL(upstream);
  const open = new Set<net.Socket>();
  const server = tls.createServer(identity, (client) => {
    const up = net.connect(Number(port), hostname);
    const drop = (): void => {
      client.destroy();
      up.destroy();
    };
    for (const s of [client, up]) {
      open.add(s);
      s.on("error", drop).on("close", () => {
        open.delete(s);
        drop(); // a reset upstream (the proxy's "reset") resets the client's connection too
      });
    }
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of open) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function storeThrough(
  plan: (n: number) => Fault | Promise<Fault>,
  env: Record<string, string> = {},
): Promise<{ store: ObjectStore; proxy: FaultProxy; [Symbol.asyncDispose](): Promise<void> }> {
  const proxy = await startFaultProxy(server.endpoint, plan);
  const tlsEnd = reader === "socket over TLS" ? await tlsFront(proxy.endpoint) : undefined;
  const store = await createS3Store(
    config({ S3_ENDPOINT: tlsEnd?.endpoint ?? proxy.endpoint, ...env }).storage,
    "data",
    {
      ...storeOptions,
      rangeReader: reader === "undici" ? "undici" : "socket",
    },
  );
  etag ||= (await store.head(KEY))?.etag ?? "";
  return {
    store,
    proxy,
    async [Symbol.asyncDispose]() {
      store.close();
      await tlsEnd?.close();
      await proxy.close();
    },
  };
}

function read(start: number, end: number, extra: Partial<RangeRead> = {}): RangeRead & { landed: number[] } {
  const landed: number[] = [];
  return {
    key: KEY,
    start,
    end,
    etag,
    into: Buffer.alloc(end - start),
    onBytes: (n) => landed.push(n),
    idleTimeoutMs: 2_000,
    landed,
    ...extra,
  };
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describe.each<Reader>(["socket", "socket over TLS", "undici"])("in-place ranged GETs (%s)", (which) => {
  const socket = which !== "undici";
  beforeAll(() => {
    reader = which;
  });

  it("lands exact bytes in the caller's buffer, signed as S3 verifies them, over reused connections", async () => {
    await using t = await storeThrough(() => "pass");
    expect(t.store.readInto).toBeDefined();
    const ranges: [number, number][] = [];
    for (let s = 0; s < body.length; s += 256 * 1024 + 3) ranges.push([s, Math.min(body.length, s + 256 * 1024 + 3)]);
    const reads = ranges.map(([s, e]) => read(s, e));
    // Four at a time, like a pool of four.
    for (let i = 0; i < reads.length; i += 4)
      expect(await Promise.all(reads.slice(i, i + 4).map((r) => t.store.readInto?.(r)))).toEqual(
        reads.slice(i, i + 4).map(() => true),
      );
    for (const r of reads) {
      expect(r.into.equals(body.subarray(r.start, r.end))).toBe(true);
      expect(sum(r.landed)).toBe(r.end - r.start);
    }
    const gets = t.proxy.requests.filter((q) => q.range !== undefined);
    expect(gets).toHaveLength(reads.length);
    for (const q of gets) {
      expect(q.userAgent).toBe("astrago-trainer");
      expect(q.sigV4).toBe("ok");
      expect(q.ifMatch).toBe(`"${etag}"`);
      expect(q.url).toBe(`/data/${encodeKey(KEY)}`);
    }
    // 13 GETs over at most 4 connections (the SDK's HEAD came on its own).
    expect(new Set(gets.map((q) => q.connection)).size).toBeLessThanOrEqual(4);
  });

  it("the proxy's SigV4 check passes the SDK's own requests and fails a wrong secret", async () => {
    {
      await using t = await storeThrough(() => "pass");
      expect((await t.store.list("dir/")).map((o) => o.key)).toEqual([KEY]);
      expect(t.proxy.requests.length).toBeGreaterThan(0);
      for (const q of t.proxy.requests) expect(q.sigV4).toBe("ok");
    }
    await using bad = await storeThrough(() => "pass", { S3_SECRET_ACCESS_KEY: "not-the-secret" });
    expect(await bad.store.readInto?.(read(0, 1000))).toBe(true); // fauxqs does not check: only the proxy can tell
    expect(bad.proxy.requests.at(-1)?.sigV4).toBe("signature does not match");
  });

  it("encodes keys the way S3 signs them", () => {
    expect(encodeKey("a b/c+d/e=f!'()*~_.-ü")).toBe("a%20b/c%2Bd/e%3Df%21%27%28%29%2A~_.-%C3%BC");
  });

  it.each<[string, Fault]>([
    ["an error status", "500"],
    ["another range than asked", "wrong-range"],
    ...(socket ? ([["a chunked body", "chunked"]] as [string, Fault][]) : []),
  ])("declines %s (false, nothing reported): the caller asks the SDK", async (_what, fault) => {
    await using t = await storeThrough(() => fault);
    const r = read(10, 5000);
    expect(await t.store.readInto?.(r)).toBe(false);
    expect(r.landed).toEqual([]);
  });

  it.runIf(socket)(
    "stands aside after three successes in a row in a form it does not take (chunked); error statuses do not count",
    async () => {
      {
        await using t = await storeThrough(() => "500");
        for (let i = 0; i < 5; i++) expect(await t.store.readInto?.(read(0, 100))).toBe(false);
        expect(t.proxy.requests).toHaveLength(5); // each error answer is the SDK's to map: every read still asks
      }
      await using t = await storeThrough(() => "chunked");
      for (let i = 0; i < 5; i++) expect(await t.store.readInto?.(read(0, 100))).toBe(false);
      expect(t.proxy.requests).toHaveLength(3);
    },
  );

  it.runIf(which === "undici")(
    "takes a chunked body (a proxy in front of the store) as well as a sized one",
    async () => {
      await using t = await storeThrough(() => "chunked");
      const r = read(10, 300_000);
      expect(await t.store.readInto?.(r)).toBe(true);
      expect(r.into.equals(body.subarray(10, 300_000))).toBe(true);
      expect(sum(r.landed)).toBe(300_000 - 10);
      await using err = await storeThrough(() => "500");
      for (let i = 0; i < 5; i++) expect(await err.store.readInto?.(read(0, 100))).toBe(false);
      expect(err.proxy.requests).toHaveLength(5); // each error answer is the SDK's to map: every read still asks
    },
  );

  it("leaves an ETag that cannot travel in a header as it is to the SDK (no request sent)", async () => {
    await using t = await storeThrough(() => "pass");
    expect(await t.store.readInto?.(read(0, 10, { etag: 'abc"\r\nx-injected: 1' }))).toBe(false);
    expect(t.proxy.requests).toEqual([]);
  });

  it("a keep-alive connection the server closed is replaced silently", async () => {
    await using t = await storeThrough(() => "pass");
    expect(await t.store.readInto?.(read(0, 100))).toBe(true);
    t.proxy.dropConnections();
    await new Promise((r) => setTimeout(r, 50));
    const r = read(100, 70_000);
    expect(await t.store.readInto?.(r)).toBe(true);
    expect(r.into.equals(body.subarray(100, 70_000))).toBe(true);
    expect(t.proxy.connections).toBe(2);
  });

  it("a body cut mid-way rejects STORAGE_FAILED after reporting exactly the bytes that landed", async () => {
    await using t = await storeThrough(() => "reset");
    const r = read(0, body.length);
    const error = await t.store.readInto?.(r).catch((e: unknown) => e);
    expect(isAgentError(error, "STORAGE_FAILED")).toBe(true);
    expect((error as Error).message).toMatch(/connection closed after \d+ of 3145745 bytes/);
    const got = sum(r.landed);
    expect(got).toBeGreaterThan(0);
    expect(got).toBeLessThan(body.length);
    expect(r.into.subarray(0, got).equals(body.subarray(0, got))).toBe(true);
  });

  it("a body that stalls fails after the idle timeout, naming the object and the silence", async () => {
    await using t = await storeThrough(() => ({ stallMs: 5_000 }));
    const started = Date.now();
    const error = await t.store.readInto?.(read(0, 200_000, { idleTimeoutMs: 300 })).catch((e: unknown) => e);
    expect(isAgentError(error, "STORAGE_FAILED")).toBe(true);
    expect((error as Error).message).toContain("s3://data/dir/a b+c");
    expect((error as Error).message).toContain("no data for");
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it("an abort mid-body rejects with the signal's reason at once", async () => {
    await using t = await storeThrough(() => ({ stallMs: 5_000 }));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const started = Date.now();
    const error = await t.store.readInto?.(read(0, 200_000, { signal: ac.signal })).catch((e: unknown) => e);
    expect((error as Error).name).toBe("AbortError");
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it("is off with STORAGE_DIRECT_READS=false; https endpoints (R2, AWS) read in place too", async () => {
    await using t = await storeThrough(() => "pass", { STORAGE_DIRECT_READS: "false" });
    expect(t.store.readInto).toBeUndefined();
    for (const env of [{ S3_ENDPOINT: "https://r2.example.invalid" }, { STORAGE_TYPE: "s3", S3_BUCKET: "data" }]) {
      const tls = await createS3Store(config(env).storage, "data", {
        maxSockets: 1,
        requestTimeoutMs: 1_000,
        connectTimeoutMs: 1_000,
        maxAttempts: 1,
      });
      expect(tls.readInto, JSON.stringify(env)).toBeDefined();
      tls.close();
    }
  });
});

// Loading undici adds ~2 MiB to the agent's RSS (docs/storage.md): the S3 store loads it only for its undici reader.
// A fresh process, since this one may have loaded undici for other reasons; undici is CommonJS, so require's cache
// lists it once loaded, however it was imported.
it("the S3 store loads undici only when its undici reader is asked for", () => {
  const s3 = new URL("../../src/storage/store/s3.ts", import.meta.url).href;
  const cfg = new URL("../../src/config/index.ts", import.meta.url).href;
  const script = `import { createRequire } from "node:module";
import { createS3Store } from ${JSON.stringify(s3)};
import { loadAgentConfig } from ${JSON.stringify(cfg)};
const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes("/node_modules/undici/"));
const out = [];
for (const [endpoint, rangeReader] of [["http://127.0.0.1:9", undefined], ["https://127.0.0.1:9", undefined], ["https://127.0.0.1:9", "undici"]]) {
  const config = loadAgentConfig({ S3_ENDPOINT: endpoint, S3_BUCKET: "data", S3_ACCESS_KEY_ID: "k", S3_SECRET_ACCESS_KEY: "s" });
  const store = await createS3Store(config.storage, "data", { maxSockets: 1, requestTimeoutMs: 1000, connectTimeoutMs: 1000, maxAttempts: 1, rangeReader });
  out.push([endpoint, rangeReader ?? "default", store.readInto !== undefined, loaded()]);
  store.close();
}
console.log(JSON.stringify(out));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  expect(JSON.parse(out.trim().split("\n").at(-1) as string)).toEqual([
    ["http://127.0.0.1:9", "default", true, false],
    ["https://127.0.0.1:9", "default", true, false],
    ["https://127.0.0.1:9", "undici", true, true],
  ]);
});

it("over TLS, a certificate nobody trusts: the socket client declines, the SDK's error names the object and why", async () => {
  const proxy = await startFaultProxy(server.endpoint, () => "pass");
  const untrusted = await tlsFront(proxy.endpoint, await selfSigned());
  const store = await createS3Store(config({ S3_ENDPOINT: untrusted.endpoint }).storage, "data", storeOptions);
  try {
    const r = read(0, 100);
    expect(await store.readInto?.(r)).toBe(false);
    expect(r.landed).toEqual([]);
    const error = await store.getRange(KEY, 0, 100, "").catch((e: unknown) => e);
    expect(isAgentError(error, "STORAGE_FAILED")).toBe(true);
    expect((error as Error).message).toContain(`s3://data/${KEY}`);
    expect((error as Error).message).toMatch(/CERT|certificate/);
    expect(proxy.requests).toEqual([]); // nothing went past the handshake
  } finally {
    store.close();
    await untrusted.close();
    await proxy.close();
  }
});
