/**
 * Ranged GETs over http and https (an in-cluster MinIO or RGW, R2, AWS S3) that land straight in the caller's
 * buffer. A socket's `onread` reads each chunk into the destination itself: over plain http the kernel copies the
 * bytes there, over TLS the decrypted record is copied there, and either way a GiB arrives with no per-read
 * allocation. node:http and undici take a fresh buffer for every socket read (over TLS, one per 16 KiB record),
 * and the SDK wraps each one in a stream chunk: several times the CPU of this path, plus the garbage collection
 * that drives RSS up during a pull (docs/storage.md, "Client settings", has the numbers).
 *
 * Requests are signed by the SDK's own SigV4 signer, with the client's credentials and region. Only the success
 * path lives here. Any answer that is not a plain 200/206 with a Content-Length (an error status, a redirect,
 * chunked encoding), and any failure before the answer starts (refused, reset, a stale keep-alive socket), returns
 * false: the caller repeats that request through the SDK, which owns retries and error mapping. A body that breaks
 * off or stalls after it started rejects with STORAGE_FAILED, after onBytes has reported every byte that landed,
 * so the caller resumes from there.
 */
import net from "node:net";
import tls from "node:tls";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentityProvider, ChecksumConstructor, HashConstructor } from "@smithy/types";
import { AgentError } from "../../errors/index.ts";
import { encodeKey } from "../../contract/s3-text.ts";
import type { RangeRead } from "./types.ts";

/** SHA-256 of an empty body: what a GET signs as its payload hash. */
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const HEAD_MAX = 16 * 1024;
/** Idle keep-alive sockets close after this long (servers drop theirs after 5-60 s). */
const KEEP_ALIVE_MS = 4_000;
const HEADER_END = Buffer.from("\r\n\r\n");
/** Successes in a form this reader does not take, in a row, after which every GET goes to the SDK. */
const OTHER_FORM_LIMIT = 3;

export interface DirectGetOptions {
  /** Scheme (http: or https:), host and port the GETs go to (for virtual-host style, the bucket's own host). */
  origin: URL;
  /** Path before the key: `/bucket` for path style (after any path of the endpoint), empty for virtual-host style. */
  pathPrefix: string;
  /** For messages: `s3://bucket`. */
  label: string;
  region: string;
  credentials: AwsCredentialIdentityProvider;
  sha256: ChecksumConstructor | HashConstructor;
  connectTimeoutMs: number;
  /** Idle keep-alive sockets kept for reuse. */
  maxIdle: number;
}

/** Signs ranged GETs of one endpoint with the SDK's SigV4 signer: (the read, its path) -> the request's headers. */
export function rangeSigner(opts: {
  origin: URL;
  region: string;
  credentials: AwsCredentialIdentityProvider;
  sha256: ChecksumConstructor | HashConstructor;
}): (req: RangeRead, path: string) => Promise<Record<string, string>> {
  const signer = new SignatureV4({
    service: "s3",
    region: opts.region,
    credentials: opts.credentials,
    sha256: opts.sha256,
    uriEscapePath: false, // S3 signs the path as sent, encoded once
    applyChecksum: false,
  });
  const { protocol, host } = opts.origin;
  const hostname = opts.origin.hostname.replace(/^\[|\]$/g, "");
  const port = opts.origin.port === "" ? undefined : Number(opts.origin.port);
  return async (req, path) => {
    const headers: Record<string, string> = {
      host,
      range: `bytes=${req.start}-${req.end - 1}`,
      "x-amz-content-sha256": EMPTY_SHA256,
    };
    if (req.etag !== "") headers["if-match"] = `"${req.etag}"`;
    const signed = await signer.sign({ method: "GET", protocol, hostname, port, path, query: {}, headers });
    return { ...signed.headers, "user-agent": "astrago-trainer" };
  };
}

type Phase = "idle" | "head" | "body";
/**
 * How a request ended: every byte landed; an answer that is not a success (an error status: the SDK maps it); a
 * success in a form this reader does not take (chunked, no Content-Length, not the range asked for); the socket
 * lost; silence; abort.
 */
type Outcome = "done" | "not-success" | "other-form" | "lost" | "stalled" | "aborted";
/** How far the answer had come: nothing yet, part of its head, its body. */
type Stage = "before" | "head" | "body";

/** One keep-alive connection whose reads go where the current request wants them. */
class Conn {
  readonly socket: net.Socket;
  readonly #head = Buffer.allocUnsafe(HEAD_MAX);
  #phase: Phase = "idle";
  #headLen = 0;
  #into: Buffer = this.#head;
  #filled = 0;
  #remaining = 0;
  #keepAlive = true;
  #request: RangeRead | undefined;
  #settle: ((outcome: Outcome, stage: Stage, received: number) => void) | undefined;

  constructor(origin: URL) {
    const host = origin.hostname.replace(/^\[|\]$/g, "");
    const onread: net.OnReadOpts = {
      buffer: () => this.#nextBuffer(),
      callback: (n: number) => {
        this.#onRead(n);
        return true; // never pause: the destination is already reserved
      },
    };
    // TLS sockets take onread too (node's types do not say so): decrypted records are copied into its buffer.
    this.socket =
      origin.protocol === "https:"
        ? tls.connect({
            host,
            port: Number(origin.port || 443),
            servername: net.isIP(host) === 0 ? host : undefined,
            ALPNProtocols: ["http/1.1"],
            onread,
          } as tls.ConnectionOptions)
        : net.connect({ host, port: Number(origin.port || 80), onread });
    // A request head is one small write: sent at once, not held back for an earlier segment's ACK. (tls.connect
    // does not pass a noDelay option on to its socket; setNoDelay before the connection applies once it is made.)
    this.socket.setNoDelay(true);
  }

  get busy(): boolean {
    return this.#settle !== undefined;
  }

  get reusable(): boolean {
    return this.#keepAlive && !this.socket.destroyed;
  }

  #nextBuffer(): Buffer {
    if (this.#phase === "body") return this.#into.subarray(this.#filled, this.#filled + this.#remaining);
    if (this.#phase === "head") return this.#head.subarray(this.#headLen);
    return this.#head; // idle: the next request's head starts at byte 0
  }

  /** Sends one request; settle is called exactly once. */
  start(req: RangeRead, head: string, settle: (outcome: Outcome, stage: Stage, received: number) => void): void {
    this.#request = req;
    this.#settle = settle;
    this.#headLen = 0;
    this.#filled = 0;
    this.#phase = "head";
    this.socket.write(head);
  }

  /** Ends the current request (if any) with outcome; anything but "done" drops the socket. */
  end(outcome: Outcome): void {
    if (outcome !== "done") this.socket.destroy();
    const settle = this.#settle;
    if (settle === undefined) return;
    const stage: Stage = this.#phase === "body" ? "body" : this.#headLen > 0 ? "head" : "before";
    const received = stage === "body" ? this.#filled : 0;
    this.#settle = undefined;
    this.#request = undefined;
    this.#into = this.#head; // keep no hold on the caller's buffer
    this.#phase = "idle";
    settle(outcome, stage, received);
  }

  #onRead(n: number): void {
    const req = this.#request;
    if (req === undefined) {
      this.socket.destroy(); // nothing is expected between answers
      return;
    }
    if (this.#phase === "body") {
      this.#filled += n;
      this.#remaining -= n;
      req.onBytes(n);
      if (this.#remaining === 0) this.end("done");
      return;
    }
    const from = Math.max(0, this.#headLen - 3);
    this.#headLen += n;
    const at = this.#head.subarray(0, this.#headLen).indexOf(HEADER_END, from);
    if (at < 0) {
      if (this.#headLen === HEAD_MAX) this.end("other-form");
      return;
    }
    const length = this.#parseHead(this.#head.toString("latin1", 0, at), req);
    const extra = this.#headLen - at - 4;
    if (typeof length !== "number" || extra > length) {
      this.end(length === "not-success" ? "not-success" : "other-form");
      return;
    }
    this.#into = req.into;
    this.#head.copy(this.#into, 0, at + 4, this.#headLen);
    this.#filled = extra;
    this.#remaining = length - extra;
    this.#phase = "body";
    if (extra > 0) req.onBytes(extra);
    if (this.#remaining === 0) this.end("done");
  }

  /** The body length of a plain success answer to req, or why not. */
  #parseHead(text: string, req: RangeRead): number | "not-success" | "other-form" {
    const lines = text.split("\r\n");
    const status = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? "");
    if (status === null) return "other-form";
    const code = Number(status[2]);
    let length: number | undefined;
    let range: string | undefined;
    let keepAlive = status[1] === "1";
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") length = /^\d+$/.test(value) ? Number(value) : undefined;
      else if (name === "content-range") range = value;
      else if (name === "transfer-encoding") return code < 200 || code > 299 ? "not-success" : "other-form";
      else if (name === "connection") keepAlive = /keep-alive/i.test(value) || (keepAlive && !/close/i.test(value));
    }
    this.#keepAlive = keepAlive;
    if (code < 200 || code > 299) return "not-success";
    if (code !== 206 && !(code === 200 && req.start === 0)) return "other-form";
    // Bytes of another range would land where these belong: the SDK path checks the same and fails loudly.
    if (code === 206 && range !== undefined && !range.startsWith(`bytes ${req.start}-${req.end - 1}/`))
      return "other-form";
    return length === req.end - req.start ? length : "other-form";
  }
}

export class DirectGet {
  readonly #opts: DirectGetOptions;
  readonly #sign: (req: RangeRead, path: string) => Promise<Record<string, string>>;
  /** "connect" for plain http; over TLS the socket is ready at "secureConnect". */
  readonly #ready: "connect" | "secureConnect";
  readonly #idle: Conn[] = [];
  #closed = false;
  /** Successes in a form this reader does not take, in a row: at OTHER_FORM_LIMIT it stands aside for good. */
  #otherForms = 0;

  constructor(opts: DirectGetOptions) {
    if (opts.origin.protocol !== "http:" && opts.origin.protocol !== "https:")
      throw new RangeError(`DirectGet reads http: and https: origins, not ${opts.origin.protocol}`);
    this.#opts = opts;
    this.#sign = rangeSigner(opts);
    this.#ready = opts.origin.protocol === "https:" ? "secureConnect" : "connect";
  }

  /**
   * Reads req.start..req.end of req.key into req.into. Resolves true when every byte landed, false when the answer
   * was not a plain success or the request failed before it started (ask the SDK instead), and from then on for
   * good once OTHER_FORM_LIMIT successes in a row came in a form it does not take; rejects with
   * STORAGE_FAILED when the body broke off or stalled, or with the signal's reason when aborted.
   */
  async read(req: RangeRead): Promise<boolean> {
    req.signal?.throwIfAborted();
    // An ETag that could not travel in a header as it is (a server's oddity) is left to the SDK.
    if (this.#closed || this.#otherForms >= OTHER_FORM_LIMIT || !/^[\x21-\x7e]*$/.test(req.etag)) return false;
    const head = await this.#requestHead(req);
    // A reused socket may have been closed by the server a moment ago: then one fresh connection, silently.
    let reused = this.#idle.pop();
    while (reused?.socket.destroyed === true) reused = this.#idle.pop(); // gone, its 'close' not yet seen
    if (reused !== undefined) {
      const r = await this.#run(reused, true, req, head);
      if (r !== "stale") return r;
    }
    const r = await this.#run(this.#connect(), false, req, head);
    return r === "stale" ? false : r;
  }

  #connect(): Conn {
    const conn = new Conn(this.#opts.origin);
    const { socket } = conn;
    socket.on("error", () => conn.end("lost"));
    socket.on("end", () => conn.end("lost"));
    socket.on("close", () => {
      conn.end("lost");
      const i = this.#idle.indexOf(conn);
      if (i >= 0) this.#idle.splice(i, 1);
    });
    socket.on("timeout", () => (conn.busy ? conn.end("stalled") : socket.destroy()));
    return conn;
  }

  async #requestHead(req: RangeRead): Promise<string> {
    const path = `${this.#opts.pathPrefix}/${encodeKey(req.key)}`;
    let head = `GET ${path} HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(await this.#sign(req, path))) head += `${k}: ${v}\r\n`;
    return `${head}\r\n`;
  }

  /** One attempt on conn: as read(), or "stale" when a reused socket failed before any answer. */
  #run(conn: Conn, reused: boolean, req: RangeRead, head: string): Promise<boolean | "stale"> {
    const { socket } = conn;
    const what = `GET ${this.#opts.label}/${req.key} bytes ${req.start}-${req.end - 1}`;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => conn.end("aborted");
      req.signal?.addEventListener("abort", onAbort, { once: true });
      const connectTimer = reused ? undefined : setTimeout(() => conn.end("lost"), this.#opts.connectTimeoutMs);
      if (!reused) socket.once(this.#ready, () => clearTimeout(connectTimer));
      socket.ref();
      socket.setTimeout(req.idleTimeoutMs);
      conn.start(req, head, (outcome, stage, received) => {
        clearTimeout(connectTimer);
        req.signal?.removeEventListener("abort", onAbort);
        if (outcome === "done") {
          this.#otherForms = 0;
          this.#release(conn);
          return resolve(true);
        }
        // An endpoint that answers chunked (a proxy in front of the store, say) would cost two requests per range.
        if (outcome === "other-form") this.#otherForms += 1;
        if (outcome === "aborted") return reject(req.signal?.reason as Error);
        if (stage === "body") {
          const why =
            outcome === "stalled"
              ? `no data for ${Math.round(req.idleTimeoutMs / 1000)} s`
              : `connection closed after ${received} of ${req.end - req.start} bytes`;
          return reject(new AgentError("STORAGE_FAILED", `${what}: ${why}`));
        }
        resolve(reused && stage === "before" && outcome === "lost" ? "stale" : false);
      });
    });
  }

  #release(conn: Conn): void {
    const { socket } = conn;
    if (this.#closed || !conn.reusable || this.#idle.length >= this.#opts.maxIdle) {
      socket.destroy();
      return;
    }
    socket.setTimeout(KEEP_ALIVE_MS);
    socket.unref();
    this.#idle.push(conn);
  }

  close(): void {
    this.#closed = true;
    for (const conn of this.#idle.splice(0)) conn.socket.destroy();
  }
}
