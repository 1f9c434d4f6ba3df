/**
 * The callback token for each request. The configured one is read before each request (CALLBACK_TOKEN_FILE
 * re-read, so a rotated Secret wins); a token this client renewed itself is used while it expires later. Jobs
 * outlive a 24 h token: in the last quarter of a token's life the client asks the backend for a new one
 * (`POST /v1/jobs/{id}/token`, the backend stub's renewal) with the still-valid one; a backend without that
 * endpoint is asked once, and a token the backend refused to renew is not offered again (a rotated one may be).
 */
import type { Logger } from "pino";
import type { CallbackConfig } from "../config/index.ts";
import { tokenPath } from "../contract/paths.ts";
import { AgentError } from "../errors/index.ts";
import { describeFailure, errorCodeOf, parseJson, type Request } from "./send.ts";

export interface TokenSource {
  /** The token for the next request; renewed first when it is in the last quarter of its life. */
  current(): Promise<string>;
  /**
   * The token to send again with after the backend answered 401 to `used` (`code`: the answer's error code);
   * `used` itself when there is none fresher. An expired `used` is renewed whatever its age (the stub accepts
   * a just-expired one); a token of another job or a bad signature is no reason to ask for a new one.
   */
  afterRejection(used: string, code: string | undefined): Promise<string>;
}

export interface TokenSourceOptions {
  config: Pick<CallbackConfig, "token" | "tokenFile">;
  jobId: string;
  /** Sends the renewal request. */
  request: Request;
  readFile: (path: string) => Promise<string>;
  now: () => number;
  log: Logger;
}

export function createTokenSource(options: TokenSourceOptions): TokenSource {
  const { config, jobId, request, readFile, now, log } = options;
  /** A token this client renewed itself (newer than the configured one). */
  let renewed: string | undefined;
  let renewal: Promise<void> | undefined;
  let canRenew = true;
  /** The token the backend last refused to renew: not asked again (a rotated one may be). */
  let refused: string | undefined;

  const laterOf = (t: string): string =>
    renewed !== undefined && (expiryOf(renewed) ?? 0) > (expiryOf(t) ?? 0) ? renewed : t;

  async function configured(): Promise<string> {
    if (config.tokenFile !== undefined) {
      try {
        const t = (await readFile(config.tokenFile)).trim();
        if (t !== "") return t;
      } catch (error) {
        if (config.token === undefined)
          throw new AgentError("CALLBACK_FAILED", `cannot read CALLBACK_TOKEN_FILE ${config.tokenFile}`, {
            cause: error,
          });
      }
    }
    if (config.token !== undefined) return config.token.reveal();
    throw new AgentError("CALLBACK_FAILED", `CALLBACK_TOKEN_FILE ${config.tokenFile ?? ""} is empty`);
  }

  async function renew(current: string): Promise<void> {
    try {
      const res = await request(tokenPath(jobId), { jwt: current, body: "{}" });
      const fresh = res.status === 200 ? (parseJson(res.body) as { token?: unknown } | undefined)?.token : undefined;
      if (typeof fresh === "string" && fresh.split(".").length === 3) {
        renewed = fresh;
        log.info({ expires_at: new Date((expiryOf(fresh) ?? 0) * 1000).toISOString() }, "callback token renewed");
        return;
      }
      if (res.status === 404 || res.status === 405)
        canRenew = false; // a backend that does not renew
      else if (res.status === 401 || res.status === 403 || res.status === 409) refused = current;
      log.warn(
        { code: "CALLBACK_REJECTED", status: res.status, reason: errorCodeOf(res.body) },
        "callback token renewal refused",
      );
    } catch (error) {
      log.warn({ code: "CALLBACK_FAILED", err: describeFailure(error) }, "callback token renewal failed; will retry");
    }
  }

  /** The best token now; renewed first when `due` says so of it (one renewal at a time). */
  async function best(due: (token: string) => boolean): Promise<string> {
    const token = laterOf(await configured());
    if (!canRenew || token === refused || !due(token)) return token;
    renewal ??= renew(token).finally(() => (renewal = undefined));
    await renewal;
    return laterOf(token);
  }

  return {
    current: () => best((t) => dueForRenewal(t, now())),
    afterRejection(used, code) {
      const expired = code === "token_expired" || (code === undefined && (expiryOf(used) ?? Infinity) * 1000 <= now());
      return best((t) => (expired && t === used) || dueForRenewal(t, now()));
    },
  };
}

/** `iat` and `exp` of a JWT (seconds), read without verifying it: only to know when to renew. */
function timesOf(jwt: string): { iat?: number; exp?: number } {
  const payload = jwt.split(".")[1];
  if (payload === undefined) return {};
  try {
    const { iat, exp } = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
    return {
      ...(typeof iat === "number" && { iat }),
      ...(typeof exp === "number" && { exp }),
    };
  } catch {
    return {};
  }
}

/** `exp` of a JWT (seconds); undefined when absent or unreadable. */
export function expiryOf(jwt: string): number | undefined {
  return timesOf(jwt).exp;
}

/** Whether a token is in the last quarter of its life (`iat` to `exp`), or past it. */
export function dueForRenewal(jwt: string, nowMs: number): boolean {
  const { iat, exp } = timesOf(jwt);
  if (exp === undefined) return false;
  const life = iat !== undefined && iat < exp ? exp - iat : 24 * 3600;
  return exp * 1000 - nowMs < (life * 1000) / 4;
}
