/**
 * The seed backend's TrainJob API (CONTRACT section 7), served by `trainjob serve`:
 *   POST   /api/trainjob/create[?dry_run=server]         -> {status, trainjob_name, namespace, created_at}
 *   GET    /api/trainjob/{name}/status?namespace=        -> {trainjob_name, state, message, created_at, completed_at}
 *   GET    /api/trainjob/{name}/logs?namespace=&worker=  -> {trainjob_name, worker, logs}  (follow=true: text stream)
 *   DELETE /api/trainjob/{name}?namespace=               -> {status, trainjob_name, namespace}
 * Errors are `{"detail": ..., "code": ..., "field"?: ...}` as FastAPI's HTTPException answered, with 422 for an
 * invalid spec, 404, 409, 401 and 502 when Kubernetes or the backend fail.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { timingSafeEqual } from "node:crypto";
import type { Secret } from "../../config/index.ts";
import { isAgentError, type ErrorCode } from "../../errors/index.ts";
import { DNS1123_LABEL } from "../names.ts";
import { normalizeJobRequest, specInvalid, type NormalizeOptions } from "../request/index.ts";
import type { Submitter } from "../submitter.ts";
import { listenOn } from "../../http/listen.ts";

export interface ApiServerOptions {
  readonly submitter: Submitter;
  /** When set, every /api request needs `Authorization: Bearer <token>`. */
  readonly authToken?: Secret;
  readonly normalize?: NormalizeOptions;
  readonly maxBodyBytes?: number;
  /** Called once per request after the answer (method, path, status); never given bodies or headers. */
  readonly onRequest?: (entry: { method: string; path: string; status: number; ms: number }) => void;
}

const STATUS_FOR: Partial<Record<ErrorCode, number>> = {
  SPEC_INVALID: 422,
  USAGE: 400,
  K8S_NOT_FOUND: 404,
  K8S_CONFLICT: 409,
  K8S_FAILED: 502,
  CALLBACK_REJECTED: 502,
  CALLBACK_FAILED: 502,
};

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new HttpError(413, `request body exceeds ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text === "" ? "{}" : text);
  } catch (error) {
    throw new HttpError(400, `request body is not valid JSON: ${(error as Error).message}`);
  }
}

function authorized(req: IncomingMessage, token: Secret | undefined): boolean {
  if (token === undefined) return true;
  const header = req.headers.authorization ?? "";
  const m = /^Bearer\s+(.+)$/i.exec(header);
  if (m === null) return false;
  const given = Buffer.from(m[1]!.trim());
  const expected = Buffer.from(token.reveal());
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function checkName(value: string, field: string): string {
  if (!DNS1123_LABEL.test(value) || value.length > 63) {
    throw specInvalid([{ field, message: `must be a DNS-1123 label, got ${JSON.stringify(value.slice(0, 80))}` }]);
  }
  return value;
}

export function createApiServer(options: ApiServerOptions): Server {
  const { submitter } = options;
  const max = options.maxBodyBytes ?? 2 * 1024 * 1024;
  const defaultNamespace = options.normalize?.defaultNamespace ?? "default";

  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "");
    if (path === "/healthz" || path === "/readyz") return send(res, 200, { status: "ok" });
    if (!path.startsWith("/api/trainjob")) throw new HttpError(404, `no route for ${method} ${path}`);
    if (!authorized(req, options.authToken)) {
      res.setHeader("www-authenticate", 'Bearer realm="trainjob"');
      throw new HttpError(401, "missing or invalid bearer token");
    }
    const namespace = (): string => checkName(url.searchParams.get("namespace") || defaultNamespace, "namespace");
    if (path === "/api/trainjob/create") {
      if (method !== "POST") throw new HttpError(405, "use POST");
      const body = await readJson(req, max);
      const spec = normalizeJobRequest(body, options.normalize);
      // ?dry_run=server (or true), as kubectl's --dry-run=server: the API server checks it, nothing is stored.
      const dryRun = ["server", "true", "All"].includes(url.searchParams.get("dry_run") ?? "");
      const result = await submitter.submit(spec, dryRun ? { dryRun } : {});
      return send(res, 200, result);
    }
    const m = /^\/api\/trainjob\/([^/]+)(\/status|\/logs)?$/.exec(path);
    if (m === null) throw new HttpError(404, `no route for ${method} ${path}`);
    const name = checkName(decodeURIComponent(m[1]!), "trainjob_name");
    if (m[2] === "/status") {
      if (method !== "GET") throw new HttpError(405, "use GET");
      return send(res, 200, await submitter.status(namespace(), name));
    }
    if (m[2] === "/logs") {
      if (method !== "GET") throw new HttpError(405, "use GET");
      const workerText = url.searchParams.get("worker") ?? "0";
      if (!/^\d+$/.test(workerText))
        throw specInvalid([
          { field: "worker", message: `must be a non-negative integer, got ${JSON.stringify(workerText)}` },
        ]);
      const worker = Number(workerText);
      const tailText = url.searchParams.get("tail") ?? url.searchParams.get("tail_lines");
      const tailLines = tailText !== null && /^\d+$/.test(tailText) ? Number(tailText) : undefined;
      const ns = namespace();
      if (url.searchParams.get("follow") === "true") {
        const abort = new AbortController();
        res.on("close", () => abort.abort());
        // Errors before the first byte still get a JSON answer: the stream starts only once the pod is found.
        let started = false;
        const out = new (await import("node:stream")).Writable({
          write(chunk: Buffer, _enc, cb) {
            if (!started) {
              started = true;
              res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
            }
            res.write(chunk, () => cb());
          },
        });
        await submitter.logs(ns, name, worker, {
          follow: true,
          out,
          signal: abort.signal,
          ...(tailLines === undefined ? {} : { tailLines }),
        });
        if (!started) res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        res.end();
        return;
      }
      const logs = await submitter.logs(ns, name, worker, tailLines === undefined ? {} : { tailLines });
      return send(res, 200, { trainjob_name: name, worker, logs });
    }
    if (method !== "DELETE") throw new HttpError(405, "use DELETE");
    return send(res, 200, await submitter.delete(namespace(), name));
  };

  return createServer((req, res) => {
    const started = Date.now();
    const url = new URL(req.url ?? "/", "http://localhost");
    handle(req, res, url)
      .catch((error: unknown) => {
        if (res.headersSent) {
          res.end();
          return;
        }
        if (error instanceof HttpError) return send(res, error.status, { detail: error.message });
        if (isAgentError(error)) {
          const field = error.details?.field;
          // A pod log the API server cannot give yet (204 unscheduled, 400 waiting to start): a state, not a failure.
          const notReady = error.code === "K8S_FAILED" && error.details?.notStarted === true;
          return send(res, notReady ? 409 : (STATUS_FOR[error.code] ?? 500), {
            detail: error.message,
            code: error.code,
            ...(typeof field === "string" ? { field } : {}),
            ...(Array.isArray(error.details?.problems) ? { problems: error.details.problems } : {}),
          });
        }
        return send(res, 500, { detail: "internal error", code: "INTERNAL" });
      })
      .finally(() =>
        options.onRequest?.({
          method: req.method ?? "",
          path: url.pathname,
          status: res.statusCode,
          ms: Date.now() - started,
        }),
      );
  });
}

/** Starts the server and resolves with its URL (port 0 = ephemeral). */
export async function listen(server: Server, port: number, host: string): Promise<string> {
  const address = await listenOn(server, port, host);
  const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${shown}:${address.port}`;
}
