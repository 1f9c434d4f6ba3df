/**
 * `POST /v1/jobs/{id}/checkpoint-urls` (docs/backend.md): an agent without storage keys (CHECKPOINT_STORE=backend)
 * asks the backend, with the job's callback token, for what it needs to store and restore checkpoints. One
 * operation per request; every key is a full key in the backend's bucket and must lie below the job's prefix
 * (`checkpoints/job-{id}/`, jobCheckpointPrefix). Shared by the agent (store/presigned.ts) and the stub.
 */
import { z } from "zod";

const key = z.string().min(1).max(1024);
const base64Md5 = z.string().regex(/^[A-Za-z0-9+/]{22}==$/, "must be a base64 MD5 (Content-MD5)");
const uploadId = z.string().min(1).max(1024);
const partNumber = z.number().int().min(1).max(10_000);

export const CheckpointUrlRequest = z.discriminatedUnion("op", [
  /** A presigned PUT for one object up to 5 GiB (S3's single-PUT limit), bound to its Content-MD5. */
  z.object({ op: z.literal("put"), key, content_md5: base64Md5 }),
  /** A presigned GET (restore). */
  z.object({ op: z.literal("get"), key }),
  /** The object's size and ETag, or null (the backend asks the store itself). */
  z.object({ op: z.literal("head"), key }),
  /** Every object below prefix (the backend lists; a prefix outside the job's is refused). */
  z.object({ op: z.literal("list"), prefix: z.string().max(1024) }),
  z.object({ op: z.literal("create_multipart"), key }),
  /** A presigned UploadPart URL, bound to the part's Content-MD5. */
  z.object({ op: z.literal("upload_part"), key, upload_id: uploadId, part_number: partNumber, content_md5: base64Md5 }),
  z.object({
    op: z.literal("complete_multipart"),
    key,
    upload_id: uploadId,
    parts: z
      .array(z.object({ part_number: partNumber, etag: z.string().min(1).max(200) }))
      .min(1)
      .max(10_000),
  }),
  z.object({ op: z.literal("abort_multipart"), key, upload_id: uploadId }),
]);
export type CheckpointUrlRequest = z.infer<typeof CheckpointUrlRequest>;

const objectInfo = z.object({ key: z.string(), size: z.number().int().nonnegative(), etag: z.string() });

/** The answers, by operation. */
export const CheckpointUrlAnswers = {
  /** put, get, upload_part: the URL (its query is a credential) and when it stops working. */
  url: z.object({ url: z.url(), expires_at: z.string() }),
  head: z.object({ object: objectInfo.nullable() }),
  list: z.object({ objects: z.array(objectInfo) }),
  create_multipart: z.object({ upload_id: z.string().min(1) }),
  complete_multipart: z.object({ etag: z.string() }),
  abort_multipart: z.object({}),
};
