export {
  abortableSleep,
  backoffDelay,
  DEFAULT_RETRY_POLICY,
  parseRetryAfter,
  retry,
  type RetryDeps,
  type RetryPolicy,
} from "./retry.ts";
