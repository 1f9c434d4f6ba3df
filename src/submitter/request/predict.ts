/**
 * A predict job (`predict` in a request, `--predict` on the command line): the model it predicts with and, optionally,
 * where its predictions go. The agent runs `--mode predict` with MODEL_JOB_ID or MODEL_URI (docs/run.md).
 */
import {
  MODEL_JOB_ID_PATTERN,
  MODEL_URI_PATTERN,
  PREDICTIONS_URI_PATTERN,
  namesModelUri,
} from "../../config/predict.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { PredictSpec } from "../spec.ts";
import type { Obj, Reader } from "./reader.ts";

/**
 * `predict: "42"` or `predict: "s3://bucket/key"` (a job id or a model URI, as `--predict` gives it), or
 * `predict: {model_job_id | model_uri, predictions_uri?}`.
 */
export function readPredict(r: Reader, req: Obj): PredictSpec | undefined {
  const got = r.pick(req, ["predict"]);
  if (got === undefined) return undefined;
  if (typeof got.value === "string" || typeof got.value === "number") {
    const model = String(got.value).trim();
    if (namesModelUri(model)) return modelUri(r, got.field, model);
    if (!MODEL_JOB_ID_PATTERN.test(model)) {
      r.problem(
        got.field,
        `must be a job id (letters, digits, '.', '_', '-') or an s3:// model URI, got ${describe(got.value)}`,
      );
      return undefined;
    }
    return { modelJobId: model };
  }
  if (!isRecord(got.value)) {
    r.problem(
      got.field,
      `must be a job id, an s3:// model URI, or an object {model_job_id | model_uri, predictions_uri}, got ${describe(got.value)}`,
    );
    return undefined;
  }
  const p = got.field;
  const jobId = r.string(got.value, ["model_job_id", "modelJobId"], `${p}.`);
  const uri = r.string(got.value, ["model_uri", "modelUri"], `${p}.`);
  const out = r.string(got.value, ["predictions_uri", "predictionsUri"], `${p}.`);
  if (jobId !== undefined && !MODEL_JOB_ID_PATTERN.test(jobId.value))
    r.problem(jobId.field, `must be a job id (letters, digits, '.', '_', '-'), got ${describe(jobId.value)}`);
  if (jobId === undefined && uri === undefined)
    r.problem(p, "must name the model: model_job_id (a job's latest checkpoint) or model_uri (s3://bucket/key)");
  if (jobId !== undefined && uri !== undefined)
    r.problem(p, "model_job_id and model_uri both name a model: give one of them");
  if (out !== undefined && !PREDICTIONS_URI_PATTERN.test(out.value))
    r.problem(out.field, `must be an s3:// (or file://) URI, got ${describe(out.value)}`);
  const model = uri === undefined ? { modelJobId: jobId?.value } : modelUri(r, uri.field, uri.value);
  return {
    ...(model?.modelJobId === undefined ? {} : { modelJobId: model.modelJobId }),
    ...(model?.modelUri === undefined ? {} : { modelUri: model.modelUri }),
    ...(out === undefined ? {} : { predictionsUri: out.value }),
  };
}

function modelUri(r: Reader, field: string, uri: string): PredictSpec | undefined {
  if (!MODEL_URI_PATTERN.test(uri)) {
    r.problem(
      field,
      `must be s3://bucket/key (a checkpoint object, or a checkpoint root ending in '/'), got ${describe(uri)}`,
    );
    return undefined;
  }
  return { modelUri: uri };
}
