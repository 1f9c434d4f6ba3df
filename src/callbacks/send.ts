/**
 * One callback request: its headers (bearer token, Idempotency-Key, traceparent), its bounds (the request
 * timeout, the client's stop, an optional caller's bound) and what its answer means: delivered, worth another
 * attempt, final, or (a 401) worth one more try with a fresher token.
 */
import type { Logger } from "pino";
import { parseRetryAfter } from "../retry/index.ts";
import type { TokenSource } from "./token.ts";
import type { PostResult, Transport } from "./transport.ts";

/** A failed callback response. */
export class CallbackHttpError extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  /** The backend's error code (`{"error": {"code"}}`), when it gave one. */
  readonly code: string | undefined;
  constructor(status: number, retryAfterMs: number | undefined, code?: string, reason?: string) {
    super(`backend answered HTTP ${status}${code === undefined ? "" : ` (${code}${reason ? `: ${reason}` : ""})`}`);
    this.name = "CallbackHttpError";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.code = code;
  }
}

/** What an answer's status means to the client. */
export type Outcome = "delivered" | "retry" | "renew" | "final";

/** 2xx delivered; 5xx, 429 and 408 worth another attempt; 401 worth a fresher token; anything else final. */
export function outcomeOf(status: number): Outcome {
  if (status >= 200 && status < 300) return "delivered";
  if (status >= 500 || status === 429 || status === 408) return "retry";
  return status === 401 ? "renew" : "final";
}

/** Whether a failure is worth another attempt: 5xx, 429, 408, timeouts and network errors. */
export function isRetryableCallbackError(error: unknown): boolean {
  return error instanceof CallbackHttpError ? outcomeOf(error.status) === "retry" : true;
}

/** Aborts the requests in flight: for good when the client closes, or once when a flush is abandoned. */
export class Stop {
  #controller = new AbortController();
  get signal(): AbortSignal {
    return this.#controller.signal;
  }
  abort(reason: Error): void {
    this.#controller.abort(reason);
  }
  /** Lets later requests run again (after the abandoned ones settled: their retries see the abort). */
  reset(): void {
    this.#controller = new AbortController();
  }
}

export interface RequestOptions {
  /** The bearer token. */
  jwt: string;
  body: string;
  /** The report's Idempotency-Key (the same on every attempt of one report). */
  key?: string;
  /** Aborts the request besides its timeout and the client's stop (`done`'s deadline). */
  bound?: AbortSignal;
}

/** POSTs JSON to a path under the backend's base URL; the answer's body is read. */
export type Request = (path: string, options: RequestOptions) => Promise<PostResult>;

export function createRequest(options: {
  /** The backend's base URL (ends with "/": a base with a path keeps it). */
  base: URL;
  transport: Transport;
  traceparent: string;
  timeoutMs: number;
  stop: Stop;
}): Request {
  const { base, transport, traceparent, timeoutMs, stop } = options;
  return (path, { jwt, body, key, bound }) =>
    transport.post(new URL(path.slice(1), base).href, {
      headers: {
        authorization: `Bearer ${jwt}`,
        "content-type": "application/json",
        ...(key !== undefined && { "idempotency-key": key }),
        traceparent,
      },
      body,
      signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), stop.signal, ...(bound === undefined ? [] : [bound])]),
      readBody: true,
    });
}

/** Sends one report (or batch, or `done`) once: resolves on 2xx, throws CallbackHttpError otherwise. */
export type Send = (path: string, body: string, key: string, bound?: AbortSignal) => Promise<PostResult>;

export function createSend(options: {
  request: Request;
  tokens: TokenSource;
  now: () => number;
  log: Logger;
  /** Called for each request sent (the stats' `requests`). */
  onRequest: () => void;
}): Send {
  const { request, tokens, now, log, onRequest } = options;
  return async (path, body, key, bound) => {
    const send = (jwt: string): Promise<PostResult> => {
      onRequest();
      return request(path, { jwt, body, key, ...(bound !== undefined && { bound }) });
    };
    const used = await tokens.current();
    let res = await send(used);
    if (outcomeOf(res.status) === "renew") {
      // Rotated, or expired while queued or in flight: a fresher token makes this 401 not final.
      const fresh = await tokens.afterRejection(used, errorCodeOf(res.body));
      if (fresh !== used) {
        log.debug("callback answered 401; sending again with a fresh token");
        res = await send(fresh);
      }
    }
    if (outcomeOf(res.status) === "delivered") return res;
    const ra = res.headers["retry-after"];
    const error = parseJson(res.body) as { error?: { code?: unknown; message?: unknown } } | undefined;
    const reason = typeof error?.error?.message === "string" ? error.error.message.slice(0, 200) : undefined;
    throw new CallbackHttpError(
      res.status,
      parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, now()),
      errorCodeOf(res.body),
      reason,
    );
  };
}

/** A JSON answer's value; undefined when empty or not JSON. */
export function parseJson(text: string | undefined): unknown {
  if (text === undefined || text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The error code of a backend's `{"error": {"code"}}` answer. */
export function errorCodeOf(text: string | undefined): string | undefined {
  const code = (parseJson(text) as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === "string" ? code : undefined;
}

/** A failure in a few words for a log line: an HTTP status or an error's name and codes (never its message). */
export function describeFailure(error: unknown): string {
  if (error instanceof CallbackHttpError) return `HTTP ${error.status}`;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const cause = (error as { cause?: { code?: unknown } }).cause;
    return [
      error.name,
      typeof code === "string" ? code : undefined,
      typeof cause?.code === "string" ? cause.code : undefined,
    ]
      .filter(Boolean)
      .join(" ");
  }
  return String(error);
}
