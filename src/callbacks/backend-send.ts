/**
 * One sender to the backend under `/v1/jobs/{id}/...`: the request (base URL, timeout, traceparent, stop), the
 * job's token (renewed, a 401 retried with a fresher one) and the answer's meaning. The callback client sends its
 * reports with it, the checkpoint-URL store (src/storage/store/presigned.ts) its requests for URLs.
 */
import type { Logger } from "pino";
import type { CallbackConfig } from "../config/index.ts";
import { createRequest, createSend, type Send, type Stop } from "./send.ts";
import { createTokenSource } from "./token.ts";
import type { Transport } from "./transport.ts";

export function createBackendSend(options: {
  config: Pick<CallbackConfig, "baseUrl" | "requestTimeoutSeconds" | "token" | "tokenFile">;
  jobId: string;
  transport: Transport;
  traceparent: string;
  stop: Stop;
  readFile: (path: string) => Promise<string>;
  now: () => number;
  log: Logger;
  /** Called for each request sent. */
  onRequest: () => void;
}): Send {
  const { config, now, log } = options;
  if (config.baseUrl === undefined) throw new TypeError("createBackendSend: BACKEND_BASE_URL is not set");
  const request = createRequest({
    // A base with a path (http://host/api) keeps it: /v1/jobs/... is appended to it.
    base: new URL(config.baseUrl.href.endsWith("/") ? config.baseUrl.href : `${config.baseUrl.href}/`),
    transport: options.transport,
    traceparent: options.traceparent,
    timeoutMs: config.requestTimeoutSeconds * 1000,
    stop: options.stop,
  });
  const tokens = createTokenSource({ config, jobId: options.jobId, request, readFile: options.readFile, now, log });
  return createSend({ request, tokens, now, log, onRequest: options.onRequest });
}
