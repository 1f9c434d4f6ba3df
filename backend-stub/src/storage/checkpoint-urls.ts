/**
 * The stub's side of `POST /v1/jobs/{id}/checkpoint-urls` (docs/backend.md): it holds the S3 keys, the agent holds
 * none. It mints presigned URLs (PUT and UploadPart bound to the body's Content-MD5, GET for restores) and runs
 * the few operations a URL cannot carry (HEAD, LIST, create/complete/abort a multipart upload) itself, always
 * within the job's own prefix (`checkpoints/job-{id}/`).
 *
 * URLs are signed with the SDK's SigV4 signer (@smithy/signature-v4, already what the agent signs its ranged GETs
 * with), in query form as @aws-sdk/s3-request-presigner does: the payload is UNSIGNED-PAYLOAD, x-amz-* parameters
 * in the query, Content-MD5 a signed header. Path-style under an endpoint (MinIO, RGW, R2), virtual-host style on
 * AWS S3.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import {
  encodeKey,
  encodeSegment,
  jobCheckpointPrefix,
  unquoteEtag,
  type CheckpointUrlRequest,
} from "../../../src/contract/index.ts";
import { HttpError } from "../../../src/http/index.ts";

export interface CheckpointStorageOptions {
  /** S3-compatible endpoint (path-style addressing); AWS S3 (virtual-host style) when undefined. */
  endpoint?: string;
  bucket: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Lifetime of the URLs handed out, seconds (default 900; S3 allows up to 7 days). */
  expiresSeconds?: number;
}

export interface CheckpointUrls {
  /** The answer to one request of a job's agent (see CheckpointUrlAnswers); throws HttpError for a bad key. */
  handle(jobId: string, request: CheckpointUrlRequest): Promise<unknown>;
  close(): void;
}

/** Presigned URLs for objects of one bucket: method, key, extra query (UploadPart's), the Content-MD5 to bind. */
export type Presign = (
  method: "GET" | "PUT",
  key: string,
  query?: Record<string, string>,
  md5?: string,
) => Promise<{ url: string; expires_at: string }>;

/** The S3 client for options' bucket and its presigner (also how tests make a presigned dataset URL). */
export async function createPresigner(
  options: CheckpointStorageOptions,
  now: () => number = Date.now,
): Promise<{ client: S3Client; presign: Presign }> {
  const s3 = await import("@aws-sdk/client-s3");
  const region = options.region ?? "us-east-1";
  const expiresIn = options.expiresSeconds ?? 900;
  const client: S3Client = new s3.S3Client({
    region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint, forcePathStyle: true }),
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const signer = new SignatureV4({
    service: "s3",
    region,
    credentials: client.config.credentials,
    sha256: client.config.sha256,
    uriEscapePath: false, // S3 signs the path as sent, encoded once
    applyChecksum: false,
  });
  const base =
    options.endpoint === undefined
      ? { origin: new URL(`https://${options.bucket}.s3.${region}.amazonaws.com`), path: "" }
      : {
          origin: new URL(new URL(options.endpoint).origin),
          path: `${new URL(options.endpoint).pathname.replace(/\/+$/, "")}/${encodeKey(options.bucket)}`,
        };

  const presign: Presign = async (method, key, query = {}, md5) => {
    const { origin } = base;
    const path = `${base.path}/${encodeKey(key)}`;
    const signed = await signer.presign(
      {
        method,
        protocol: origin.protocol,
        hostname: origin.hostname.replace(/^\[|\]$/g, ""),
        ...(origin.port === "" ? {} : { port: Number(origin.port) }),
        path,
        query,
        headers: {
          host: origin.host,
          "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
          ...(md5 === undefined ? {} : { "content-md5": md5 }),
        },
      },
      { expiresIn, signingDate: new Date(now()) },
    );
    const search = Object.entries(signed.query ?? {})
      .map(([k, v]) => `${encodeSegment(k)}=${encodeSegment(String(v))}`)
      .join("&");
    return { url: `${origin.origin}${path}?${search}`, expires_at: new Date(now() + expiresIn * 1000).toISOString() };
  };
  return { client, presign };
}

export async function createCheckpointUrls(
  options: CheckpointStorageOptions,
  now: () => number = Date.now,
): Promise<CheckpointUrls> {
  const s3 = await import("@aws-sdk/client-s3");
  const { client, presign } = await createPresigner(options, now);
  const Bucket = options.bucket;

  function inJob(jobId: string, keyOrPrefix: string, field: string): void {
    const prefix = jobCheckpointPrefix(jobId);
    if (!keyOrPrefix.startsWith(prefix) || keyOrPrefix.split("/").some((s) => s === ".." || s === "."))
      throw new HttpError(
        403,
        "key_outside_job",
        `${field} must lie below this job's checkpoint prefix ${JSON.stringify(prefix)}, got ${JSON.stringify(keyOrPrefix)}`,
        { field },
      );
  }

  /** An S3 failure as the agent should see it: 502 (the store's fault, retryable), naming the operation. */
  function storeFailed(op: string, error: unknown): HttpError {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    return new HttpError(
      502,
      "storage_failed",
      `${op} in the backend's bucket failed: ${status === undefined ? (e.name ?? "error") : `HTTP ${status} ${e.name ?? ""}`}`,
    );
  }

  async function send<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw storeFailed(op, error);
    }
  }

  return {
    async handle(jobId, r) {
      if (r.op === "list") inJob(jobId, r.prefix, "prefix");
      else inJob(jobId, r.key, "key");
      switch (r.op) {
        case "put":
          return presign("PUT", r.key, {}, r.content_md5);
        case "get":
          return presign("GET", r.key);
        case "upload_part":
          return presign("PUT", r.key, { partNumber: String(r.part_number), uploadId: r.upload_id }, r.content_md5);
        case "head":
          try {
            const h = await client.send(new s3.HeadObjectCommand({ Bucket, Key: r.key }));
            return { object: { key: r.key, size: h.ContentLength ?? 0, etag: unquoteEtag(h.ETag) } };
          } catch (error) {
            const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
            if (e.$metadata?.httpStatusCode === 404 || e.name === "NotFound") return { object: null };
            throw storeFailed("HEAD", error);
          }
        case "list": {
          const objects: { key: string; size: number; etag: string }[] = [];
          let token: string | undefined;
          do {
            const page = await send("LIST", () =>
              client.send(new s3.ListObjectsV2Command({ Bucket, Prefix: r.prefix, ContinuationToken: token })),
            );
            for (const o of page.Contents ?? [])
              if (o.Key !== undefined) objects.push({ key: o.Key, size: o.Size ?? 0, etag: unquoteEtag(o.ETag) });
            token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
          } while (token !== undefined);
          return { objects };
        }
        case "create_multipart": {
          const c = await send("CreateMultipartUpload", () =>
            client.send(new s3.CreateMultipartUploadCommand({ Bucket, Key: r.key })),
          );
          if (c.UploadId === undefined) throw storeFailed("CreateMultipartUpload", new Error("no UploadId"));
          return { upload_id: c.UploadId };
        }
        case "complete_multipart": {
          const c = await send("CompleteMultipartUpload", () =>
            client.send(
              new s3.CompleteMultipartUploadCommand({
                Bucket,
                Key: r.key,
                UploadId: r.upload_id,
                MultipartUpload: { Parts: r.parts.map((p) => ({ PartNumber: p.part_number, ETag: `"${p.etag}"` })) },
              }),
            ),
          );
          return { etag: unquoteEtag(c.ETag) };
        }
        case "abort_multipart":
          await client.send(new s3.AbortMultipartUploadCommand({ Bucket, Key: r.key, UploadId: r.upload_id })).catch(
            () => {}, // stores expire unfinished uploads; s3rver does not implement Abort
          );
          return {};
      }
    },
    close() {
      client.destroy();
    },
  };
}
