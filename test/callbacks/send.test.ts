/** One callback request against the recording test backend, with the real token source on a token file. */
import { PassThrough } from "node:stream";
import pino from "pino";
import { writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CallbackHttpError,
  createRequest,
  createSend,
  isRetryableCallbackError,
  outcomeOf,
  Stop,
  type Outcome,
  type Request,
} from "../../src/callbacks/send.ts";
import { createTokenSource, type TokenSource } from "../../src/callbacks/token.ts";
import { undiciTransport } from "../../src/callbacks/transport.ts";
import { startBackend, type Rule } from "./backend.ts";

const TRACEPARENT = `00-${"a".repeat(32)}-${"b".repeat(16)}-01`;
const transport = undiciTransport();
afterAll(() => transport.close());

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "send-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The real token source on a CALLBACK_TOKEN_FILE holding `first`; a rule rotates it with `rotate`. */
function tokenFile(first: string) {
  const file = join(dir, `token-${first}`);
  writeFileSync(file, `${first}\n`);
  const log = pino({ level: "silent" });
  return {
    rotate: (next: string) => writeFileSync(file, `${next}\n`),
    tokens: (request: Request) =>
      createTokenSource({
        config: { token: undefined, tokenFile: file },
        jobId: "j",
        request,
        readFile: (p) => readFile(p, "utf8"),
        now: Date.now,
        log,
      }),
  };
}

async function sender(rule: Rule, tokens: (request: Request) => TokenSource) {
  const b = await startBackend(rule);
  let requests = 0;
  const request = createRequest({
    base: new URL(`${b.url}/`),
    transport,
    traceparent: TRACEPARENT,
    timeoutMs: 5_000,
    stop: new Stop(),
  });
  const send = createSend({
    request,
    tokens: tokens(request),
    now: Date.now,
    log: pino({ level: "silent" }, new PassThrough()),
    onRequest: () => (requests += 1),
  });
  return { b, send, requests: () => requests };
}

describe("one callback request", () => {
  it.each<[number, Outcome, boolean]>([
    [200, "delivered", false],
    [201, "delivered", false],
    [408, "retry", true],
    [429, "retry", true],
    [500, "retry", true],
    [503, "retry", true],
    [400, "final", false],
    [403, "final", false],
    [404, "final", false],
    [409, "final", false],
    [422, "final", false],
    [401, "renew", false],
  ])("HTTP %d means %s", (status, outcome, retryable) => {
    expect(outcomeOf(status)).toBe(outcome);
    if (outcome !== "delivered")
      expect(isRetryableCallbackError(new CallbackHttpError(status, undefined))).toBe(retryable);
  });

  it("counts a network failure as worth another attempt", () => {
    expect(isRetryableCallbackError(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))).toBe(true);
  });

  it("sends the bearer token, Idempotency-Key and traceparent, once per call", async () => {
    const { b, send, requests } = await sender(() => ({ status: 201 }), tokenFile("t1").tokens);
    try {
      const res = await send("/v1/jobs/j/event", '{"type":"a"}', "key-1");
      expect(res.status).toBe(201);
      expect(b.requests).toHaveLength(1);
      expect(b.requests[0]!.headers).toMatchObject({
        authorization: "Bearer t1",
        "content-type": "application/json",
        "idempotency-key": "key-1",
        traceparent: TRACEPARENT,
      });
      expect(requests()).toBe(1);
    } finally {
      await b.close();
    }
  });

  it("throws a 429 with its Retry-After and does not retry by itself", async () => {
    const { b, send } = await sender(() => ({ status: 429, retryAfter: "2" }), tokenFile("t1").tokens);
    try {
      const error = await send("/v1/jobs/j/event", "{}", "k").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CallbackHttpError);
      expect(error).toMatchObject({ status: 429, retryAfterMs: 2_000 });
      expect(b.requests).toHaveLength(1);
    } finally {
      await b.close();
    }
  });

  it("sends a 401 again once with a fresher token, with the same Idempotency-Key", async () => {
    // The file is rotated while each request is in flight: a fresher token after every 401.
    const file = tokenFile("t1");
    const { b, send, requests } = await sender(({ n }) => {
      file.rotate(`t${n + 1}`);
      return n < 3 ? { status: 401 } : { status: 200 };
    }, file.tokens);
    try {
      const error = await send("/v1/jobs/j/event", "{}", "k").catch((e: unknown) => e);
      expect(error).toMatchObject({ status: 401 }); // the second 401 is final for this call
      expect(b.requests.map((r) => r.headers.authorization)).toEqual(["Bearer t1", "Bearer t2"]);
      expect(new Set(b.requests.map((r) => r.headers["idempotency-key"]))).toEqual(new Set(["k"]));
      expect(requests()).toBe(2);
    } finally {
      await b.close();
    }
  });

  it("takes a 401 as final when there is no fresher token", async () => {
    const { b, send } = await sender(() => ({ status: 401 }), tokenFile("only").tokens);
    try {
      await expect(send("/v1/jobs/j/event", "{}", "k")).rejects.toMatchObject({ status: 401 });
      expect(b.requests).toHaveLength(1);
    } finally {
      await b.close();
    }
  });
});
