export { createLogger, REDACT_PATHS, type Logger, type LoggerOptions } from "./logger.ts";
export { resolveTrace, type TraceContext } from "./trace.ts";
