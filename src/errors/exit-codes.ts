import type { ErrorCode } from "./agent-error.ts";

/**
 * Exit codes of the agent's own failures (before or after the child ran). They sit in 64-78 (BSD sysexits
 * style) so they never collide with a child's usual codes (0-2) nor with 128+signal. The README mirrors this table.
 */
export const EXIT_CODES = {
  USAGE: 64, // bad command line
  CONFIG_INVALID: 78, // bad environment / configuration (EX_CONFIG)
  ENV_INVALID: 78,
  PLUGIN_INVALID: 78,
  PLUGIN_NOT_FOUND: 78,
  PLUGIN_HOOK_FAILED: 70,
  STALLED: 75, // EX_TEMPFAIL: the watchdog ended a job that stopped progressing; a restart may succeed
  CHILD_SPAWN_FAILED: 127, // like a shell: command not found / not executable
  DATASET_NOT_FOUND: 66, // EX_NOINPUT
  DATASET_CORRUPT: 65, // EX_DATAERR
  DATASET_CHANGED: 75, // EX_TEMPFAIL: retrying the pod may succeed
  DATASET_TOO_LARGE: 65,
  ARCHIVE_UNSAFE_PATH: 65,
  ARCHIVE_UNSAFE_ENTRY: 65,
  STORAGE_UNAVAILABLE: 69, // EX_UNAVAILABLE: the store cannot be reached
  STORAGE_DENIED: 77, // EX_NOPERM: the store refused the credentials (HTTP 401/403)
  STORAGE_FAILED: 74, // EX_IOERR
  CHECKPOINT_RESTORE_FAILED: 74,
  CHECKPOINT_UPLOAD_FAILED: 74,
  MODEL_NOT_FOUND: 66, // predict: no checkpoint where MODEL_JOB_ID / MODEL_URI point (EX_NOINPUT)
  PREDICTIONS_EMPTY: 65, // predict: the command succeeded but wrote nothing to PREDICTIONS_DIR (EX_DATAERR)
  PREDICTIONS_UPLOAD_FAILED: 74,
  GIT_NOT_INSTALLED: 69, // EX_UNAVAILABLE: sysexits' "a support program does not exist"
  GIT_FETCH_FAILED: 69, // the repository cannot be reached, or refused the credentials
  GIT_REVISION_NOT_FOUND: 66, // EX_NOINPUT, like a missing dataset
  GIT_SUBDIR_NOT_FOUND: 66,
  INSTALL_FAILED: 73, // EX_CANTCREAT: `trainer-agent install` could not write its files
  SPEC_INVALID: 65, // trainjob: the job spec is invalid (EX_DATAERR)
  K8S_NOT_FOUND: 66, // trainjob: no such TrainJob or pod (EX_NOINPUT)
  K8S_CONFLICT: 75, // trainjob: a different object of that name exists (EX_TEMPFAIL)
  K8S_FAILED: 69, // trainjob: the Kubernetes API failed or refused (EX_UNAVAILABLE)
  INTERNAL: 70, // EX_SOFTWARE
} as const satisfies Partial<Record<ErrorCode, number>>;

/** Exit code for an agent-own failure with this code (70 when the table has none). */
export function exitCodeFor(code: ErrorCode): number {
  return (EXIT_CODES as Partial<Record<ErrorCode, number>>)[code] ?? 70;
}
