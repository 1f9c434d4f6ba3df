import { AgentError } from "../../errors/index.ts";

interface SdkLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** HTTP status of an SDK or network error, when there is one. */
export function statusOf(error: unknown): number | undefined {
  return (error as SdkLikeError | undefined)?.$metadata?.httpStatusCode;
}

export function isNotFound(error: unknown): boolean {
  const e = error as SdkLikeError | undefined;
  return statusOf(error) === 404 || e?.name === "NotFound" || e?.name === "NoSuchKey" || e?.code === "ENOENT";
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
]);

/** Network failures a re-request from the same byte can outlive: the store was reached and the socket broke. */
const RESUMABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE"]);

/** The system error code (ECONNRESET...) of an error or of its cause: the SDK wraps the socket's error. */
export function systemCodeOf(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: { code?: unknown } } | undefined;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === "string" ? code : undefined;
}

/** Whether a ranged read that failed with this error is worth re-requesting (not a refusal, not a missing host). */
export function isResumableNetworkError(error: unknown): boolean {
  if (!(error instanceof AgentError) || error.code !== "STORAGE_UNAVAILABLE") return false;
  const code = systemCodeOf(error.cause);
  return code !== undefined && RESUMABLE_CODES.has(code);
}

/**
 * Turns an SDK/network error into an AgentError whose message names the operation and object but never a
 * credential, signature or presigned URL (SDK messages are reduced to the error name and status).
 */
export function storageError(error: unknown, op: string, where: string): AgentError {
  if (error instanceof AgentError) return error;
  const e = (error ?? {}) as SdkLikeError;
  const status = statusOf(error);
  const name = e.name ?? "Error";
  const code = systemCodeOf(error);
  if (status === 412 || name === "PreconditionFailed")
    return new AgentError(
      "DATASET_CHANGED",
      `${where} changed while it was being read (${op}: ETag no longer matches)`,
      {
        cause: error,
      },
    );
  if (status === 401 || status === 403)
    return new AgentError(
      "STORAGE_DENIED",
      `${op} ${where} was refused (HTTP ${status} ${name}): check the access key, secret and bucket permissions`,
      { cause: error },
    );
  if (code !== undefined && NETWORK_CODES.has(code))
    return new AgentError("STORAGE_UNAVAILABLE", `${op} ${where} failed: ${code} (is the endpoint reachable?)`, {
      cause: error,
    });
  const detail = status === undefined ? (code ?? name) : `HTTP ${status} ${name}`;
  return new AgentError("STORAGE_FAILED", `${op} ${where} failed: ${detail}`, { cause: error });
}
