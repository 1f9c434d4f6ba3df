/** Writing answers: JSON with its length, never cached (every answer is about state that changes). */
import type { ServerResponse } from "node:http";

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" };

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...JSON_HEADERS, "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}
