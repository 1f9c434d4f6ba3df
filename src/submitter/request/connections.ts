/** Where the agent reports and stores: the callback API and S3 storage settings. */
import { CHECKPOINT_STORES, datasetUrlExpected, type CheckpointStore } from "../../config/index.ts";
import { DNS1123_SUBDOMAIN } from "../names.ts";
import type { CallbackSpec, StorageSpec } from "../spec.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Obj, Reader } from "./reader.ts";

export function readCallback(
  r: Reader,
  req: Obj,
  name: string | undefined,
  fallback: CallbackSpec | undefined,
): CallbackSpec | undefined {
  const cb = isRecord(req.callback) ? req.callback : {};
  const baseUrl =
    r.string(cb, ["base_url", "baseUrl"], "callback.") ?? r.string(req, ["backend_base_url", "backendBaseUrl"]);
  const jobId = r.string(cb, ["job_id", "jobId"], "callback.") ?? r.string(req, ["job_id", "jobId"]);
  const token = r.string(cb, ["token"], "callback.");
  const url = baseUrl?.value ?? fallback?.baseUrl;
  if (url === undefined) return undefined;
  if (!/^https?:\/\/[^\s]+$/.test(url))
    r.problem(baseUrl?.field ?? "callback.base_url", `must be an http(s) URL, got ${describe(url)}`);
  const id = jobId?.value ?? name ?? "";
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id))
    r.problem(jobId?.field ?? "callback.job_id", `must be 1-128 letters, digits, ".", "_" or "-", got ${describe(id)}`);
  const tok = token?.value ?? (jobId === undefined ? undefined : fallback?.token);
  return { baseUrl: url, jobId: id, ...(tok === undefined ? {} : { token: tok }) };
}

export function readStorage(r: Reader, raw: unknown, fallback: StorageSpec | undefined): StorageSpec | undefined {
  if (raw === undefined || raw === null) return fallback;
  if (!isRecord(raw)) {
    r.problem("storage", `must be an object, got ${describe(raw)}`);
    return undefined;
  }
  const f = "storage.";
  const type = r.string(raw, ["type"], f)?.value;
  if (type !== undefined && !["minio", "r2", "s3", "file"].includes(type))
    r.problem("storage.type", `must be minio, r2, s3 or file, got ${describe(type)}`);
  const endpoint = r.string(raw, ["endpoint"], f)?.value;
  if (endpoint !== undefined && !/^https?:\/\/\S+$/.test(endpoint))
    r.problem("storage.endpoint", `must be an http(s) URL, got ${describe(endpoint)}`);
  const bucket = r.string(raw, ["bucket"], f)?.value;
  const region = r.string(raw, ["region"], f)?.value;
  const secretName = r.string(raw, ["credentials_secret", "credentialsSecret", "secret"], f);
  const accessKeyId = r.string(raw, ["access_key_id", "accessKeyId"], f)?.value;
  const secretAccessKey = r.string(raw, ["secret_access_key", "secretAccessKey"], f)?.value;
  if (secretName !== undefined && (accessKeyId !== undefined || secretAccessKey !== undefined)) {
    r.problem(secretName.field, "give either an existing Secret or literal keys, not both");
  }
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined))
    r.problem("storage.secret_access_key", "access_key_id and secret_access_key go together");
  if (secretName !== undefined && !DNS1123_SUBDOMAIN.test(secretName.value))
    r.problem(secretName.field, `must be a Secret name, got ${describe(secretName.value)}`);
  return {
    ...(type === undefined ? {} : { type: type as StorageSpec["type"] & string }),
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(bucket === undefined ? {} : { bucket }),
    ...(region === undefined ? {} : { region }),
    ...(secretName === undefined
      ? {}
      : {
          credentialsSecret: {
            name: secretName.value,
            accessKeyIdKey: r.string(raw, ["access_key_id_key", "accessKeyIdKey"], f)?.value ?? "access-key-id",
            secretAccessKeyKey:
              r.string(raw, ["secret_access_key_key", "secretAccessKeyKey"], f)?.value ?? "secret-access-key",
          },
        }),
    ...(accessKeyId === undefined ? {} : { accessKeyId }),
    ...(secretAccessKey === undefined ? {} : { secretAccessKey }),
  };
}

/**
 * Storage with no keys in the pod (docs/storage.md, "Presigned URLs"): `dataset_url`, a presigned GET the agent
 * reads as DATASET_URL, and `checkpoint_store`, `backend` for checkpoints through URLs the backend presigns. The
 * agent's own check (datasetUrlExpected): an http(s) URL without user:password@. The URL is shown with its
 * userinfo and query masked, since either may be the credential.
 */
export function readKeyless(r: Reader, req: Obj): { datasetUrl?: Field; checkpointStore?: Field<CheckpointStore> } {
  const url = r.string(req, ["dataset_url", "datasetUrl"]);
  let datasetUrl: Field | undefined;
  if (url !== undefined) {
    const expected = datasetUrlExpected(url.value);
    if (expected !== undefined) r.problem(url.field, `must be ${expected}, got ${describe(url.value)}`);
    else datasetUrl = url;
  }
  const store = r.string(req, ["checkpoint_store", "checkpointStore"]);
  let checkpointStore: Field<CheckpointStore> | undefined;
  if (store !== undefined) {
    if ((CHECKPOINT_STORES as readonly string[]).includes(store.value))
      checkpointStore = { field: store.field, value: store.value as CheckpointStore };
    else
      r.problem(
        store.field,
        `must be "bucket" (the storage keys) or "backend" (URLs the backend presigns; no keys in the pod), got ${describe(store.value)}`,
      );
  }
  return {
    ...(datasetUrl === undefined ? {} : { datasetUrl }),
    ...(checkpointStore === undefined ? {} : { checkpointStore }),
  };
}

interface Field<T = string> {
  readonly field: string;
  readonly value: T;
}
