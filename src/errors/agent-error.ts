/** Stable error codes: branch on `code`, never on message text. */
export const ERROR_CODES = [
  "CONFIG_INVALID",
  "USAGE",
  "ENV_INVALID",
  "PLUGIN_INVALID",
  "PLUGIN_NOT_FOUND",
  "PLUGIN_HOOK_FAILED",
  "CHILD_SPAWN_FAILED",
  "CHILD_FAILED",
  "STALLED",
  "CALLBACK_REJECTED",
  "CALLBACK_FAILED",
  "STORAGE_UNAVAILABLE",
  "STORAGE_DENIED",
  "STORAGE_FAILED",
  "DATASET_NOT_FOUND",
  "DATASET_CORRUPT",
  "DATASET_CHANGED",
  "DATASET_TOO_LARGE",
  "ARCHIVE_UNSAFE_PATH",
  "ARCHIVE_UNSAFE_ENTRY",
  "CHECKPOINT_RESTORE_FAILED",
  "CHECKPOINT_UPLOAD_FAILED",
  "MODEL_NOT_FOUND",
  "PREDICTIONS_EMPTY",
  "PREDICTIONS_UPLOAD_FAILED",
  "GIT_NOT_INSTALLED",
  "GIT_FETCH_FAILED",
  "GIT_REVISION_NOT_FOUND",
  "GIT_SUBDIR_NOT_FOUND",
  "SPEC_INVALID",
  "K8S_CONFLICT",
  "JOB_INVALID",
  "JOB_NOT_FOUND",
  "JOB_CONFLICT",
  "JOURNAL_FAILED",
  "K8S_NOT_FOUND",
  "K8S_FAILED",
  "INSTALL_FAILED",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** The project's one error family: a stable `code`, a message safe to print (no secrets), an optional `cause`. */
export class AgentError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AgentError";
    this.code = code;
    this.details = options.details;
  }
}

export function isAgentError(error: unknown, code?: ErrorCode): error is AgentError {
  return error instanceof AgentError && (code === undefined || error.code === code);
}
