/**
 * The one S3 client setup for MinIO, R2 and AWS S3. Settings that keep MinIO and R2 working with AWS SDK v3 >= 3.729:
 * flexible checksums only when an operation requires them (R2 rejected CRC32 headers for months, old MinIO releases
 * do not know them, ranged GETs fail whole-object checksum validation), explicit endpoint and region, path-style for
 * MinIO (virtual-host style needs MINIO_DOMAIN on the server), SDK retries on (standard mode). Integrity is checked
 * by the callers instead: Content-MD5 on every upload, If-Match on every ranged GET, CRC32 per zip entry, ETags.
 * Uploads are signed with UNSIGNED-PAYLOAD, as the AWS CLI does: over a plain-http endpoint the SDK would otherwise
 * SHA-256 every body on the event loop (docs/storage.md has the cost) for a guarantee Content-MD5 already gives.
 */
import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import type { StorageConfig } from "../../config/agent.ts";
import { AgentError } from "../../errors/index.ts";
import { DirectGet } from "./direct-get.ts";
import { encodeKey, unquoteEtag } from "../../contract/s3-text.ts";
import { isNotFound, storageError } from "./errors.ts";
import type { MultipartUpload, ObjectInfo, ObjectStore, PartSpec, RangeRead } from "./types.ts";

export interface S3StoreOptions {
  /** Sockets per host; at least the transfer concurrency. */
  maxSockets: number;
  /** Socket idle timeout, ms (a stalled response fails after this long and is retried). */
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  maxAttempts: number;
  /**
   * The in-place ranged reader, http and https alike: `socket` (direct-get.ts, the default: no per-read buffer,
   * far less CPU than undici) or `undici` (undici-get.ts), for tests and the bench to compare them.
   */
  rangeReader?: "socket" | "undici";
}

/** An in-place ranged reader (direct-get.ts, or undici-get.ts where asked for). */
interface RangeReader {
  read(read: RangeRead): Promise<boolean>;
  close(): void;
}

type S3Module = typeof import("@aws-sdk/client-s3");

export async function createS3Store(
  config: StorageConfig,
  bucket: string,
  options: S3StoreOptions,
): Promise<ObjectStore> {
  const s3: S3Module = await import("@aws-sdk/client-s3");
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets };
  const client = new s3.S3Client({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint.toString() }),
    forcePathStyle: config.type !== "s3",
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: options.maxAttempts,
    retryMode: "standard",
    ...(config.accessKeyId !== undefined && config.secretAccessKey !== undefined
      ? {
          credentials: {
            accessKeyId: config.accessKeyId.reveal(),
            secretAccessKey: config.secretAccessKey.reveal(),
          },
        }
      : {}),
    requestHandler: {
      httpAgent: new http.Agent(agentOptions),
      httpsAgent: new https.Agent(agentOptions),
      requestTimeout: options.requestTimeoutMs,
      connectionTimeout: options.connectTimeoutMs,
    },
  });
  client.middlewareStack.add(unsignedPayload, { step: "build", name: "astragoUnsignedPayload" });
  const origin = config.directReads ? directOrigin(config, bucket) : undefined;
  const shared = {
    region: config.region,
    credentials: client.config.credentials,
    sha256: client.config.sha256,
    connectTimeoutMs: options.connectTimeoutMs,
  };
  let direct: RangeReader | undefined;
  if (origin !== undefined) {
    const reader = { ...origin, ...shared, label: `s3://${bucket}` };
    // undici is imported only where it is asked for: running its modules costs ~2 MiB of RSS (docs/storage.md).
    direct =
      options.rangeReader === "undici"
        ? new (await import("./undici-get.ts")).UndiciGet({ ...reader, connections: options.maxSockets })
        : new DirectGet({ ...reader, maxIdle: options.maxSockets });
  }
  return new S3Store(s3, client, bucket, direct);
}

/**
 * Where in-place GETs go, as the SDK would address the bucket: path style (MinIO, R2) under the endpoint's path,
 * virtual-host style for AWS S3 (`bucket.s3.region.amazonaws.com`, or the bucket under a custom endpoint's host).
 * A bucket name that cannot be a host name (dots break the certificate match; the SDK then falls back to path style)
 * stays on the SDK.
 */
function directOrigin(config: StorageConfig, bucket: string): { origin: URL; pathPrefix: string } | undefined {
  if (config.type !== "s3") {
    if (config.endpoint === undefined) return undefined;
    const base = config.endpoint.pathname.replace(/\/+$/, "");
    return { origin: new URL(config.endpoint.origin), pathPrefix: `${base}/${encodeKey(bucket)}` };
  }
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) return undefined;
  const endpoint = config.endpoint ?? new URL(`https://s3.${config.region}.amazonaws.com`);
  if (endpoint.pathname.replace(/\/+$/, "") !== "") return undefined;
  return { origin: new URL(`${endpoint.protocol}//${bucket}.${endpoint.host}`), pathPrefix: "" };
}

const BODY_COMMANDS = new Set(["PutObjectCommand", "UploadPartCommand"]);

/** Marks upload bodies UNSIGNED-PAYLOAD before signing; the signer then skips hashing them (Content-MD5 stays). */
const unsignedPayload =
  <T extends object, R extends object>(
    next: (args: { request: unknown; input: T }) => Promise<R>,
    context: { commandName?: string },
  ): ((args: { request: unknown; input: T }) => Promise<R>) =>
  async (args) => {
    const request = args.request as { headers?: Record<string, string> } | undefined;
    if (BODY_COMMANDS.has(context.commandName ?? "") && request?.headers !== undefined)
      request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
    return next(args);
  };

class S3Store implements ObjectStore {
  readonly label: string;
  readonly #s3: S3Module;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #direct: RangeReader | undefined;
  readonly readInto: ((read: RangeRead) => Promise<boolean>) | undefined;

  constructor(s3: S3Module, client: S3Client, bucket: string, direct: RangeReader | undefined) {
    this.#s3 = s3;
    this.#client = client;
    this.#bucket = bucket;
    this.#direct = direct;
    this.readInto = direct === undefined ? undefined : (read) => direct.read(read);
    this.label = `s3://${bucket}`;
  }

  #where(key: string): string {
    return `s3://${this.#bucket}/${key}`;
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    try {
      const r = await this.#client.send(new this.#s3.HeadObjectCommand({ Bucket: this.#bucket, Key: key }), {
        abortSignal: signal,
      });
      return { key, size: r.ContentLength ?? 0, etag: unquoteEtag(r.ETag) };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw storageError(error, "HEAD", this.#where(key));
    }
  }

  async list(prefix: string, signal?: AbortSignal): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.#client.send(
          new this.#s3.ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, ContinuationToken: token }),
          { abortSignal: signal },
        );
        for (const o of r.Contents ?? [])
          if (o.Key !== undefined) out.push({ key: o.Key, size: o.Size ?? 0, etag: unquoteEtag(o.ETag) });
        token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
      } while (token !== undefined);
    } catch (error) {
      if (statusOfBucketMissing(error))
        throw new AgentError("STORAGE_UNAVAILABLE", `bucket ${this.label} does not exist (check S3_BUCKET)`, {
          cause: error,
        });
      throw storageError(error, "LIST", this.#where(prefix));
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async getRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<Readable> {
    if (end <= start) throw new RangeError(`empty range ${start}-${end}`);
    try {
      const r = await this.#client.send(
        new this.#s3.GetObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Range: `bytes=${start}-${end - 1}`,
          IfMatch: etag === "" ? undefined : `"${etag}"`,
        }),
        { abortSignal: signal },
      );
      const body = r.Body as Readable | undefined;
      if (body === undefined) throw new AgentError("STORAGE_FAILED", `GET ${this.#where(key)} returned no body`);
      const asked = `bytes ${start}-${end - 1}/`;
      if (r.ContentRange !== undefined && !r.ContentRange.startsWith(asked)) {
        body.destroy();
        throw new AgentError(
          "STORAGE_FAILED",
          `GET ${this.#where(key)} ${asked.slice(0, -1)} returned ${r.ContentRange} (another range)`,
        );
      }
      if (r.ContentLength !== undefined && r.ContentLength !== end - start) {
        body.destroy();
        throw new AgentError(
          "STORAGE_FAILED",
          `GET ${this.#where(key)} bytes ${start}-${end - 1} returned ${r.ContentLength} bytes (the server ignored the range?)`,
        );
      }
      return body;
    } catch (error) {
      if (isNotFound(error))
        throw new AgentError("DATASET_CHANGED", `${this.#where(key)} was deleted while it was being read`, {
          cause: error,
        });
      throw storageError(error, "GET", this.#where(key));
    }
  }

  async putObject(key: string, body: Buffer, md5: string, signal?: AbortSignal): Promise<string> {
    try {
      const r = await this.#client.send(
        new this.#s3.PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: body, ContentMD5: md5 }),
        { abortSignal: signal },
      );
      return unquoteEtag(r.ETag);
    } catch (error) {
      throw storageError(error, "PUT", this.#where(key));
    }
  }

  async createMultipart(key: string, signal?: AbortSignal): Promise<MultipartUpload> {
    const where = this.#where(key);
    let uploadId: string;
    try {
      const r = await this.#client.send(new this.#s3.CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: key }), {
        abortSignal: signal,
      });
      if (r.UploadId === undefined)
        throw new AgentError("STORAGE_FAILED", `CreateMultipartUpload ${where}: no UploadId`);
      uploadId = r.UploadId;
    } catch (error) {
      throw storageError(error, "CreateMultipartUpload", where);
    }
    const { Bucket, s3, client } = { Bucket: this.#bucket, s3: this.#s3, client: this.#client };
    return {
      async uploadPart(part: PartSpec, partSignal?: AbortSignal): Promise<string> {
        try {
          const r = await client.send(
            new s3.UploadPartCommand({
              Bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: part.partNumber,
              Body: part.body,
              ContentMD5: part.md5,
              ContentLength: part.body.length,
            }),
            { abortSignal: partSignal },
          );
          return unquoteEtag(r.ETag);
        } catch (error) {
          throw storageError(error, `UploadPart ${part.partNumber}`, where);
        }
      },
      async complete(parts): Promise<string> {
        try {
          const r = await client.send(
            new s3.CompleteMultipartUploadCommand({
              Bucket,
              Key: key,
              UploadId: uploadId,
              MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: `"${p.etag}"` })) },
            }),
          );
          return unquoteEtag(r.ETag);
        } catch (error) {
          throw storageError(error, "CompleteMultipartUpload", where);
        }
      },
      async abort(): Promise<void> {
        try {
          await client.send(new s3.AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId }));
        } catch {
          // Best effort: stores expire unfinished uploads (R2 after 7 days); s3rver does not implement Abort.
        }
      },
    };
  }

  async deleteObject(key: string): Promise<void> {
    try {
      await this.#client.send(new this.#s3.DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
    } catch (error) {
      throw storageError(error, "DELETE", this.#where(key));
    }
  }

  close(): void {
    this.#direct?.close();
    this.#client.destroy();
  }
}

function statusOfBucketMissing(error: unknown): boolean {
  return (error as { name?: string } | undefined)?.name === "NoSuchBucket";
}
