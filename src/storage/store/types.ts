/**
 * The few object operations the storage code needs, implemented by an S3-compatible bucket (s3.ts) and by a local
 * directory playing the bucket (file.ts, STORAGE_TYPE=file). Keys are always relative to the bucket root.
 */
import type { Readable } from "node:stream";

export interface ObjectInfo {
  key: string;
  size: number;
  /** The store's entity tag without quotes (MD5 or MD5-of-MD5s-N on S3, MinIO and R2; an opaque stamp for files). */
  etag: string;
}

export interface UploadedObject {
  key: string;
  size: number;
  etag: string;
}

export interface PartSpec {
  partNumber: number;
  body: Buffer;
  /** Base64 MD5 of body, sent as Content-MD5. */
  md5: string;
}

export interface MultipartUpload {
  uploadPart(part: PartSpec, signal?: AbortSignal): Promise<string>;
  complete(parts: { partNumber: number; etag: string }[]): Promise<string>;
  abort(): Promise<void>;
}

/** One ranged read straight into a buffer (ObjectStore.readInto). */
export interface RangeRead {
  key: string;
  start: number;
  end: number;
  /** Pinned with If-Match unless empty. */
  etag: string;
  /** Receives bytes [start, end) from its byte 0. */
  into: Buffer;
  /** Called as bytes land, in order, so a caller can resume after a break. */
  onBytes: (n: number) => void;
  /** A body silent for this long fails with STORAGE_FAILED, ms. */
  idleTimeoutMs: number;
  signal?: AbortSignal;
}

export interface ObjectStore {
  /** `s3://bucket` or `file:///dir`, safe to log (never credentials). */
  readonly label: string;
  /** HEAD; null when the object does not exist. */
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null>;
  /** Every object under prefix (recursive), sorted by key. */
  list(prefix: string, signal?: AbortSignal): Promise<ObjectInfo[]>;
  /**
   * GET bytes [start, end) of key, pinned to etag: a changed object fails with DATASET_CHANGED.
   * The caller must consume or destroy the stream.
   */
  getRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<Readable>;
  /**
   * Optional zero-copy path: reads the range into read.into. Resolves false when this attempt must go through
   * getRange instead (an answer the fast path does not handle); rejects with STORAGE_FAILED when the body broke
   * off after read.onBytes reported what landed.
   */
  readInto?(read: RangeRead): Promise<boolean>;
  putObject(key: string, body: Buffer, md5: string, signal?: AbortSignal): Promise<string>;
  createMultipart(key: string, signal?: AbortSignal): Promise<MultipartUpload>;
  deleteObject(key: string): Promise<void>;
  close(): void;
}
