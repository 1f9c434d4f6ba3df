/** Reads a request body up to a cap: a declared or actual size over the cap is a 413 before anything is parsed. */
import type { IncomingMessage } from "node:http";
import { checkJsonShape } from "./limits.ts";
import { HttpError } from "./respond.ts";

/** Default body cap: a `done` with a full 64 KiB log tail fits many times over. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = (): HttpError =>
    new HttpError(413, "body_too_large", `request body exceeds ${maxBytes} bytes`, {
      headers: { connection: "close" },
    });
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** Parses a JSON body and checks its shape (depth, keys: see limits.ts); an empty body reads as `{}` when `emptyOk`. */
export function parseJson(req: IncomingMessage, body: Buffer, emptyOk = false): unknown {
  if (body.length === 0 && emptyOk) return {};
  const type = req.headers["content-type"];
  if (type !== undefined && !/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `Content-Type must be application/json, got ${JSON.stringify(type)}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8")) as unknown;
  } catch (error) {
    throw new HttpError(400, "invalid_json", `request body is not valid JSON: ${(error as Error).message}`);
  }
  checkJsonShape(value);
  return value;
}
