/**
 * The MLflow REST API 2.0 requests the mirror makes, as MLflow documents them (mlflow.org/docs/latest/rest-api.html;
 * the same shapes in Databricks' "experiments/v1" reference):
 *   GET  experiments/get-by-name?experiment_name=  -> {experiment: {experiment_id, lifecycle_stage}};
 *        404 RESOURCE_DOES_NOT_EXIST
 *   POST experiments/create {name}                  -> {experiment_id}; 400 RESOURCE_ALREADY_EXISTS
 *   POST runs/create {experiment_id, run_name, start_time (int64 ms), tags [{key, value}]} -> {run: {info: {run_id}}}
 *   POST runs/log-batch {run_id, metrics [{key, value (double), timestamp (int64 ms), step (int64)}],
 *        params [{key, value (string)}], tags [{key, value}]}
 *   POST runs/update {run_id, status (RUNNING|SCHEDULED|FINISHED|FAILED|KILLED), end_time (int64 ms)}
 * All paths under `{tracking uri}/api/2.0/mlflow/`; POST bodies are application/json; errors answer
 * `{error_code, message}`. log-batch takes at most 1000 metrics, 100 params, 100 tags and 1000 entities in all per
 * request (and 1 MB); a param, once written, cannot change (the same value again is allowed).
 */

export const MLFLOW_API_PREFIX = "api/2.0/mlflow/";

/** runs/log-batch limits per request. */
export const LOG_BATCH_LIMITS = { metrics: 1000, params: 100, tags: 100, total: 1000 } as const;

/**
 * Key lengths every MLflow backend store takes (250), param values (500: MLflow 1.x's limit, below 2.x's 6000) and
 * tag values (5000), so one long value never turns into a 400 that stops the mirror.
 */
export const VALUE_LIMITS = { key: 250, paramValue: 500, tagValue: 5000 } as const;

/**
 * MLflow's rule for metric, param and tag names (mlflow/utils/validation.py): letters, digits, `_ - . /` and spaces,
 * no `..` path part. Newer servers also take `:`; older ones do not, so it is left out.
 */
const NAME = /^[\w\-./ ]+$/;

export function isValidKey(key: string): boolean {
  return key.length >= 1 && key.length <= VALUE_LIMITS.key && NAME.test(key) && !key.split("/").includes("..");
}

export interface Metric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}
export interface KeyValue {
  key: string;
  value: string;
}

export type RunStatus = "RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED";

export interface LogBatchBody {
  run_id: string;
  metrics?: Metric[];
  params?: KeyValue[];
  tags?: KeyValue[];
}

/**
 * Splits metrics, params and tags into log-batch bodies within LOG_BATCH_LIMITS, in the given order (params and
 * tags first, so a run's description arrives before its numbers).
 */
export function logBatchBodies(
  runId: string,
  entities: { metrics?: readonly Metric[]; params?: readonly KeyValue[]; tags?: readonly KeyValue[] },
): LogBatchBody[] {
  const params = [...(entities.params ?? [])];
  const tags = [...(entities.tags ?? [])];
  const metrics = [...(entities.metrics ?? [])];
  const bodies: LogBatchBody[] = [];
  while (params.length > 0 || tags.length > 0 || metrics.length > 0) {
    const p = params.splice(0, LOG_BATCH_LIMITS.params);
    const t = tags.splice(0, LOG_BATCH_LIMITS.tags);
    const m = metrics.splice(0, Math.min(LOG_BATCH_LIMITS.metrics, LOG_BATCH_LIMITS.total - p.length - t.length));
    bodies.push({
      run_id: runId,
      ...(m.length > 0 && { metrics: m }),
      ...(p.length > 0 && { params: p }),
      ...(t.length > 0 && { tags: t }),
    });
  }
  return bodies;
}

/** A param or tag list from a record: invalid keys left out (counted by the caller), values cut to the limit. */
export function keyValues(record: Readonly<Record<string, string | undefined>>, maxValue: number): KeyValue[] {
  return Object.entries(record)
    .filter((e): e is [string, string] => e[1] !== undefined && isValidKey(e[0]))
    .map(([key, value]) => ({ key, value: value.length <= maxValue ? value : value.slice(0, maxValue) }));
}
