/**
 * Bounds on what one request may carry, checked at the door: before a body is validated, applied to a job or
 * journaled. Anything the stub keeps must also be something it can serialise again (JSON.stringify recurses, so a
 * body nested 100,000 levels parses fine and then overflows the stack when journaled or served).
 */
import { HttpError } from "./respond.ts";

/** Deepest nesting of objects and arrays accepted in a body; the contract's own payloads need 3. */
export const MAX_JSON_DEPTH = 32;
/** The key that names an object's prototype: the schemas drop it silently, and an assignment copy would set it. */
const PROTO_KEY = "__proto__";
/** Events kept per job: the agent sends a handful per epoch; beyond this a job is flooding the stub. */
export const MAX_EVENTS_PER_JOB = 10_000;

/**
 * Walks a parsed body without recursion and refuses it (400, naming the place) when it nests deeper than
 * `maxDepth` or has a key that would reach a prototype.
 */
export function checkJsonShape(value: unknown, maxDepth = MAX_JSON_DEPTH): void {
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value, depth: 0, path: "" }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (item.value === null || typeof item.value !== "object") continue;
    const depth = item.depth + 1;
    if (depth > maxDepth) {
      const field = item.path === "" ? "(body)" : item.path;
      throw new HttpError(
        400,
        "body_too_deep",
        `request body nests deeper than ${maxDepth} levels of objects and arrays (at ${field})`,
        { field },
      );
    }
    if (Array.isArray(item.value)) {
      item.value.forEach((v, i) => stack.push({ value: v, depth, path: `${item.path}[${i}]` }));
      continue;
    }
    for (const [key, v] of Object.entries(item.value)) {
      const path = item.path === "" ? key : `${item.path}.${key}`;
      if (key === PROTO_KEY) {
        throw new HttpError(
          400,
          "forbidden_key",
          `request body key "__proto__" is not accepted (it would be dropped or reach a prototype)`,
          {
            field: path,
          },
        );
      }
      stack.push({ value: v, depth, path });
    }
  }
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
