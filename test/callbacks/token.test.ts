/**
 * The callback token source against the real backend stub (its `POST /v1/jobs/{id}/token` renewal) and, for a
 * backend without renewal, the recording test backend. Tokens are signed with the stub's secret at chosen times,
 * so "in the last quarter of its life" and "expired" do not depend on how fast this machine runs.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signCallbackToken } from "../../backend-stub/src/index.ts";
import { createRequest, Stop, type Request } from "../../src/callbacks/send.ts";
import { createTokenSource, dueForRenewal, expiryOf } from "../../src/callbacks/token.ts";
import { undiciTransport } from "../../src/callbacks/transport.ts";
import { Secret } from "../../src/config/index.ts";
import { SECRET, startStub, type Running } from "../backend-stub/helpers.ts";
import { startBackend } from "./backend.ts";

const HOUR = 3600_000;
let s: Running;
let dir: string;
let jobId: string;
const transport = undiciTransport();
beforeAll(async () => {
  // With an admin token set, only a valid (or recently expired) callback token renews.
  s = await startStub({ renewGraceSeconds: 600, adminToken: "admin-token-for-tests" });
  jobId = (await s.stub.createJob({ name: "tokens" })).id;
  dir = await mkdtemp(join(tmpdir(), "tokens-"));
});
afterAll(async () => {
  await transport.close();
  await s.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A token of the test job issued `agoMs` ago for an hour. */
const issued = (agoMs: number, job = jobId) => signCallbackToken(SECRET, job, 3600, Date.now() - agoMs).token;

function source(url: string, config: { token?: string; tokenFile?: string }) {
  const stream = new PassThrough();
  let logs = "";
  stream.on("data", (c: Buffer) => (logs += c.toString()));
  const paths: string[] = [];
  const real = createRequest({
    base: new URL(`${url}/`),
    transport,
    traceparent: "",
    timeoutMs: 5_000,
    stop: new Stop(),
  });
  const request: Request = (path, o) => {
    paths.push(path);
    return real(path, o);
  };
  const tokens = createTokenSource({
    config: {
      token: config.token === undefined ? undefined : new Secret(config.token),
      tokenFile: config.tokenFile,
    },
    jobId,
    request,
    readFile: (p) => readFile(p, "utf8"),
    now: Date.now,
    log: pino({ level: "debug" }, stream),
  });
  return { tokens, renewals: () => paths.filter((p) => p.endsWith("/token")).length, logs: () => logs };
}

describe("callback tokens", () => {
  it("reads exp and iat without verifying, and renews in the last quarter of a token's life", () => {
    const jwt = (claims: object) => `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.c2ln`; // header and signature unused
    expect(expiryOf(jwt({ exp: 1000 }))).toBe(1000);
    expect(expiryOf("not-a-jwt")).toBeUndefined();
    const t = jwt({ iat: 0, exp: 400 });
    expect(dueForRenewal(t, 299_000)).toBe(false);
    expect(dueForRenewal(t, 301_000)).toBe(true);
    expect(dueForRenewal(t, 500_000)).toBe(true); // expired: still worth one try
    expect(dueForRenewal("opaque-token", 0)).toBe(false);
  });

  it("uses a fresh token as configured and asks for no renewal", async () => {
    const token = issued(0);
    const { tokens, renewals } = source(s.url, { token });
    expect(await tokens.current()).toBe(token);
    expect(renewals()).toBe(0);
  });

  it("renews a token in the last quarter of its life and keeps the later-expiring one", async () => {
    const old = issued(0.8 * HOUR);
    const { tokens, renewals, logs } = source(s.url, { token: old });
    const fresh = await tokens.current();
    expect(fresh).not.toBe(old);
    expect(expiryOf(fresh)!).toBeGreaterThan(expiryOf(old)!);
    expect(await tokens.current()).toBe(fresh); // not due: no second renewal
    expect(renewals()).toBe(1);
    expect(logs()).toContain("callback token renewed");
    expect(logs()).not.toContain(old);
    expect(logs()).not.toContain(fresh);
  });

  it("a rotated CALLBACK_TOKEN_FILE wins over a renewed token when it expires later", async () => {
    const file = join(dir, "rotated");
    await writeFile(file, `${issued(0.8 * HOUR)}\n`);
    const { tokens } = source(s.url, { tokenFile: file });
    const renewed = await tokens.current();
    const rotated = signCallbackToken(SECRET, jobId, 48 * 3600, Date.now()).token;
    await writeFile(file, `${rotated}\n`);
    expect(await tokens.current()).toBe(rotated);
    // A file rotated back to an older token loses to the renewed one.
    await writeFile(file, `${issued(0.8 * HOUR)}\n`);
    expect(await tokens.current()).toBe(renewed);
  });

  it("renews a token the backend called expired (401 token_expired), whatever its age", async () => {
    const expired = issued(HOUR + 60_000);
    const { tokens, renewals } = source(s.url, { token: expired });
    const fresh = await tokens.afterRejection(expired, "token_expired");
    expect(fresh).not.toBe(expired);
    expect(expiryOf(fresh)! * 1000).toBeGreaterThan(Date.now());
    expect(renewals()).toBe(1);
  });

  it("does not renew on a 401 that is not about expiry", async () => {
    const token = issued(0);
    const { tokens, renewals } = source(s.url, { token });
    expect(await tokens.afterRejection(token, "token_invalid")).toBe(token);
    expect(renewals()).toBe(0);
  });

  it("does not offer a token the backend refused to renew again", async () => {
    const stale = issued(2 * HOUR); // expired beyond the stub's grace: refused with 401
    const { tokens, renewals, logs } = source(s.url, { token: stale });
    expect(await tokens.afterRejection(stale, "token_expired")).toBe(stale);
    expect(await tokens.afterRejection(stale, "token_expired")).toBe(stale);
    expect(renewals()).toBe(1);
    expect(logs()).toContain("callback token renewal refused");
    expect(logs()).toContain("token_required");
  });

  it("asks a backend without renewal (404) once", async () => {
    const b = await startBackend(({ kind }) => (kind === "token" ? { status: 404 } : { status: 200 }));
    try {
      const old = issued(0.8 * HOUR);
      const { tokens, renewals } = source(b.url, { token: old });
      expect(await tokens.current()).toBe(old);
      expect(await tokens.current()).toBe(old);
      expect(renewals()).toBe(1);
      expect(b.of("token")).toHaveLength(1);
    } finally {
      await b.close();
    }
  });

  it("names CALLBACK_TOKEN_FILE when it cannot be read and there is no CALLBACK_TOKEN", async () => {
    const { tokens } = source(s.url, { tokenFile: join(dir, "missing") });
    await expect(tokens.current()).rejects.toMatchObject({
      code: "CALLBACK_FAILED",
      message: expect.stringContaining("CALLBACK_TOKEN_FILE"),
    });
  });
});
