export {
  createBackendStub,
  DEFAULT_TOKEN_TTL_SECONDS,
  type BackendStub,
  type BackendStubOptions,
  type CreatedJob,
  type JobUpdate,
} from "./stub.ts";
export { loadBackendConfig, type BackendConfig } from "./config.ts";
export { signCallbackToken, verifyCallbackToken } from "./auth/tokens.ts";
export type { JobSummary, JobView, MetricSeries, StoredEvent, StoredHeartbeat, Transition } from "./jobs/model.ts";
export type { StubLogger } from "./logger.ts";
export { DASHBOARD_ASSETS } from "./http/static.ts";
export { DEFAULT_SSE_LIMITS, type SseLimits } from "./http/sse.ts";
export { MAX_EVENTS_PER_JOB, MAX_JSON_DEPTH } from "./http/limits.ts";
