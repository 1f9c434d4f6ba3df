/** The run mirrored to an MLflow tracking server over its REST API (docs/run.md, "MLflow"). */
export { openMlflow, type AgentMlflow } from "./open.ts";
export { createMlflowMirror, MAX_QUEUED_METRICS, type MlflowMirror, type MirroredRun } from "./mirror.ts";
export { createMlflowClient, isRetryableMlflowError, MlflowHttpError, type MlflowClient } from "./client.ts";
export { LOG_BATCH_LIMITS, logBatchBodies, type LogBatchBody, type Metric, type RunStatus } from "./rest.ts";
