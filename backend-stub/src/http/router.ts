/**
 * The stub's route table: method + path pattern -> handler. A pattern is literal segments, `:name` for one
 * segment (percent-decoded into `params`) and a final `*` for any rest. The first pattern that matches the path
 * decides: a method it does not list is a 405 naming those it does. Empty segments are ignored, so `/v1/jobs/`
 * and `/v1/jobs` are one path.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError, methodNotAllowed } from "../../../src/http/index.ts";

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** The path without its query, as sent (not decoded). */
  pathname: string;
  /** The query string after `?`, undefined when the URL has none. */
  query: string | undefined;
  /** The `:name` segments, percent-decoded (unless the route is `raw`). */
  params: Record<string, string>;
}

export interface Route {
  /** An HTTP method, or `*` for any. */
  method: string;
  pattern: string;
  handler: (c: RequestContext) => Promise<void> | void;
  /** Hand `:name` segments over undecoded (the handler copes with a malformed escape itself). */
  raw?: boolean;
}

export function route(
  method: string,
  pattern: string,
  handler: Route["handler"],
  options: { raw?: boolean } = {},
): Route {
  return { method, pattern, handler, ...options };
}

/** A page: GET, and HEAD answered alike (node leaves the body out). */
export function page(pattern: string, handler: Route["handler"], options: { raw?: boolean } = {}): Route[] {
  return [route("GET", pattern, handler, options), route("HEAD", pattern, handler, options)];
}

const segmentsOf = (path: string): string[] => path.split("/").filter((p) => p !== "");

/** The request listener body for a table; throws HttpError 404/405/400 for what no route takes. */
export function createRouter(routes: readonly Route[]): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const table = routes.map((r) => ({ ...r, segments: segmentsOf(r.pattern) }));
  return async (req, res) => {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const pathname = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const method = req.method ?? "GET";
    const parts = segmentsOf(pathname);
    const first = table.find((r) => matches(r.segments, parts));
    if (first === undefined) throw new HttpError(404, "not_found", `no route ${method} ${pathname}`);
    const group = table.filter((r) => r.pattern === first.pattern);
    const chosen = group.find((r) => r.method === method || r.method === "*");
    if (chosen === undefined) throw methodNotAllowed(group.map((r) => r.method).join(", "));
    const params: Record<string, string> = {};
    chosen.segments.forEach((s, i) => {
      if (s.startsWith(":")) params[s.slice(1)] = chosen.raw === true ? parts[i]! : decodeSegment(parts[i]!);
    });
    await chosen.handler({ req, res, method, pathname, query: q === -1 ? undefined : rawUrl.slice(q + 1), params });
  };
}

function matches(pattern: string[], parts: string[]): boolean {
  const rest = pattern.at(-1) === "*";
  const fixed = rest ? pattern.length - 1 : pattern.length;
  if (rest ? parts.length < fixed : parts.length !== fixed) return false;
  for (let i = 0; i < fixed; i++) if (!pattern[i]!.startsWith(":") && pattern[i] !== parts[i]) return false;
  return true;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, "invalid_path", "the job id in the path is not valid percent-encoding");
  }
}
