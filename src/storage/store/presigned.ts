/**
 * Checkpoints without storage keys in the pod (CHECKPOINT_STORE=backend): an ObjectStore whose every request goes
 * through a URL the backend presigned for this job (`POST /v1/jobs/{id}/checkpoint-urls`, with the job's callback
 * token; src/contract/checkpoint-urls.ts). PUTs and UploadParts go to URLs bound to their Content-MD5, ranged
 * reads to presigned GETs (store/url.ts); what a URL cannot carry (HEAD, LIST, create/complete/abort a multipart
 * upload) the backend does. The uploader and the restore above it are unchanged: same parts, same Content-MD5, same
 * ETag checks, same manifests.
 *
 * Requests to the backend reuse the callback client's pieces (token renewal, a 401 retried with a fresher token)
 * and the project's retry helper: 5xx, 429 and network failures are retried; 501 (a backend without a bucket) is
 * not.
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { createBackendSend } from "../../callbacks/backend-send.ts";
import { CallbackHttpError, isRetryableCallbackError, Stop } from "../../callbacks/send.ts";
import { undiciTransport } from "../../callbacks/transport.ts";
import type { CallbackConfig } from "../../config/agent.ts";
import { maskUrlCredentials } from "../../config/secret.ts";
import { CheckpointUrlAnswers, type CheckpointUrlRequest } from "../../contract/checkpoint-urls.ts";
import { checkpointUrlsPath } from "../../contract/paths.ts";
import { AgentError, messageOf } from "../../errors/index.ts";
import { DEFAULT_RETRY_POLICY, retry, type RetryDeps, type RetryPolicy } from "../../retry/index.ts";
import type { MultipartUpload, ObjectInfo, ObjectStore, PartSpec, RangeRead } from "./types.ts";
import { UrlReader, type UrlPin, type UrlReaderOptions } from "./url.ts";

/** A presigned GET is asked for again when it has less than this left, ms: a ranged read may take a while. */
const URL_MARGIN_MS = 60_000;

/** Sends one request to the backend's checkpoint-urls route; resolves its JSON answer. */
export type BackendCall = (request: CheckpointUrlRequest, signal?: AbortSignal) => Promise<unknown>;

export interface BackendCallOptions {
  callbacks: CallbackConfig;
  jobId: string;
  traceparent: string;
  logger: Logger;
  now?: () => number;
  retryDeps?: Pick<RetryDeps, "sleep" | "random">;
}

/** A backend failure as logged and reported: its words, but never a presigned URL's signature it may echo. */
function backendMessage(error: unknown): string {
  return maskUrlCredentials(messageOf(error));
}

/** The backend's route through the callback client's request, token source and answer handling, with retries. */
export function backendCall(options: BackendCallOptions): { call: BackendCall; close(): Promise<void> } {
  const { callbacks, jobId, logger } = options;
  if (callbacks.baseUrl === undefined)
    throw new AgentError("CONFIG_INVALID", "CHECKPOINT_STORE=backend needs BACKEND_BASE_URL");
  const now = options.now ?? Date.now;
  const log = logger.child({ component: "checkpoint-urls" });
  const transport = undiciTransport();
  const send = createBackendSend({
    config: callbacks,
    jobId,
    transport,
    traceparent: options.traceparent,
    stop: new Stop(),
    readFile: (p) => readFile(p, "utf8"),
    now,
    log,
    onRequest: () => {},
  });
  const policy: RetryPolicy = {
    ...DEFAULT_RETRY_POLICY,
    // 501: this backend has no bucket for checkpoints; asking again changes nothing.
    retryOn: (error) =>
      isRetryableCallbackError(error) && !(error instanceof CallbackHttpError && error.status === 501),
    retryAfterMs: (error) => (error instanceof CallbackHttpError ? error.retryAfterMs : undefined),
  };
  const path = checkpointUrlsPath(jobId);
  return {
    async call(body, signal) {
      try {
        const res = await retry(() => send(path, JSON.stringify(body), randomUUID(), signal), policy, {
          ...options.retryDeps,
          signal,
          onRetry: ({ error, delayMs }) =>
            log.debug({ op: body.op, err: backendMessage(error), delay_ms: delayMs }, "retrying"),
        });
        return JSON.parse(res.body ?? "null") as unknown;
      } catch (error) {
        if ((error as { name?: string }).name === "AbortError" || signal?.aborted === true) throw error;
        const status = error instanceof CallbackHttpError ? error.status : undefined;
        throw new AgentError(
          status === 401 || status === 403
            ? "STORAGE_DENIED"
            : status === undefined
              ? "STORAGE_UNAVAILABLE"
              : "STORAGE_FAILED",
          `the backend's ${path} (${body.op}) failed: ${backendMessage(error)}`,
          { cause: error, ...(status === undefined ? {} : { details: { status } }) },
        );
      }
    },
    close: () => transport.close(),
  };
}

/** The answer to op, checked against its schema (a backend that answers something else fails loudly). */
function answer<K extends keyof typeof CheckpointUrlAnswers>(kind: K, value: unknown, op: string) {
  const parsed = CheckpointUrlAnswers[kind].safeParse(value);
  if (!parsed.success)
    throw new AgentError(
      "STORAGE_FAILED",
      `the backend's answer to ${op} is not ${kind}: ${parsed.error.issues[0]?.message ?? ""}`,
    );
  return parsed.data as ReturnType<(typeof CheckpointUrlAnswers)[K]["parse"]>;
}

export class PresignedStore implements ObjectStore {
  readonly label: string;
  readonly #call: BackendCall;
  readonly #reader: UrlReader;
  readonly #now: () => number;
  readonly #gets = new Map<string, { url: URL; expiresAt: number }>();
  readonly #close: () => Promise<void>;

  constructor(opts: {
    call: BackendCall;
    /** For messages: where the URLs come from, e.g. `backend:checkpoints/job-7/`. */
    label: string;
    reader: UrlReaderOptions;
    now?: () => number;
    close?: () => Promise<void>;
  }) {
    this.#call = opts.call;
    this.label = opts.label;
    this.#reader = new UrlReader(opts.reader);
    this.#now = opts.now ?? Date.now;
    this.#close = opts.close ?? (() => Promise.resolve());
  }

  async #url(request: CheckpointUrlRequest, signal?: AbortSignal): Promise<{ url: URL; expiresAt: number }> {
    const a = answer("url", await this.#call(request, signal), request.op);
    return { url: new URL(a.url), expiresAt: Date.parse(a.expires_at) };
  }

  async #getUrl(key: string, signal?: AbortSignal): Promise<URL> {
    const cached = this.#gets.get(key);
    if (cached !== undefined && cached.expiresAt - this.#now() > URL_MARGIN_MS) return cached.url;
    const fresh = await this.#url({ op: "get", key }, signal);
    this.#gets.set(key, fresh);
    return fresh.url;
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    return answer("head", await this.#call({ op: "head", key }, signal), "head").object;
  }

  async list(prefix: string, signal?: AbortSignal): Promise<ObjectInfo[]> {
    const { objects } = answer("list", await this.#call({ op: "list", prefix }, signal), "list");
    return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async getRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<Readable> {
    return this.#reader.getRange(await this.#getUrl(key, signal), start, end, pin(etag), signal);
  }

  readInto = async (read: RangeRead): Promise<boolean> =>
    this.#reader.readInto(await this.#getUrl(read.key, read.signal), read, pin(read.etag));

  async putObject(key: string, body: Buffer, md5: string, signal?: AbortSignal): Promise<string> {
    const { url } = await this.#url({ op: "put", key, content_md5: md5 }, signal);
    return this.#reader.put(url, body, md5, "PUT", signal);
  }

  async createMultipart(key: string, signal?: AbortSignal): Promise<MultipartUpload> {
    const call = this.#call;
    const { upload_id } = answer(
      "create_multipart",
      await call({ op: "create_multipart", key }, signal),
      "create_multipart",
    );
    const reader = this.#reader;
    const urlFor = (part: PartSpec, s?: AbortSignal) =>
      this.#url({ op: "upload_part", key, upload_id, part_number: part.partNumber, content_md5: part.md5 }, s);
    return {
      async uploadPart(part, partSignal) {
        const { url } = await urlFor(part, partSignal);
        return reader.put(url, part.body, part.md5, `UploadPart ${part.partNumber}`, partSignal);
      },
      async complete(parts) {
        const done = await call({
          op: "complete_multipart",
          key,
          upload_id,
          parts: parts.map((p) => ({ part_number: p.partNumber, etag: p.etag })),
        });
        return answer("complete_multipart", done, "complete_multipart").etag;
      },
      async abort() {
        await call({ op: "abort_multipart", key, upload_id }).catch(() => {}); // best effort, as on a bucket
      },
    };
  }

  deleteObject(key: string): Promise<void> {
    return Promise.reject(new AgentError("STORAGE_FAILED", `DELETE ${this.label}${key}: not offered by the backend`));
  }

  close(): void {
    this.#reader.close();
    void this.#close().catch(() => {});
  }
}

/** Reads of a stored checkpoint file are pinned to the ETag its manifest or listing gave. */
function pin(etag: string): UrlPin {
  return { etag, lastModified: undefined };
}
