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
import type { Secret } from "../../config/index.ts";
import { isAgentError } from "../../errors/index.ts";
import { DNS1123_LABEL } from "../names.ts";
import { normalizeJobRequest, specInvalid, type NormalizeOptions } from "../request/index.ts";
import type { Submitter } from "../submitter.ts";
import {
  bearerCheck,
  HttpError,
  httpStatusFor,
  listenOn,
  methodNotAllowed,
  parseJsonBody,
  readBody,
  sendJson,
} from "../../http/index.ts";

export interface ApiServerOptions {
  readonly submitter: Submitter;
  /** When set, every /api request needs `Authorization: Bearer <token>`. */
  readonly authToken?: Secret;
  readonly normalize?: NormalizeOptions;
  readonly maxBodyBytes?: number;
  /** Called once per request after the answer (method, path, status); never given bodies or headers. */
  readonly onRequest?: (entry: { method: string; path: string; status: number; ms: number }) => void;
}

/** The body as JSON (empty is `{}`); 413 past the cap, 400 for a body that does not parse. */
async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  return parseJsonBody(await readBody(req, max), true);
}

function checkName(value: string, field: string): string {
  if (!DNS1123_LABEL.test(value) || value.length > 63) {
    throw specInvalid([{ field, message: `must be a DNS-1123 label, got ${JSON.stringify(value.slice(0, 80))}` }]);
  }
  return value;
}

function notFound(method: string, path: string): HttpError {
  return new HttpError(404, "not_found", `no route for ${method} ${path}`);
}

export function createApiServer(options: ApiServerOptions): Server {
  const { submitter } = options;
  const max = options.maxBodyBytes ?? 2 * 1024 * 1024;
  const defaultNamespace = options.normalize?.defaultNamespace ?? "default";
  const authorized = bearerCheck(options.authToken?.reveal());

  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "");
    if (path === "/healthz" || path === "/readyz") return sendJson(res, 200, { status: "ok" });
    if (!path.startsWith("/api/trainjob")) throw notFound(method, path);
    if (!authorized(req.headers.authorization)) {
      throw new HttpError(401, "token_required", "missing or invalid bearer token", {
        headers: { "www-authenticate": 'Bearer realm="trainjob"' },
      });
    }
    const namespace = (): string => checkName(url.searchParams.get("namespace") || defaultNamespace, "namespace");
    if (path === "/api/trainjob/create") {
      if (method !== "POST") throw methodNotAllowed("POST");
      const body = await readJson(req, max);
      const spec = normalizeJobRequest(body, options.normalize);
      // ?dry_run=server (or true), as kubectl's --dry-run=server: the API server checks it, nothing is stored.
      const dryRun = ["server", "true", "All"].includes(url.searchParams.get("dry_run") ?? "");
      const result = await submitter.submit(spec, dryRun ? { dryRun } : {});
      return sendJson(res, 200, result);
    }
    const m = /^\/api\/trainjob\/([^/]+)(\/status|\/logs)?$/.exec(path);
    if (m === null) throw notFound(method, path);
    const name = checkName(decodeURIComponent(m[1]!), "trainjob_name");
    if (m[2] === "/status") {
      if (method !== "GET") throw methodNotAllowed("GET");
      return sendJson(res, 200, await submitter.status(namespace(), name));
    }
    if (m[2] === "/logs") {
      if (method !== "GET") throw methodNotAllowed("GET");
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
      return sendJson(res, 200, { trainjob_name: name, worker, logs });
    }
    if (method !== "DELETE") throw methodNotAllowed("DELETE");
    return sendJson(res, 200, await submitter.delete(namespace(), name));
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
        if (error instanceof HttpError) return sendJson(res, error.status, { detail: error.message }, error.headers);
        if (isAgentError(error)) {
          const field = error.details?.field;
          // A pod log the API server cannot give yet (204 unscheduled, 400 waiting to start): a state, not a failure.
          const notReady = error.code === "K8S_FAILED" && error.details?.notStarted === true;
          return sendJson(res, notReady ? 409 : httpStatusFor(error.code), {
            detail: error.message,
            code: error.code,
            ...(typeof field === "string" ? { field } : {}),
            ...(Array.isArray(error.details?.problems) ? { problems: error.details.problems } : {}),
          });
        }
        return sendJson(res, 500, { detail: "internal error", code: "INTERNAL" });
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
