/**
 * The predict run's storage steps (`trainer-agent run --mode predict`), in place of a training's resume and
 * checkpoint sync: before the child, the model restored and the dataset pulled (in parallel); after a clean exit,
 * PREDICTIONS_DIR uploaded, bounded like the final checkpoint sync. Everything else (child, reports, heartbeats,
 * signals, done) is the training run's.
 */
import { mkdir } from "node:fs/promises";
import type { CallbackClient } from "../callbacks/client.ts";
import { requirePredict, type AgentConfig } from "../config/index.ts";
import type { StoredCheckpoint } from "../contract/callbacks.ts";
import { AgentError, messageOf } from "../errors/index.ts";
import type { Logger } from "../log/logger.ts";
import type { Storage } from "../storage/types.ts";
import { afterChild, announceDataset, announceRestored } from "./storage.ts";

export interface PreparedModel {
  /** Local path of the restored model: the child's MODEL_PATH. */
  modelPath: string;
}

/** The model and the dataset, in parallel; PREDICTIONS_DIR made (and emptied of nothing: the user's to manage). */
export async function prepareModel(input: {
  config: AgentConfig;
  storage: Storage;
  log: Logger;
  callbacks: CallbackClient | undefined;
  signal: AbortSignal;
}): Promise<PreparedModel> {
  const { config, storage, log, callbacks, signal } = input;
  const dir = requirePredict(config).predictionsDir;
  await mkdir(dir, { recursive: true }).catch((error: unknown) => {
    throw new AgentError("CONFIG_INVALID", `PREDICTIONS_DIR ${dir} cannot be created: ${messageOf(error)}`, {
      cause: error,
    });
  });
  const [model, dataset] = await Promise.all([storage.restoreModel({ signal }), storage.pullDataset({ signal })]);
  log.info({ key: model.key, path: model.path, bytes: model.bytes }, "model restored; MODEL_PATH set");
  announceRestored("model_restored", model, callbacks);
  if (dataset !== null) announceDataset(dataset, callbacks);
  return { modelPath: model.path };
}

/**
 * After a clean exit, PREDICTIONS_DIR to the bucket. Node rank 0 must have written something: a predict.py that
 * wrote elsewhere would otherwise end `succeeded` with no predictions.
 */
export async function uploadPredictions(
  storage: Storage,
  config: AgentConfig,
  log: Logger,
  callbacks: CallbackClient | undefined,
  cancelled: boolean,
): Promise<StoredCheckpoint[]> {
  const what = "the predictions upload";
  const stored = await afterChild(
    config,
    cancelled,
    { code: "PREDICTIONS_UPLOAD_FAILED", late: what, failed: what },
    (deadline) => storage.uploadPredictions({ signal: deadline }),
  );
  const dir = requirePredict(config).predictionsDir;
  if (stored.manifest === undefined) {
    if (config.distributed.nodeRank === 0)
      throw new AgentError(
        "PREDICTIONS_EMPTY",
        `the command exited 0 but wrote nothing to PREDICTIONS_DIR (${dir}): no predictions to store`,
      );
    log.info({ dir }, "PREDICTIONS_DIR is empty on this node: nothing to upload");
    return [];
  }
  const bytes = stored.objects.reduce((n, o) => n + o.bytes, 0);
  log.info({ location: stored.location, objects: stored.objects.length, bytes }, "predictions uploaded");
  callbacks?.event("predictions_uploaded", stored.location, {
    location: stored.location,
    manifest: stored.manifest,
    objects: stored.objects.length,
    bytes,
  });
  return stored.objects;
}
