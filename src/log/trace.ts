/**
 * Correlation ids: the agent's `trace_id` (logs, callbacks, the child's TRACE_ID) and the W3C `traceparent` it
 * sends with each callback. TRACEPARENT wins (its trace-id is the run's trace id, the agent is a new span under
 * it); else TRACE_ID (when it is 32 hex digits it is used as the W3C trace-id too, otherwise the W3C trace-id is
 * derived from it by hashing so the same TRACE_ID always maps to the same trace); else a random one.
 */
import { createHash, randomBytes } from "node:crypto";

export interface TraceContext {
  /** The id that appears in logs and payloads as `trace_id`. */
  traceId: string;
  /** `00-<trace-id>-<agent span id>-<flags>`, sent as the `traceparent` header and to the child as TRACEPARENT. */
  traceparent: string;
}

const W3C = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;
const ZERO_TRACE = "0".repeat(32);

export function resolveTrace(
  input: { traceId?: string | undefined; traceparent?: string | undefined },
  random: (bytes: number) => Buffer = randomBytes,
): TraceContext {
  const spanId = nonZeroHex(random, 8);
  const parent = input.traceparent === undefined ? undefined : W3C.exec(input.traceparent.toLowerCase());
  if (parent && parent[2] !== ZERO_TRACE && parent[1] !== "ff") {
    const traceId = parent[2] as string;
    return { traceId: input.traceId ?? traceId, traceparent: `00-${traceId}-${spanId}-${parent[4]}` };
  }
  if (input.traceId !== undefined && input.traceId !== "") {
    const lower = input.traceId.toLowerCase();
    const w3cId =
      /^[\da-f]{32}$/.test(lower) && lower !== ZERO_TRACE
        ? lower
        : createHash("sha256").update(input.traceId).digest("hex").slice(0, 32);
    return { traceId: input.traceId, traceparent: `00-${w3cId}-${spanId}-01` };
  }
  const traceId = nonZeroHex(random, 16);
  return { traceId, traceparent: `00-${traceId}-${spanId}-01` };
}

function nonZeroHex(random: (bytes: number) => Buffer, bytes: number): string {
  for (;;) {
    const hex = random(bytes).toString("hex");
    if (!/^0+$/.test(hex)) return hex;
  }
}
