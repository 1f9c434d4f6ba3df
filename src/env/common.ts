/**
 * Variables every child gets whatever the framework (CONTRACT section 3): DATASET_DIR, CHECKPOINT_DIR, TRACE_ID,
 * PYTHONUNBUFFERED=1 (so a Python child's output reaches the relay line by line).
 */
import { randomBytes } from "node:crypto";
import type { AgentConfig } from "../config/index.ts";

/** The run's trace id: TRACE_ID, else the trace-id field of TRACEPARENT, else a fresh W3C-style 32-hex id. */
export function resolveTraceId(config: Pick<AgentConfig, "traceId" | "traceparent">, generate = newTraceId): string {
  if (config.traceId !== undefined) return config.traceId;
  const fromParent = config.traceparent?.split("-")[1];
  if (fromParent !== undefined && !/^0+$/.test(fromParent)) return fromParent;
  return generate();
}

export function newTraceId(): string {
  return randomBytes(16).toString("hex");
}

export function commonChildEnv(config: AgentConfig, traceId: string): Record<string, string> {
  return {
    DATASET_DIR: config.storage.datasetDir,
    CHECKPOINT_DIR: config.storage.checkpointDir,
    TRACE_ID: traceId,
    PYTHONUNBUFFERED: "1",
  };
}
