/** The one error shape of the stub's API: `{"error": {"code", "message", "field"?}}`, codes in snake case. */
import type { ServerResponse } from "node:http";
import { httpErrorOf, HttpError, sendJson } from "../../../src/http/index.ts";
import type { StubLogger } from "../logger.ts";

export function sendError(res: ServerResponse, error: HttpError): void {
  const body: { code: string; message: string; field?: string } = {
    code: error.code.toLowerCase(),
    message: error.message,
  };
  if (error.field !== undefined) body.field = error.field;
  sendJson(res, error.status, { error: body }, error.headers);
}

/** The answer for anything a handler threw; what the code table does not name is logged and a bare 500. */
export function toHttpError(error: unknown, logger: StubLogger): HttpError {
  const known = httpErrorOf(error);
  if (known === undefined) {
    logger.error({ err: error }, "unexpected error in the backend stub");
    return new HttpError(500, "internal", "internal error in the backend stub");
  }
  // An AgentError a handler let through with a 5xx is the journal refusing changes.
  if (known !== error && known.status >= 500) logger.error({ err: error }, "journal failure; refusing changes");
  return known;
}
