/** Reading request bodies: a size cap checked before and while reading, then JSON with errors that say why. */
import type { IncomingMessage } from "node:http";
import { HttpError } from "./errors.ts";

/**
 * The body as bytes; 413 (`body_too_large`, and `connection: close` so the rest is not read) as soon as the
 * declared or the received size passes `maxBytes`.
 */
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

/** 415 unless a declared Content-Type is JSON (`application/json`, `application/*+json`); none is accepted. */
export function checkJsonContentType(req: IncomingMessage): void {
  const type = req.headers["content-type"];
  if (type !== undefined && !/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `Content-Type must be application/json, got ${JSON.stringify(type)}`,
    );
  }
}

/** Parses a body as JSON (400 `invalid_json` naming the parser's complaint); an empty body is `{}` when `emptyOk`. */
export function parseJsonBody(body: Buffer, emptyOk = false): unknown {
  if (body.length === 0 && emptyOk) return {};
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch (error) {
    throw new HttpError(400, "invalid_json", `request body is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
