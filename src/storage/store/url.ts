/**
 * Objects reached by a plain URL rather than a bucket and keys: a dataset given as DATASET_URL (a presigned GET, or
 * any http(s) server that honours Range), and the presigned URLs the backend hands out for checkpoints
 * (store/presigned.ts). The reads are the bucket's: parallel ranged GETs landing in place through undici-get.ts's
 * readRange, the one UndiciGet uses (over http too: a URL is not an S3 endpoint DirectGet can sign for), each
 * pinned to the version seen first (If-Match on a strong ETag, else If-Unmodified-Since on Last-Modified), resumed
 * by src/storage/internal.
 *
 * A URL's query is a credential (X-Amz-Signature, X-Amz-Credential, a token): nothing here puts it in a message.
 * Objects are named by urlLabel (scheme, host, path) in logs, errors and the dataset marker.
 */
import type { Readable } from "node:stream";
import type { Pool } from "undici";
import { AgentError, type ErrorCode } from "../../errors/index.ts";
import { storageError } from "./errors.ts";
import type { ObjectInfo, ObjectStore, RangeRead } from "./types.ts";
import { rangePool, readRange } from "./undici-get.ts";

/** The most of an error answer's body read for its S3 error code and message. */
const ERROR_BODY_MAX = 8 * 1024;

/** A URL as it may be shown: scheme, host and path, never the query (a signature) nor user and password. */
export function urlLabel(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** What a first ranged GET tells about the object behind a URL. */
export interface UrlObject {
  size: number;
  /** A strong ETag without quotes; empty when the server sent none or a weak one (W/: useless for If-Match). */
  etag: string;
  /** The Last-Modified header as sent; the pin when there is no strong ETag. */
  lastModified: string | undefined;
  contentType: string | undefined;
}

/** The version the ranged reads of one object are pinned to (UrlObject's etag and lastModified). */
export type UrlPin = Pick<UrlObject, "etag" | "lastModified">;

export interface UrlReaderOptions {
  /** Connections kept per origin (at least the transfer concurrency). */
  connections: number;
  connectTimeoutMs: number;
  /** A first answer (status and headers) slower than this fails, ms. */
  requestTimeoutMs: number;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function pinHeaders(pin: UrlPin): Record<string, string> {
  if (pin.etag !== "") return { "if-match": `"${pin.etag}"` };
  if (pin.lastModified !== undefined) return { "if-unmodified-since": pin.lastModified };
  return {};
}

/** `<Code>` and `<Message>` of an S3 error body, bounded, with anything URL-like cut out. */
function s3ErrorDetail(body: string): string {
  const tag = (name: string): string | undefined =>
    new RegExp(`<${name}>([^<]{1,200})</${name}>`).exec(body)?.[1]?.replace(/\S*[?&=]\S*/g, "...");
  const code = tag("Code");
  const message = tag("Message");
  return [code, message].filter((s) => s !== undefined).join(": ");
}

/**
 * The error for an answer that is not the success asked for: the status and the S3 error code and message (an
 * expired presigned URL reads `HTTP 403 AccessDenied: Request has expired`), never the URL's query.
 */
export async function answerError(
  op: string,
  label: string,
  status: number,
  body: { text(): Promise<string> } | undefined,
  notFound: ErrorCode,
): Promise<AgentError> {
  let detail = "";
  try {
    const text = body === undefined ? "" : await body.text();
    detail = s3ErrorDetail(text.slice(0, ERROR_BODY_MAX));
  } catch {
    // The status says enough.
  }
  const what = `HTTP ${status}${detail === "" ? "" : ` ${detail}`}`;
  if (status === 401 || status === 403)
    return new AgentError(
      "STORAGE_DENIED",
      `${op} ${label} was refused (${what}): a presigned URL that expired or was signed for another method; ` +
        "ask for a new one",
      { details: { status } },
    );
  if (status === 404) return new AgentError(notFound, `${op} ${label}: no such object (${what})`);
  if (status === 412)
    return new AgentError("DATASET_CHANGED", `${label} changed while it was being read (${op}: ${what})`);
  return new AgentError("STORAGE_FAILED", `${op} ${label} failed: ${what}`, { details: { status } });
}

/** Ranged GETs of URLs, in place where possible; one connection pool per origin. */
export class UrlReader {
  readonly #opts: UrlReaderOptions;
  readonly #pools = new Map<string, Pool>();
  #closed = false;

  constructor(opts: UrlReaderOptions) {
    this.#opts = opts;
  }

  #pool(url: URL): Pool {
    let pool = this.#pools.get(url.origin);
    if (pool === undefined) {
      pool = rangePool(url.origin, this.#opts.connections, this.#opts.connectTimeoutMs);
      this.#pools.set(url.origin, pool);
    }
    return pool;
  }

  /** One request; network failures become STORAGE_UNAVAILABLE / STORAGE_FAILED naming only the label. */
  async #request(
    url: URL,
    op: string,
    method: "GET" | "PUT",
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    body?: Buffer,
  ): Promise<Awaited<ReturnType<Pool["request"]>>> {
    try {
      return await this.#pool(url).request({
        path: `${url.pathname}${url.search}`,
        method,
        headers: { ...headers, "user-agent": "astrago-trainer" },
        body,
        signal,
        headersTimeout: this.#opts.requestTimeoutMs,
        bodyTimeout: this.#opts.requestTimeoutMs,
      });
    } catch (error) {
      if ((error as { name?: string }).name === "AbortError" || signal?.aborted === true) throw error;
      throw storageError(error, op, urlLabel(url));
    }
  }

  /**
   * Size and version of the object from a `Range: bytes=0-0` GET (a presigned URL is signed for GET only, so no
   * HEAD): Content-Range's total, or Content-Length when the server answers the whole object.
   */
  async probe(url: URL, signal?: AbortSignal): Promise<UrlObject> {
    const label = urlLabel(url);
    const res = await this.#request(url, "GET", "GET", { range: "bytes=0-0" }, signal);
    const h = res.headers as Record<string, string | string[] | undefined>;
    let size: number | undefined;
    if (res.statusCode === 206 || res.statusCode === 416) {
      const total = /\/(\d+)\s*$/.exec(header(h, "content-range") ?? "")?.[1];
      size = total === undefined ? undefined : Number(total);
    } else if (res.statusCode === 200) {
      const length = header(h, "content-length");
      size = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
    } else throw await answerError("GET", label, res.statusCode, res.body, "DATASET_NOT_FOUND");
    await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
    if (size === undefined)
      throw new AgentError(
        "STORAGE_FAILED",
        `GET ${label} (Range: bytes=0-0) answered HTTP ${res.statusCode} with no size (no Content-Range total, no ` +
          "Content-Length): a dataset URL must be a plain object its server can serve in ranges",
      );
    const etag = header(h, "etag") ?? "";
    return {
      size,
      etag: etag.startsWith("W/") ? "" : etag.replace(/^"|"$/g, ""),
      lastModified: header(h, "last-modified"),
      contentType: header(h, "content-type"),
    };
  }

  /** ObjectStore.readInto for a URL: true when every byte landed in place, false to go through getRange. */
  async readInto(url: URL, req: RangeRead, pin: UrlPin): Promise<boolean> {
    req.signal?.throwIfAborted();
    if (this.#closed) return false;
    const headers = { ...pinHeaders(pin), range: `bytes=${req.start}-${req.end - 1}`, "user-agent": "astrago-trainer" };
    const what = `GET ${urlLabel(url)} bytes ${req.start}-${req.end - 1}`;
    const path = `${url.pathname}${url.search}`;
    return readRange({ pool: this.#pool(url), origin: url.origin, path, headers, what }, req);
  }

  /** ObjectStore.getRange for a URL: the body of exactly [start, end), pinned; the caller consumes or destroys it. */
  async getRange(url: URL, start: number, end: number, pin: UrlPin, signal?: AbortSignal): Promise<Readable> {
    if (end <= start) throw new RangeError(`empty range ${start}-${end}`);
    const label = urlLabel(url);
    const asked = `bytes ${start}-${end - 1}/`;
    const res = await this.#request(
      url,
      "GET",
      "GET",
      { ...pinHeaders(pin), range: `bytes=${start}-${end - 1}` },
      signal,
    );
    const h = res.headers as Record<string, string | string[] | undefined>;
    const length = header(h, "content-length");
    const range = header(h, "content-range");
    const whole = res.statusCode === 200 && start === 0 && length === String(end - start);
    if ((res.statusCode === 206 && (range === undefined || range.startsWith(asked))) || whole) return res.body;
    if (res.statusCode === 200 || res.statusCode === 206) {
      res.body.destroy();
      throw new AgentError(
        "STORAGE_FAILED",
        `GET ${label} ${asked.slice(0, -1)} answered HTTP ${res.statusCode}${range === undefined ? "" : ` ${range}`}: ` +
          "the server does not honour Range requests",
      );
    }
    throw await answerError("GET", label, res.statusCode, res.body, "DATASET_CHANGED");
  }

  /** PUTs body to a presigned URL with Content-MD5; resolves the ETag the store answered (unquoted, maybe empty). */
  async put(url: URL, body: Buffer, md5: string, op: string, signal?: AbortSignal): Promise<string> {
    const res = await this.#request(
      url,
      op,
      "PUT",
      { "content-md5": md5, "content-length": String(body.length) },
      signal,
      body,
    );
    if (res.statusCode < 200 || res.statusCode > 299)
      throw await answerError(op, urlLabel(url), res.statusCode, res.body, "STORAGE_FAILED");
    await res.body.dump().catch(() => {});
    return (header(res.headers as Record<string, string | string[] | undefined>, "etag") ?? "").replace(/^"|"$/g, "");
  }

  close(): void {
    this.#closed = true;
    for (const pool of this.#pools.values()) void pool.destroy().catch(() => {});
    this.#pools.clear();
  }
}

/**
 * DATASET_URL as a read-only store of one object, named by the last segment of the URL's path: the dataset pull
 * asks it as it asks a bucket for one archive or file. Writes are refused (a dataset URL is never written).
 */
export class UrlStore implements ObjectStore {
  readonly label: string;
  /** The whole URL as logs, errors and the dataset marker name it (urlLabel): no query. */
  readonly source: string;
  readonly key: string;
  /** The URL, query included: for reading only, never for messages (source). */
  readonly #url: URL;
  readonly #reader: UrlReader;
  #pin: UrlPin = { etag: "", lastModified: undefined };

  constructor(url: URL, options: UrlReaderOptions) {
    this.#url = url;
    this.#reader = new UrlReader(options);
    this.source = urlLabel(url);
    const last = url.pathname.split("/").pop() ?? "";
    let name: string;
    try {
      name = decodeURIComponent(last);
    } catch {
      name = last; // a stray % in the path: the name as written
    }
    this.key = name || "data";
    this.label = this.source.slice(0, this.source.length - last.length).replace(/\/$/, "");
  }

  /** The object's size, version and type, pinning later reads to this version. */
  async probe(signal?: AbortSignal): Promise<UrlObject> {
    const found = await this.#reader.probe(this.#url, signal);
    this.#pin = { etag: found.etag, lastModified: found.lastModified };
    return found;
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    if (key !== this.key) return null;
    const found = await this.probe(signal);
    return { key, size: found.size, etag: found.etag };
  }

  list(): Promise<ObjectInfo[]> {
    return Promise.reject(this.#readOnly("LIST"));
  }

  getRange(_key: string, start: number, end: number, _etag: string, signal?: AbortSignal): Promise<Readable> {
    return this.#reader.getRange(this.#url, start, end, this.#pin, signal);
  }

  readInto = (read: RangeRead): Promise<boolean> => this.#reader.readInto(this.#url, read, this.#pin);

  putObject(): Promise<string> {
    return Promise.reject(this.#readOnly("PUT"));
  }

  createMultipart(): Promise<never> {
    return Promise.reject(this.#readOnly("CreateMultipartUpload"));
  }

  deleteObject(): Promise<void> {
    return Promise.reject(this.#readOnly("DELETE"));
  }

  #readOnly(op: string): AgentError {
    return new AgentError("STORAGE_FAILED", `${op} ${this.label}: a DATASET_URL is read-only`);
  }

  close(): void {
    this.#reader.close();
  }
}
