/**
 * Callback tokens (CONTRACT section 5): HS256 JWTs with the claims `job_id`, `iat`, `exp`. Verification accepts
 * HS256 only, so `alg: none`, HS384/HS512 and the RS/ES/PS families are refused before any signature check, and a
 * token without `exp` is refused too: an unbounded token would outlive the job it was issued for.
 */
import { createSecretKey, type KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import type { CallbackTokenClaims } from "../../../src/contract/index.ts";
import { messageOf } from "../../../src/errors/index.ts";

export type TokenFailure =
  "missing" | "malformed" | "bad_signature" | "bad_algorithm" | "expired" | "bad_claims" | "wrong_job";

export type TokenCheck =
  { ok: true; claims: CallbackTokenClaims } | { ok: false; reason: TokenFailure; message: string };

/** Signs a token for `jobId`, valid `ttlSeconds` from `nowMs`. */
export function signCallbackToken(
  secret: string | KeyObject,
  jobId: string,
  ttlSeconds: number,
  nowMs: number,
): { token: string; exp: number } {
  const iat = Math.floor(nowMs / 1000);
  const exp = iat + ttlSeconds;
  const token = jwt.sign({ job_id: jobId, iat, exp } satisfies CallbackTokenClaims, secret, { algorithm: "HS256" });
  return { token, exp };
}

/** Verifies `token` for the job `jobId` at time `nowMs`. Never throws; the message names no secret. */
export function verifyCallbackToken(
  secret: string | KeyObject,
  token: string | undefined,
  jobId: string,
  nowMs: number,
): TokenCheck {
  if (token === undefined)
    return { ok: false, reason: "missing", message: "missing bearer token (Authorization: Bearer <JWT>)" };
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
    return { ok: false, reason: "malformed", message: "malformed token: expected a JWT (header.payload.signature)" };
  }
  let decoded: unknown;
  try {
    decoded = jwt.verify(token, secret, { algorithms: ["HS256"], clockTimestamp: Math.floor(nowMs / 1000) });
  } catch (error) {
    return classify(error);
  }
  if (typeof decoded !== "object" || decoded === null) {
    return { ok: false, reason: "bad_claims", message: "token payload is not a JSON object" };
  }
  const claims = decoded as Record<string, unknown>;
  if (typeof claims.job_id !== "string" || claims.job_id === "") {
    return { ok: false, reason: "bad_claims", message: "token has no job_id claim" };
  }
  if (typeof claims.exp !== "number") return { ok: false, reason: "bad_claims", message: "token has no exp claim" };
  if (claims.job_id !== jobId) {
    return { ok: false, reason: "wrong_job", message: "token was issued for another job" };
  }
  return {
    ok: true,
    claims: { job_id: claims.job_id, exp: claims.exp, iat: typeof claims.iat === "number" ? claims.iat : 0 },
  };
}

function classify(error: unknown): TokenCheck & { ok: false } {
  if (error instanceof jwt.TokenExpiredError) return { ok: false, reason: "expired", message: "token expired" };
  if (error instanceof jwt.NotBeforeError)
    return { ok: false, reason: "bad_claims", message: "token not valid yet (nbf)" };
  const message = messageOf(error);
  if (/algorithm|signature is required/i.test(message)) {
    return { ok: false, reason: "bad_algorithm", message: "token algorithm not allowed: only HS256 is accepted" };
  }
  if (/invalid signature/i.test(message))
    return { ok: false, reason: "bad_signature", message: "token signature is invalid" };
  return { ok: false, reason: "malformed", message: "malformed token" };
}

/** Verified tokens remembered per verifier; past this many the memory starts over (a token is re-verified). */
const CACHE_LIMIT = 10_000;

/**
 * A verifier bound to one secret, for the server's hot path. The secret becomes a KeyObject once (jsonwebtoken
 * otherwise probes a string secret with createPublicKey on every call), and a token string that verified before
 * is not verified again: its signature cannot change, so only `exp` and the path's job id are checked again.
 */
export function createTokenVerifier(secret: string): {
  key: KeyObject;
  verify(token: string | undefined, jobId: string, nowMs: number): TokenCheck;
} {
  const key = createSecretKey(Buffer.from(secret, "utf8"));
  const verified = new Map<string, CallbackTokenClaims>();
  return {
    key,
    verify(token, jobId, nowMs) {
      const cached = token === undefined ? undefined : verified.get(token);
      if (cached !== undefined) {
        if (cached.exp <= Math.floor(nowMs / 1000)) {
          verified.delete(token!);
          return { ok: false, reason: "expired", message: "token expired" };
        }
        if (cached.job_id !== jobId)
          return { ok: false, reason: "wrong_job", message: "token was issued for another job" };
        return { ok: true, claims: cached };
      }
      const check = verifyCallbackToken(key, token, jobId, nowMs);
      if (check.ok) {
        if (verified.size >= CACHE_LIMIT) verified.clear();
        verified.set(token!, check.claims);
      }
      return check;
    },
  };
}
