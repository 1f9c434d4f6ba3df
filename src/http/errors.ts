/**
 * The error an HTTP handler throws to answer with a status: the stub's and `trainjob serve`'s handlers throw it,
 * their request listeners render it in their own wire shape. `httpErrorOf` turns the project's AgentError into
 * one through the single code-to-status table.
 */
import { isAgentError, type ErrorCode } from "../errors/index.ts";

export class HttpError extends Error {
  readonly status: number;
  /** Machine-readable reason (`body_too_large`, `job_not_found`); clients branch on it. */
  readonly code: string;
  /** The request field at fault (`job_id`, `Idempotency-Key`), when one is. */
  readonly field: string | undefined;
  /** Headers the answer carries (`www-authenticate`, `allow`, `retry-after`). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { field?: string; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.field = options.field;
    this.headers = options.headers ?? {};
  }
}

/**
 * The HTTP status for each error code an API answers with its own status; any other code is a 500. One table for
 * the backend stub (JOB_*, JOURNAL_FAILED) and `trainjob serve` (SPEC_INVALID as FastAPI's 422, Kubernetes and
 * backend failures as 502).
 */
export const HTTP_STATUS_FOR_CODE: Readonly<Partial<Record<ErrorCode, number>>> = {
  USAGE: 400,
  JOB_INVALID: 400,
  SPEC_INVALID: 422,
  JOB_NOT_FOUND: 404,
  K8S_NOT_FOUND: 404,
  JOB_CONFLICT: 409,
  K8S_CONFLICT: 409,
  K8S_FAILED: 502,
  CALLBACK_REJECTED: 502,
  CALLBACK_FAILED: 502,
  JOURNAL_FAILED: 503,
};

/** 500 for a code the table does not name. */
export function httpStatusFor(code: ErrorCode): number {
  return HTTP_STATUS_FOR_CODE[code] ?? 500;
}

/**
 * An HttpError as is; an AgentError whose code the table names as an HttpError (its status, the code, its
 * `details.field`); undefined for anything else, which is the server's own failure (a 500 it logs).
 */
export function httpErrorOf(error: unknown): HttpError | undefined {
  if (error instanceof HttpError) return error;
  if (!isAgentError(error)) return undefined;
  const status = HTTP_STATUS_FOR_CODE[error.code];
  if (status === undefined) return undefined;
  const field = typeof error.details?.field === "string" ? error.details.field : undefined;
  return new HttpError(status, error.code, error.message, {
    ...(field === undefined ? {} : { field }),
    cause: error,
  });
}

/** 405 naming the methods the path takes. */
export function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, "method_not_allowed", `method not allowed; use ${allow}`, { headers: { allow } });
}
