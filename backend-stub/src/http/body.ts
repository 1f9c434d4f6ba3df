/** The stub's request bodies: JSON only, size-capped (see src/http), shape-checked (see limits.ts). */
import type { IncomingMessage } from "node:http";
import { checkJsonContentType, parseJsonBody, readBody } from "../../../src/http/index.ts";
import { checkJsonShape } from "./limits.ts";

/** Default body cap: a `done` with a full 64 KiB log tail fits many times over. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * Reads a request's JSON body (at most maxBytes), parses it and checks its shape (depth, keys: see limits.ts); an
 * empty body reads as `{}` when `emptyOk`.
 */
export async function readJson(req: IncomingMessage, maxBytes: number, emptyOk = false): Promise<unknown> {
  const body = await readBody(req, maxBytes);
  if (body.length === 0 && emptyOk) return {};
  checkJsonContentType(req);
  const value = parseJsonBody(body);
  checkJsonShape(value);
  return value;
}
