/**
 * Turns the JSON object of a `::trainer::{json}` line into a typed Report (CONTRACT section 4), or says why not.
 * Shapes: `{"epoch":3,"total_epochs":10,"step":1200,"metrics":{"loss":0.2}}`, `{"checkpoint":"/path"}`,
 * `{"event":"warning","message":"...","data":{...}}`; each may carry `"rank": <global rank>`.
 */
import type { Report } from "../contract/report.ts";
import { isRecord } from "../internal/values.ts";

export type ParsedReport = { ok: true; report: Report } | { ok: false; problem: string };

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

/** Validates a decoded report object. */
export function toReport(value: unknown): ParsedReport {
  if (!isRecord(value)) return { ok: false, problem: "a report must be a JSON object" };
  let rank: number | undefined;
  if (value.rank !== undefined) {
    if (!isCount(value.rank)) return { ok: false, problem: `"rank" must be a non-negative integer` };
    rank = value.rank;
  }
  const withRank = <R extends Report>(r: R): R => (rank === undefined ? r : { ...r, rank });

  if (value.checkpoint !== undefined) {
    if (typeof value.checkpoint !== "string" || value.checkpoint === "")
      return { ok: false, problem: `"checkpoint" must be a non-empty path` };
    return { ok: true, report: withRank({ kind: "checkpoint", path: value.checkpoint }) };
  }
  if (value.event !== undefined) {
    if (typeof value.event !== "string" || value.event === "" || value.event.length > 64)
      return { ok: false, problem: `"event" must be a type name of 1 to 64 characters` };
    if (value.message !== undefined && typeof value.message !== "string")
      return { ok: false, problem: `"message" must be a string` };
    if (value.data !== undefined && !isRecord(value.data)) return { ok: false, problem: `"data" must be an object` };
    const r: Report = { kind: "event", type: value.event };
    if (typeof value.message === "string") r.message = value.message;
    if (isRecord(value.data)) r.data = value.data;
    return { ok: true, report: withRank(r) };
  }
  if (value.epoch !== undefined) {
    if (!isCount(value.epoch)) return { ok: false, problem: `"epoch" must be a non-negative integer` };
    const totalRaw = value.total_epochs ?? value.totalEpochs;
    if (totalRaw !== undefined && !isCount(totalRaw))
      return { ok: false, problem: `"total_epochs" must be a non-negative integer` };
    if (value.step !== undefined && !isCount(value.step))
      return { ok: false, problem: `"step" must be a non-negative integer` };
    const metrics: Record<string, number> = {};
    if (value.metrics !== undefined) {
      if (!isRecord(value.metrics)) return { ok: false, problem: `"metrics" must be an object of numbers` };
      for (const [k, v] of Object.entries(value.metrics)) {
        // Non-finite values (NaN loss) cannot travel as JSON numbers; they are dropped, not fatal.
        if (typeof v === "number" && Number.isFinite(v)) metrics[k] = v;
      }
    }
    const r: Report = { kind: "epoch", epoch: value.epoch, metrics };
    if (totalRaw !== undefined) r.totalEpochs = totalRaw;
    if (value.step !== undefined) r.step = value.step;
    return { ok: true, report: withRank(r) };
  }
  return { ok: false, problem: `a report needs "epoch", "checkpoint" or "event"` };
}

/** Decodes and validates the JSON text of a report. */
export function parseReportJson(text: string): ParsedReport {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, problem: `invalid JSON (${(error as Error).message})` };
  }
  return toReport(value);
}

export type ObjectScan =
  { status: "complete"; end: number } | { status: "incomplete" } | { status: "invalid"; problem: string };

const LF = 0x0a;
const SPACE = 0x20;
const TAB = 0x09;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Finds the end of one balanced JSON object starting at `start` (after optional blanks), working on bytes:
 * braces inside strings do not count, a line feed before the object closes makes it invalid (a report is one
 * line), and running out of bytes means the rest has not arrived yet.
 */
export function scanJsonObject(buf: Uint8Array, start: number): ObjectScan {
  let i = start;
  while (i < buf.length && (buf[i] === SPACE || buf[i] === TAB)) i++;
  if (i >= buf.length) return { status: "incomplete" };
  if (buf[i] !== OPEN) return { status: "invalid", problem: "no JSON object after the marker" };
  let depth = 0;
  let inString = false;
  for (; i < buf.length; i++) {
    const b = buf[i];
    if (b === LF) return { status: "invalid", problem: "the JSON object is not closed on its line" };
    if (inString) {
      if (b === BACKSLASH) {
        if (buf[i + 1] === LF) return { status: "invalid", problem: "the JSON object is not closed on its line" };
        i++;
      } else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (b === OPEN) depth++;
    else if (b === CLOSE) {
      depth--;
      if (depth === 0) return { status: "complete", end: i + 1 };
    }
  }
  return { status: "incomplete" };
}
