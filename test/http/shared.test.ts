/**
 * The HTTP helpers the backend stub and `trainjob serve` share: the code-to-status table, AgentError to
 * HttpError, and the body reader's cap over a real server on 127.0.0.1.
 */
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentError, type ErrorCode } from "../../src/errors/index.ts";
import {
  bearerCheck,
  HttpError,
  httpErrorOf,
  httpStatusFor,
  listenOn,
  parseJsonBody,
  readBody,
  sendJson,
} from "../../src/http/index.ts";

describe("code to status", () => {
  it.each([
    ["JOB_INVALID", 400],
    ["USAGE", 400],
    ["SPEC_INVALID", 422],
    ["JOB_NOT_FOUND", 404],
    ["K8S_NOT_FOUND", 404],
    ["JOB_CONFLICT", 409],
    ["K8S_CONFLICT", 409],
    ["K8S_FAILED", 502],
    ["CALLBACK_FAILED", 502],
    ["JOURNAL_FAILED", 503],
    ["STORAGE_FAILED", 500],
  ] as Array<[ErrorCode, number]>)("%s -> %i", (code, status) => {
    expect(httpStatusFor(code)).toBe(status);
  });

  it("httpErrorOf keeps an HttpError, maps a named AgentError with its field, leaves the rest", () => {
    const own = new HttpError(418, "teapot", "short and stout");
    expect(httpErrorOf(own)).toBe(own);
    const mapped = httpErrorOf(new AgentError("JOB_CONFLICT", "exists", { details: { field: "id" } }));
    expect(mapped).toMatchObject({ status: 409, code: "JOB_CONFLICT", message: "exists", field: "id" });
    expect(httpErrorOf(new AgentError("STORAGE_FAILED", "disk"))).toBeUndefined();
    expect(httpErrorOf(new Error("plain"))).toBeUndefined();
  });

  it("bearerCheck takes the exact token only", () => {
    const check = bearerCheck("s3cret");
    expect(check("Bearer s3cret")).toBe(true);
    expect(check("bearer s3cret")).toBe(true);
    expect(check("Bearer s3cre")).toBe(false);
    expect(check("Basic s3cret")).toBe(false);
    expect(check(undefined)).toBe(false);
    expect(bearerCheck(undefined)(undefined)).toBe(true);
  });
});

describe("readBody over HTTP", () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      readBody(req, 16)
        .then((body) => sendJson(res, 200, parseJsonBody(body, true)))
        .catch((error: HttpError) => sendJson(res, error.status, { code: error.code }, error.headers));
    });
    const address = await listenOn(server, 0, "127.0.0.1");
    url = `http://127.0.0.1:${address.port}/`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("reads a body within the cap, and an empty one as {}", async () => {
    expect(await (await fetch(url, { method: "POST", body: '{"a":1}' })).json()).toEqual({ a: 1 });
    expect(await (await fetch(url, { method: "POST" })).json()).toEqual({});
  });

  it("refuses a declared length over the cap with 413 and closes", async () => {
    const res = await fetch(url, { method: "POST", body: JSON.stringify({ a: "x".repeat(32) }) });
    expect(res.status).toBe(413);
    expect(res.headers.get("connection")).toBe("close");
    expect(await res.json()).toEqual({ code: "body_too_large" });
  });

  it("refuses a streamed body (no length) once it passes the cap", async () => {
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"a":"0123456789'));
        controller.enqueue(new TextEncoder().encode('0123456789"}'));
        controller.close();
      },
    });
    const res = await fetch(url, { method: "POST", body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(413);
  });

  it("answers 400 invalid_json for a body that does not parse", async () => {
    const res = await fetch(url, { method: "POST", body: "{nope" });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ code: "invalid_json" });
  });
});
