/**
 * The run's storage: before the child, restore the latest checkpoint and pull the dataset (in parallel), then
 * watch CHECKPOINT_DIR; after it, the final checkpoint sync, bounded.
 */
import { mkdir } from "node:fs/promises";
import type { AgentConfig } from "../config/index.ts";
import type { StoredCheckpoint } from "../contract/callbacks.ts";
import { AgentError, isAgentError, messageOf, type ErrorCode } from "../errors/index.ts";
import type { CallbackClient } from "../callbacks/client.ts";
import type { Logger } from "../log/logger.ts";
import { significant } from "../log/units.ts";
import type { CheckpointSync, DatasetResult, RestoredCheckpoint, Storage } from "../storage/types.ts";

export interface PreparedStorage {
  sync: CheckpointSync;
  /** Local path of the restored checkpoint (the child's RESUME_FROM). */
  resumeFrom: string | undefined;
  /** What is stored so far: the sync's uploads, then the final sync's list. */
  checkpoints: StoredCheckpoint[];
}

/** Restore and pull in parallel, then watch CHECKPOINT_DIR. */
export async function prepareStorage(input: {
  storage: Storage;
  log: Logger;
  callbacks: CallbackClient | undefined;
  signal: AbortSignal;
}): Promise<PreparedStorage> {
  const { storage, log, callbacks, signal } = input;
  const [restored, dataset] = await Promise.all([
    storage.restoreLatestCheckpoint({ signal }),
    storage.pullDataset({ signal }),
  ]);
  if (restored !== null) {
    log.debug({ key: restored.key, path: restored.path, bytes: restored.bytes }, "RESUME_FROM set");
    announceRestored("checkpoint_restored", restored, callbacks);
  }
  if (dataset !== null) announceDataset(dataset, callbacks);
  const checkpoints: StoredCheckpoint[] = [];
  const sync = storage.startCheckpointSync({
    onUploaded: (c) => {
      checkpoints.push(c);
      callbacks?.event("checkpoint_uploaded", c.key, { key: c.key, bytes: c.bytes });
    },
  });
  return { sync, resumeFrom: restored?.path, checkpoints };
}

/** A restored checkpoint (a resume's, or a predict run's model), told to the backend. */
export function announceRestored(
  type: "checkpoint_restored" | "model_restored",
  restored: RestoredCheckpoint,
  callbacks: CallbackClient | undefined,
): void {
  callbacks?.event(type, restored.key, {
    key: restored.key,
    path: restored.path,
    bytes: restored.bytes,
    files: restored.files,
  });
}

/** The pulled dataset, told to the backend as the `dataset_ready` event. */
export function announceDataset(dataset: DatasetResult, callbacks: CallbackClient | undefined): void {
  const mbPerS = dataset.seconds > 0 ? dataset.bytes / 1e6 / dataset.seconds : undefined;
  // The storage layer has logged "dataset ready" with its rate; the event carries it to the backend.
  callbacks?.event("dataset_ready", dataset.source, {
    source: dataset.source,
    dir: dataset.dir,
    bytes: dataset.bytes,
    files: dataset.files,
    seconds: dataset.seconds,
    skipped: dataset.skipped,
    ...(mbPerS !== undefined && { mb_per_s: significant(mbPerS) }),
  });
}

/**
 * An upload after the child (final checkpoint sync, predictions), bounded by FINAL_SYNC_TIMEOUT_SECONDS, or
 * TERMINATION_SYNC_SECONDS when the agent was told to stop (the pod's grace is running), so that an unreachable
 * store cannot eat the grace and leave no `done` behind. A failure is seen by `onError` first, then thrown as an
 * AgentError: its own, or `code` saying it was late or why it failed.
 */
export async function afterChild<T>(
  config: AgentConfig,
  cancelled: boolean,
  failure: { code: ErrorCode; late: string; failed: string },
  upload: (deadline: AbortSignal) => Promise<T>,
  onError?: (error: unknown) => void,
): Promise<T> {
  const [seconds, variable] = cancelled
    ? [config.terminationSyncSeconds, "TERMINATION_SYNC_SECONDS"]
    : [config.finalSyncTimeoutSeconds, "FINAL_SYNC_TIMEOUT_SECONDS"];
  const deadline = AbortSignal.timeout(seconds * 1000);
  try {
    return await upload(deadline);
  } catch (error) {
    onError?.(error);
    if (deadline.aborted)
      throw new AgentError(failure.code, `${failure.late} did not finish within ${seconds} s (${variable})`, {
        cause: error,
      });
    throw isAgentError(error)
      ? error
      : new AgentError(failure.code, `${failure.failed} failed: ${messageOf(error)}`, { cause: error });
  }
}

/**
 * Whatever happened to the child, keep its work: the final sync, bounded so that an unreachable store cannot eat
 * the pod's whole grace period and leave no `done` behind. `prepared.checkpoints` becomes every stored checkpoint,
 * also on failure when the sync says which made it (`done` still lists them).
 */
export async function finalSync(prepared: PreparedStorage, config: AgentConfig, cancelled: boolean): Promise<void> {
  prepared.checkpoints = await afterChild(
    config,
    cancelled,
    { code: "CHECKPOINT_UPLOAD_FAILED", late: "final checkpoint sync", failed: "final checkpoint upload" },
    (deadline) => prepared.sync.finalSync(deadline),
    (error) => {
      const stored = isAgentError(error) ? error.details?.stored : undefined;
      if (Array.isArray(stored)) prepared.checkpoints = stored as StoredCheckpoint[];
    },
  );
}

/**
 * The store, opened; CHECKPOINT_DIR exists from here on, as a training script expects on a fresh pod (a read-only
 * mount is the script's to report, not ours).
 */
export async function openStorage(
  config: AgentConfig,
  logger: Logger,
  log: Logger,
): Promise<Storage & { close?(): void }> {
  await mkdir(config.storage.checkpointDir, { recursive: true }).catch((error: unknown) =>
    log.warn({ dir: config.storage.checkpointDir, err: messageOf(error) }, "cannot create CHECKPOINT_DIR"),
  );
  let create;
  try {
    create = (await import("../storage/index.ts")).createStorage;
  } catch (error) {
    throw new AgentError(
      "STORAGE_UNAVAILABLE",
      `storage is configured (STORAGE_TYPE=${config.storage.type}) but the storage module could not be loaded: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return create(config, { logger: logger.child({ component: "storage" }) });
}
