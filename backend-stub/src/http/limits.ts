/**
 * Bounds on what one request may carry, checked at the door: before a body is validated, applied to a job or
 * journaled. Anything the stub keeps must also be something it can serialise again (JSON.stringify recurses, so a
 * body nested 100,000 levels parses fine and then overflows the stack when journaled or served).
 */
import { HttpError, jsonShapeProblem } from "../../../src/http/index.ts";

/** Deepest nesting of objects and arrays accepted in a body; the contract's own payloads need 3. */
export const MAX_JSON_DEPTH = 32;
/** Events kept per job: the agent sends a handful per epoch; beyond this a job is flooding the stub. */
export const MAX_EVENTS_PER_JOB = 10_000;

/** Refuses a parsed body (400, naming the place) that nests deeper than `maxDepth` or has a `__proto__` key. */
export function checkJsonShape(value: unknown, maxDepth = MAX_JSON_DEPTH): void {
  const problem = jsonShapeProblem(value, maxDepth);
  if (problem === undefined) return;
  const code = problem.code === "too_deep" ? "body_too_deep" : "forbidden_key";
  throw new HttpError(400, code, `request body ${problem.message}`, { field: problem.field });
}

/** Refuses (409) an event for a job that already holds `max` events. */
export function checkEventRoom(events: number, max = MAX_EVENTS_PER_JOB): void {
  if (events >= max) {
    throw new HttpError(
      409,
      "event_limit_reached",
      `the job already holds ${events} events, the most the backend keeps per job (${max})`,
    );
  }
}
