/**
 * A predict run's variables (`trainer-agent run --mode predict`): which model, where the predictions go. Read only
 * in predict mode, beside the rest of the agent's configuration, so every bad one is listed with the others (78).
 */
import { dirsOverlap, readWorkDir } from "./dirs.ts";
import type { EnvReader } from "./parse.ts";

export const RUN_MODES = ["train", "predict"] as const;
export type RunMode = (typeof RUN_MODES)[number];

export interface PredictConfig {
  /** `MODEL_JOB_ID`: the job whose latest complete checkpoint is the model (its `checkpoints/job-{id}/`). */
  modelJobId: string | undefined;
  /**
   * `MODEL_URI`: an explicit model. Ending in `/`: a checkpoint root as the agent stores them (its newest complete
   * checkpoint, by its manifests); otherwise one object.
   */
  modelUri: string | undefined;
  /** `PREDICTIONS_DIR`: where the command writes; everything in it is uploaded after a clean exit. */
  predictionsDir: string;
  /** `PREDICTIONS_URI`: explicit destination, else `predictions/job-{JOB_ID}/` in the bucket (storage/predict). */
  predictionsUri: string | undefined;
}

// The submitter checks a request's `predict` with these same patterns, so a job it accepts is one the agent runs.
/** MODEL_JOB_ID: a job id, as its `checkpoints/job-{id}/` prefix holds it. */
export const MODEL_JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** MODEL_URI: a bucket and a key (an object, or a checkpoint root ending in `/`). */
export const MODEL_URI_PATTERN = /^(s3|file):\/\/[^/]+\/.+/;
/** PREDICTIONS_URI: a bucket, with or without a prefix. */
export const PREDICTIONS_URI_PATTERN = /^(s3|file):\/\/[^/]+/;

/**
 * Whether `--predict` (or a request's `predict: "..."`) names a model URI rather than a job id: by its scheme, so a
 * malformed URI is reported as a URI, not as a strange job id.
 */
export function namesModelUri(model: string): boolean {
  return /^(s3|file):\/\//.test(model);
}

/** The predict variables, problems pushed on `r`; `dirs` are DATASET_DIR and CHECKPOINT_DIR, already read. */
export function readPredict(
  r: EnvReader,
  env: Readonly<Record<string, string | undefined>>,
  known: { jobId: string | undefined; storageConfigured: boolean; datasetDir: string; checkpointDir: string },
): PredictConfig {
  const modelJobId = r.string("MODEL_JOB_ID");
  if (modelJobId !== undefined && !MODEL_JOB_ID_PATTERN.test(modelJobId))
    r.problem("MODEL_JOB_ID", "a job id (letters, digits, '.', '_', '-'; the job's checkpoints/job-{id}/)", modelJobId);
  const modelUri = r.string("MODEL_URI");
  if (modelUri !== undefined && !MODEL_URI_PATTERN.test(modelUri))
    r.problem(
      "MODEL_URI",
      "an s3://bucket/key URI (a checkpoint object, or a checkpoint root ending in '/')",
      modelUri,
    );
  if (modelJobId === undefined && modelUri === undefined)
    r.problems.push(
      "MODEL_JOB_ID or MODEL_URI must be set for a predict run (--mode predict): the trained model to predict with",
    );
  if (modelJobId !== undefined && modelUri !== undefined)
    r.problems.push("MODEL_JOB_ID and MODEL_URI both name a model: set one of them");

  const predictionsUri = r.string("PREDICTIONS_URI");
  if (predictionsUri !== undefined && !PREDICTIONS_URI_PATTERN.test(predictionsUri))
    r.problem("PREDICTIONS_URI", "an s3://bucket/prefix/ URI", predictionsUri);
  if (predictionsUri === undefined && known.jobId === undefined)
    r.problems.push(
      "JOB_ID or PREDICTIONS_URI must be set for a predict run: predictions go to predictions/job-{JOB_ID}/",
    );
  if (!known.storageConfigured)
    r.problems.push(
      "a predict run needs storage (S3_ENDPOINT and S3_BUCKET, or STORAGE_TYPE=file with STORAGE_PATH): " +
        "the model comes from it and the predictions go to it",
    );

  const predictionsDir = readWorkDir(r, env, "PREDICTIONS_DIR", "/workspace/predictions");
  for (const [name, dir] of [
    ["DATASET_DIR", known.datasetDir],
    ["CHECKPOINT_DIR", known.checkpointDir],
  ] as const)
    if (dirsOverlap(predictionsDir, dir))
      r.problems.push(
        `PREDICTIONS_DIR (${JSON.stringify(predictionsDir)}) and ${name} (${JSON.stringify(dir)}) must be separate ` +
          "folders, neither inside the other: everything in PREDICTIONS_DIR is uploaded as predictions",
      );
  return { modelJobId, modelUri, predictionsDir, predictionsUri };
}
