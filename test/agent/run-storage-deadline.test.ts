/**
 * The final checkpoint sync is bounded: a store that stops answering uploads (a real S3 server behind a proxy
 * that swallows every PUT) cannot hold the agent past FINAL_SYNC_TIMEOUT_SECONDS, and `done` still goes out.
 * The child writes into CHECKPOINT_DIR without creating it: the agent makes the folder before it starts.
 */
import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackend, type TestBackend } from "../callbacks/backend.ts";
import { createBucket, startFauxqs, type TestServer } from "../storage/helpers.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));

let s3: TestServer;
let proxy: http.Server;
let proxyUrl: string;
let b: TestBackend;
let dir: string;
const swallowed: string[] = [];
const sockets = new Set<Socket>();

beforeAll(async () => {
  s3 = await startFauxqs();
  await createBucket(s3.endpoint, "ck");
  const upstream = new URL(s3.endpoint);
  proxy = http.createServer((req, res) => {
    if (req.method === "PUT") {
      swallowed.push(req.url ?? ""); // read the body, never answer: an upload that hangs
      req.resume();
      return;
    }
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    req.pipe(up);
  });
  proxy.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  b = await startBackend();
  dir = await mkdtemp(join(tmpdir(), "sync-deadline-"));
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => proxy.close(r));
  await s3.stop();
  await b.close();
  await rm(dir, { recursive: true, force: true });
});

describe("final checkpoint sync deadline", () => {
  it("gives up after FINAL_SYNC_TIMEOUT_SECONDS: exit 74 naming the variable, done failed", async () => {
    const script = 'echo w > "$CHECKPOINT_DIR/e1.pt"; echo "::trainer::{\\"checkpoint\\":\\"$CHECKPOINT_DIR/e1.pt\\"}"';
    const started = Date.now();
    const child = spawn(process.execPath, [BIN, "run", "--", "sh", "-c", script], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        S3_ENDPOINT: proxyUrl,
        S3_BUCKET: "ck",
        S3_ACCESS_KEY_ID: "test-access",
        S3_SECRET_ACCESS_KEY: "test-secret-key-never-printed",
        CHECKPOINT_DIR: join(dir, "ck"),
        FINAL_SYNC_TIMEOUT_SECONDS: "2",
        JOB_ID: "j-deadline",
        BACKEND_BASE_URL: b.url,
        CALLBACK_TOKEN: "tok",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.on("close", r));
    const seconds = (Date.now() - started) / 1000;

    expect(swallowed.length).toBeGreaterThan(0); // the upload really was attempted and hung
    expect(code).toBe(74);
    expect(stderr).toMatch(/^trainer-agent: CHECKPOINT_UPLOAD_FAILED: .*within 2 s \(FINAL_SYNC_TIMEOUT_SECONDS\)$/m);
    expect(seconds).toBeLessThan(20); // not the SDK's or the OS's much longer timeouts
    expect(stderr).not.toContain("test-secret-key-never-printed");
    const done = b.of("done").map((r) => r.body);
    expect(done).toMatchObject([{ status: "failed", exit_code: 74 }]);
  }, 60_000);
});
