/**
 * One MLflow REST request at a time, once: the auth header MLflow's clients send (Basic from
 * MLFLOW_TRACKING_USERNAME/PASSWORD, else Bearer MLFLOW_TRACKING_TOKEN), the JSON answer, and a failure as an
 * MlflowHttpError carrying MLflow's `error_code`. Retries are the mirror's (the project's retry policy).
 */
import { parseJson } from "../callbacks/send.ts";
import type { PostResult, Transport } from "../callbacks/transport.ts";
import type { MlflowConfig } from "../config/agent.ts";
import { isRecord } from "../internal/values.ts";
import { parseRetryAfter } from "../retry/index.ts";
import { MLFLOW_API_PREFIX } from "./rest.ts";

/** A non-2xx answer from the tracking server. */
export class MlflowHttpError extends Error {
  /** The endpoint under /api/2.0/mlflow/ (`runs/create`). */
  readonly path: string;
  readonly status: number;
  /** MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, `INVALID_PARAMETER_VALUE`...), when the answer had one. */
  readonly errorCode: string | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(
    path: string,
    status: number,
    errorCode: string | undefined,
    detail: string | undefined,
    retryAfterMs?: number,
  ) {
    super(
      `MLflow ${path} answered HTTP ${status}${errorCode === undefined ? "" : ` ${errorCode}`}${detail ? `: ${detail}` : ""}`,
    );
    this.name = "MlflowHttpError";
    this.path = path;
    this.status = status;
    this.errorCode = errorCode;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Worth another attempt: 5xx, 429, 408 and anything that is not an answer (refused, reset, timed out). */
export function isRetryableMlflowError(error: unknown): boolean {
  if (!(error instanceof MlflowHttpError)) return true;
  return error.status >= 500 || error.status === 429 || error.status === 408;
}

export interface MlflowClient {
  /** GET `{prefix}{path}?{query}`; the parsed answer. */
  get(path: string, query: Record<string, string>, signal: AbortSignal): Promise<Record<string, unknown>>;
  /** POST `{prefix}{path}` with a JSON body; the parsed answer. */
  post(path: string, body: unknown, signal: AbortSignal): Promise<Record<string, unknown>>;
}

export function createMlflowClient(options: {
  config: MlflowConfig;
  transport: Transport;
  now?: () => number;
}): MlflowClient {
  const { config, transport } = options;
  const now = options.now ?? Date.now;
  const base = new URL(config.trackingUri.href.endsWith("/") ? config.trackingUri.href : `${config.trackingUri.href}/`);
  const headers: Record<string, string> = { accept: "application/json" };
  const auth = authorization(config);
  if (auth !== undefined) headers.authorization = auth;
  const url = (path: string): URL => new URL(`${MLFLOW_API_PREFIX}${path}`, base);
  const answer = (path: string, res: PostResult): Record<string, unknown> => {
    const body = parseJson(res.body);
    const parsed = isRecord(body) ? body : undefined;
    if (res.status >= 200 && res.status < 300) return parsed ?? {};
    const code = typeof parsed?.error_code === "string" ? parsed.error_code : undefined;
    const message = typeof parsed?.message === "string" ? parsed.message.slice(0, 300) : undefined;
    const ra = res.headers["retry-after"];
    throw new MlflowHttpError(path, res.status, code, message, parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, now()));
  };
  return {
    async get(path, query, signal) {
      const u = url(path);
      for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
      return answer(path, await transport.get(u.href, { headers, signal }));
    },
    async post(path, body, signal) {
      const res = await transport.post(url(path).href, {
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal,
        readBody: true,
      });
      return answer(path, res);
    },
  };
}

/** Basic wins over the token when both are set, as in MLflow's own REST client. */
function authorization(config: MlflowConfig): string | undefined {
  if (config.username !== undefined && config.password !== undefined)
    return `Basic ${Buffer.from(`${config.username}:${config.password.reveal()}`).toString("base64")}`;
  if (config.token !== undefined) return `Bearer ${config.token.reveal()}`;
  return undefined;
}
