export {
  createCallbackClient,
  type CallbackClient,
  type CallbackClientOptions,
  type DeliveryStats,
  type RunNumber,
  type DoneFields,
  type EventFields,
  type HeartbeatFields,
} from "./client.ts";
export { CallbackHttpError, isRetryableCallbackError } from "./send.ts";
export { ProgressTracker, startLiveness, type ProgressOptions } from "./progress.ts";
export { undiciTransport, type PostResult, type Transport } from "./transport.ts";
