export { splitCommand, escapeKubernetesExpansion, expandKubernetes, hasShellSyntax } from "./argv.ts";
export { createBackendClient, type BackendClient, type BackendClientOptions } from "./backend.ts";
export { loadSubmitterConfig, normalizeOptionsFrom, SUBMITTER_ENV, type SubmitterConfig } from "./config.ts";
export { createApiServer, listen, type ApiServerOptions } from "./http/server.ts";
export {
  createKubeClient,
  kubeError,
  type KubeClient,
  type KubeClientOptions,
  type LogOptions,
} from "./kube/client.ts";
export { maxTrainJobNameLength } from "./names.ts";
export { parseQuantity } from "./quantity.ts";
export {
  agentCommand,
  configMapName,
  renderJob,
  secretName,
  PATCH_MANAGER,
  RESTART_ATTEMPT_ENV,
  RESTART_ATTEMPT_ENV_VAR,
  SPEC_HASH_ANNOTATION,
  TRAINER_API_VERSION,
  type K8sObject,
  type RenderedJob,
} from "./render.ts";
export {
  normalizeJobRequest,
  specInvalid,
  RESERVED_ENV,
  type NormalizeOptions,
  type Problem,
} from "./request/index.ts";
export * from "./spec.ts";
export { trainJobStatus, JOB_STATES, type TrainJobState, type TrainJobStatus } from "./status.ts";
export {
  createSubmitter,
  findWorkerPod,
  type LogsOptions,
  type SubmitResult,
  type Submitter,
  type SubmitterDeps,
} from "./submitter.ts";
