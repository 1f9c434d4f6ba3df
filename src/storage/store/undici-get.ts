/**
 * Ranged GETs on undici that land in the caller's buffer: a dispatcher handler copies each body chunk to its place
 * in the part buffer as the parser hands it over, so no stream, no async iterator and no SDK middleware stand
 * between the socket and the part. The S3 store reads through direct-get.ts by default, http and https alike: its
 * socket `onread` lands every read with no per-read buffer, where undici takes a fresh one per socket read (per
 * 16 KiB TLS record) and copies it into its parser, about 3x the user CPU (docs/storage.md, "Client settings").
 * This reader stays for stores that want undici (it also reads chunked answers in place) and for comparison
 * (the storage tuning's `rangeReader`).
 *
 * The contract is direct-get.ts's: requests signed by the SDK's SigV4 signer; only the success path lives here. An
 * answer that is not a success (an error status, a redirect: the SDK maps it, with its retries), one that is not the
 * range asked for, and a failure before the answer starts return false: the caller repeats that request through
 * the SDK. A body that breaks off or stalls after it started rejects with STORAGE_FAILED, after onBytes has
 * reported every byte that landed, so the caller resumes from there.
 */
import { Pool, type Dispatcher } from "undici";
import { AgentError } from "../../errors/index.ts";
import { rangeSigner, type DirectGetOptions } from "./direct-get.ts";
import { encodeKey } from "../../contract/s3-text.ts";
import type { RangeRead } from "./types.ts";

/** Idle keep-alive connections close after this long (servers drop theirs after 5-60 s). */
const KEEP_ALIVE_MS = 4_000;

/** The socket client's options (the same origin, signing and timeouts), with a pool size for its keep-alive. */
export interface UndiciGetOptions extends Omit<DirectGetOptions, "maxIdle"> {
  /** Connections kept to the origin (at least the transfer concurrency). */
  connections: number;
}

/**
 * How one attempt ended: every byte landed (true); not ours to read, ask the SDK (false); failed before any answer
 * ("retry": once more here, as a keep-alive connection the server just closed fails that way).
 */
type Attempt = boolean | "retry";

/** A keep-alive pool to one origin for ranged reads (UndiciGet's, and UrlReader's per URL origin). */
export function rangePool(origin: string, connections: number, connectTimeoutMs: number): Pool {
  return new Pool(origin, { connections, connect: { timeout: connectTimeoutMs }, keepAliveTimeout: KEEP_ALIVE_MS });
}

/** Where one ranged read goes: the request as sent (headers complete: range, signature or pin) and its name. */
export interface RangeTarget {
  pool: Dispatcher;
  origin: string;
  /** Path and query as sent; a URL's query is a credential, so `what` never includes it. */
  path: string;
  headers: Record<string, string>;
  /** The read as errors name it: `GET <label> bytes a-b`. */
  what: string;
}

/**
 * The in-place read both undici readers share (S3 keys signed by UndiciGet, plain URLs by store/url.ts): true when
 * every byte landed; false when the answer was not a success for this range (the caller goes the slow way, with its
 * retries); a failure before any answer is tried once more, as a keep-alive connection the server just closed fails
 * that way. Rejects with STORAGE_FAILED when the body broke off or stalled, or with the signal's reason.
 */
export async function readRange(target: RangeTarget, req: RangeRead): Promise<boolean> {
  const first = await attempt(target, req);
  if (first !== "retry") return first;
  return (await attempt(target, req)) === true;
}

function attempt(t: RangeTarget, req: RangeRead): Promise<Attempt> {
  return new Promise<Attempt>((resolve, reject) => {
    t.pool.dispatch(
      {
        origin: t.origin,
        path: t.path,
        method: "GET",
        headers: t.headers,
        headersTimeout: req.idleTimeoutMs,
        bodyTimeout: req.idleTimeoutMs,
      },
      new RangeHandler(req, t.what, resolve, reject),
    );
  });
}

/** Lands one answer's body in req.into; settles exactly once. */
class RangeHandler implements Dispatcher.DispatchHandler {
  readonly #req: RangeRead;
  readonly #what: string;
  readonly #resolve: (r: Attempt) => void;
  readonly #reject: (e: unknown) => void;
  readonly #length: number;
  /** Set once the answer is a success for this range: from then on failures are the body's. */
  #reading = false;
  /** An answer that is not ours (error status): drained, then false. */
  #declined = false;
  #received = 0;
  #settled = false;
  #controller: Dispatcher.DispatchController | undefined;
  readonly #onAbort = (): void => this.#controller?.abort(this.#req.signal?.reason as Error);

  constructor(req: RangeRead, what: string, resolve: (r: Attempt) => void, reject: (e: unknown) => void) {
    this.#req = req;
    this.#what = what;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#length = req.end - req.start;
    req.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  #settle(outcome: Attempt | Error): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#req.signal?.removeEventListener("abort", this.#onAbort);
    if (outcome instanceof Error) this.#reject(outcome);
    else this.#resolve(outcome);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#req.signal?.aborted === true) controller.abort(this.#req.signal.reason as Error);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    const req = this.#req;
    if (status < 200 || status > 299) {
      this.#declined = true; // an error body is small: read it to keep the connection
      return;
    }
    const length = headers["content-length"];
    const range = headers["content-range"];
    const ours =
      (status === 206 || (status === 200 && req.start === 0)) &&
      (length === undefined || Number(length) === this.#length) &&
      // Bytes of another range would land where these belong: the SDK path checks the same and fails loudly.
      (status !== 206 || range === undefined || String(range).startsWith(`bytes ${req.start}-${req.end - 1}/`));
    if (!ours) {
      this.#settle(false);
      controller.abort(new Error("not the range asked for"));
      return;
    }
    this.#reading = true;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#reading) return;
    const n = chunk.length;
    if (this.#received + n > this.#length) {
      // Longer than asked (a chunked answer can be): nothing past the range is written; the SDK path judges it.
      this.#settle(false);
      controller.abort(new Error("body longer than the range"));
      return;
    }
    this.#req.into.set(chunk, this.#received);
    this.#received += n;
    this.#req.onBytes(n);
  }

  onResponseEnd(): void {
    if (!this.#reading) return this.#settle(false);
    if (this.#received === this.#length) return this.#settle(true);
    this.#settle(new AgentError("STORAGE_FAILED", `${this.#what}: body ended after ${this.#received} bytes`));
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#req.signal?.aborted === true) return this.#settle(this.#req.signal.reason as Error);
    const code = (error as { code?: string }).code;
    if (!this.#reading) return this.#settle(this.#declined || code === "UND_ERR_HEADERS_TIMEOUT" ? false : "retry");
    const why =
      code === "UND_ERR_BODY_TIMEOUT"
        ? `no data for ${Math.round(this.#req.idleTimeoutMs / 1000)} s`
        : `connection closed after ${this.#received} of ${this.#length} bytes`;
    this.#settle(new AgentError("STORAGE_FAILED", `${this.#what}: ${why}`, { cause: error }));
  }
}

export class UndiciGet {
  readonly #opts: UndiciGetOptions;
  readonly #sign: (req: RangeRead, path: string) => Promise<Record<string, string>>;
  readonly #pool: Pool;
  #closed = false;

  constructor(opts: UndiciGetOptions) {
    this.#opts = opts;
    this.#sign = rangeSigner(opts);
    this.#pool = rangePool(opts.origin.origin, opts.connections, opts.connectTimeoutMs);
  }

  /**
   * Reads req.start..req.end of req.key into req.into. Resolves true when every byte landed, false when the answer
   * was not a success for this range or the request failed before it started (ask the SDK instead); rejects with
   * STORAGE_FAILED when the body broke off or stalled, or with the signal's reason when aborted.
   */
  async read(req: RangeRead): Promise<boolean> {
    req.signal?.throwIfAborted();
    // An ETag that could not travel in a header as it is (a server's oddity) is left to the SDK.
    if (this.#closed || !/^[\x21-\x7e]*$/.test(req.etag)) return false;
    const path = `${this.#opts.pathPrefix}/${encodeKey(req.key)}`;
    const headers = await this.#sign(req, path);
    const what = `GET ${this.#opts.label}/${req.key} bytes ${req.start}-${req.end - 1}`;
    return readRange({ pool: this.#pool, origin: this.#opts.origin.origin, path, headers, what }, req);
  }

  close(): void {
    this.#closed = true;
    void this.#pool.destroy().catch(() => {});
  }
}
