/**
 * A store that refuses the credentials and a store that cannot be reached fail with their own codes (and exit
 * codes): the refusal is STORAGE_DENIED, never retried by a ranged read; the unreachable endpoint is
 * STORAGE_UNAVAILABLE, carrying the socket's code. Both against real sockets on 127.0.0.1.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exitCodeFor, isAgentError, type AgentError } from "../../src/errors/index.ts";
import { isResumableNetworkError, systemCodeOf } from "../../src/storage/store/errors.ts";
import { pullError, quietLogger, tmpDir } from "./helpers.ts";

/** A store answering every request as S3 does a bad signature: 403 with an S3 error body. */
let refusing: http.Server;
let refusingEndpoint: string;
let requests = 0;

beforeAll(async () => {
  refusing = http.createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(403, { "content-type": "application/xml" });
    res.end('<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>refused</Message></Error>');
  });
  await new Promise<void>((resolve) => refusing.listen(0, "127.0.0.1", resolve));
  refusingEndpoint = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => refusing?.close(resolve));
});

async function pullFrom(endpoint: string): Promise<unknown> {
  return pullError(
    {
      S3_ENDPOINT: endpoint,
      S3_BUCKET: "data",
      DATASET_URI: "s3://data/datasets/f.zip",
      DATASET_DIR: path.join(await tmpDir(), "dataset"),
    },
    { logger: quietLogger(), tuning: { maxAttempts: 2, connectTimeoutMs: 2_000, requestTimeoutMs: 5_000 } },
  );
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe("storage errors by code", () => {
  it("a store that refuses the credentials (403): STORAGE_DENIED, exit 77, not worth a re-request", async () => {
    const error = await pullFrom(refusingEndpoint);
    expect(isAgentError(error, "STORAGE_DENIED")).toBe(true);
    expect((error as Error).message).toMatch(/was refused \(HTTP 403.*check the access key/);
    expect(exitCodeFor((error as AgentError).code)).toBe(77);
    expect(isResumableNetworkError(error)).toBe(false);
    expect(requests).toBeGreaterThan(0);
  });

  it("a store that cannot be reached: STORAGE_UNAVAILABLE with the socket's code, exit 69", async () => {
    const error = await pullFrom(`http://127.0.0.1:${await closedPort()}`);
    expect(isAgentError(error, "STORAGE_UNAVAILABLE")).toBe(true);
    expect(systemCodeOf((error as AgentError).cause)).toBe("ECONNREFUSED");
    expect((error as Error).message).toContain("ECONNREFUSED (is the endpoint reachable?)");
    expect(exitCodeFor((error as AgentError).code)).toBe(69);
    expect(isResumableNetworkError(error)).toBe(true);
  });
});
