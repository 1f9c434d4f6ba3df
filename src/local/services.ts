/**
 * The servers a local run talks to: storage (configured, or an embedded S3 server with a bucket), the dataset
 * seeded from --dataset, and the backend (configured, or the stub in-process). Each one started here registers
 * its own cleanup.
 */
import { resolve } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { StorageConfig } from "../config/agent.ts";
import { AgentError } from "../errors/index.ts";
import { count, formatBytes } from "../log/units.ts";
import { startEmbeddedBackend, useExternalBackend, type LocalBackend } from "./backend.ts";
import { datasetIdFor, s3Client, seedDataset, startEmbeddedS3, type S3Target } from "./s3.ts";
import type { Cleanups, LocalDeps, LocalOptions } from "./types.ts";

/** Multipart part size for the embedded S3 server, which refuses bodies over 11 MiB (MiB). */
const EMBEDDED_PART_SIZE_MB = 8;

const BUCKET = "trainer-local";

export interface LocalStorage {
  /** The S3 endpoint and bucket when there is one (none for STORAGE_TYPE=file). */
  target: S3Target | undefined;
  client: S3Client | undefined;
  label: string;
  /** Variables every agent gets to reach it (empty when the environment already says). */
  agentEnv: Record<string, string>;
  /** --keyless: the agents reach it only through presigned URLs (agentEnv holds no keys). */
  keyless: boolean;
}

/** Lifetime of --keyless's presigned dataset URL: a long local run must not outlive it (S3 allows 7 days). */
const KEYLESS_URL_SECONDS = 24 * 3600;

/** The configured S3 store, or an embedded one when no storage is configured. */
export async function openStorage(
  storage: StorageConfig,
  env: LocalDeps["env"],
  cleanups: Cleanups,
  keyless = false,
): Promise<LocalStorage> {
  let target: S3Target | undefined;
  let label: string;
  const agentEnv: Record<string, string> = {};
  if (keyless && (storage.type !== undefined || storage.datasetId !== undefined || storage.datasetUri !== undefined))
    throw new AgentError(
      "USAGE",
      "--keyless runs against the embedded S3 server with no keys in the agents: unset STORAGE_TYPE, S3_*, DATASET_ID and DATASET_URI (give --dataset)",
    );
  if (storage.type === undefined) {
    const embedded = await startEmbeddedS3(BUCKET);
    cleanups.push(() => embedded.stop());
    target = embedded.target;
    label = `embedded S3 ${target.endpoint} bucket ${target.bucket}`;
    Object.assign(
      agentEnv,
      keyless
        ? { CHECKPOINT_STORE: "backend" }
        : {
            STORAGE_TYPE: "minio",
            S3_ENDPOINT: target.endpoint,
            S3_REGION: target.region,
            S3_BUCKET: target.bucket,
            S3_ACCESS_KEY_ID: target.accessKeyId,
            S3_SECRET_ACCESS_KEY: target.secretAccessKey,
          },
      // The embedded server takes request bodies up to 11 MiB; the agent's default 16 MiB parts would be
      // refused (413) for any checkpoint larger than one part (a presigned UploadPart as much as a signed one).
      env.STORAGE_PART_SIZE_MB === undefined ? { STORAGE_PART_SIZE_MB: String(EMBEDDED_PART_SIZE_MB) } : {},
    );
    if (keyless) label += " (keyless: no keys in the agents; checkpoints through the backend's presigned URLs)";
  } else if (storage.endpoint !== undefined && storage.bucket !== undefined) {
    target = {
      endpoint: storage.endpoint.href.replace(/\/$/, ""),
      region: storage.region,
      bucket: storage.bucket,
      accessKeyId: storage.accessKeyId?.reveal() ?? "",
      secretAccessKey: storage.secretAccessKey?.reveal() ?? "",
    };
    label = `${storage.type} ${target.endpoint} bucket ${target.bucket}`;
  } else {
    label = `${storage.type} storage (from the environment)`;
  }
  const client = target === undefined ? undefined : await s3Client(target);
  if (client !== undefined) cleanups.push(async () => client.destroy());
  return { target, client, label, agentEnv, keyless };
}

/**
 * Uploads --dataset as the job's dataset (DATASET_ID into agentEnv) and says what the agents will pull; undefined
 * when they pull nothing. `interrupted` names the signal that aborted an upload in flight.
 */
export async function prepareDataset(
  options: LocalOptions,
  deps: LocalDeps,
  storage: LocalStorage,
  signal: AbortSignal,
  interrupted: () => NodeJS.Signals | undefined,
): Promise<string | undefined> {
  if (options.dataset === undefined) {
    if (deps.env.DATASET_ID !== undefined || deps.env.DATASET_URI !== undefined)
      return deps.env.DATASET_URI ?? `datasets/${deps.env.DATASET_ID}`;
    return undefined;
  }
  const { client, target } = storage;
  if (client === undefined || target === undefined)
    throw new AgentError("USAGE", "--dataset needs S3 storage (S3_ENDPOINT and S3_BUCKET) or none configured");
  const id = options.datasetId ?? datasetIdFor(options.dataset);
  // On a terminal, one line that counts up while the archive streams to the bucket.
  let shown = 0;
  const progress = deps.color
    ? (bytes: number): void => {
        const now = Date.now();
        if (now - shown < 250) return;
        shown = now;
        deps.stdout.write(`\r  dataset    packing and uploading ${options.dataset}: ${formatBytes(bytes)}   `);
      }
    : undefined;
  const seeded = await seedDataset(
    client,
    target.bucket,
    resolve(deps.cwd, options.dataset),
    id,
    signal,
    progress,
  ).catch((error: unknown) => {
    const by = interrupted();
    if (by !== undefined)
      throw new AgentError("USAGE", `interrupted by ${by} while uploading the dataset`, { cause: error });
    throw error;
  });
  if (shown > 0) deps.stdout.write("\r\u001b[2K");
  if (storage.keyless) storage.agentEnv.DATASET_URL = await presignedGet(target, seeded.key);
  else storage.agentEnv.DATASET_ID = id;
  return `${seeded.key} (${count(seeded.files, "file")}, ${formatBytes(seeded.bytes)}) from ${options.dataset}`;
}

/** A GET URL for one object, signed as the backend signs its checkpoint URLs (the stub's presigner). */
async function presignedGet(target: S3Target, key: string): Promise<string> {
  const { createPresigner } = await import("../../backend-stub/src/storage/checkpoint-urls.ts");
  const { client, presign } = await createPresigner({
    ...checkpointStorageOf(target),
    expiresSeconds: KEYLESS_URL_SECONDS,
  });
  try {
    return (await presign("GET", key)).url;
  } finally {
    client.destroy();
  }
}

function checkpointStorageOf(target: S3Target) {
  return {
    endpoint: target.endpoint,
    bucket: target.bucket,
    region: target.region,
    accessKeyId: target.accessKeyId,
    secretAccessKey: target.secretAccessKey,
  };
}

/**
 * The configured backend (BACKEND_BASE_URL), or the stub in-process with a job created for this run; for
 * --keyless, the stub presigns checkpoint URLs for the embedded bucket (what BACKEND_S3_* give a stub).
 */
export async function openBackend(
  name: string,
  env: LocalDeps["env"],
  cleanups: Cleanups,
  storage?: LocalStorage,
): Promise<LocalBackend> {
  const baseUrl = env.BACKEND_BASE_URL;
  const embedded = baseUrl === undefined || baseUrl === "";
  if (storage?.keyless === true) {
    if (!embedded || storage.target === undefined)
      throw new AgentError("USAGE", "--keyless runs against the embedded backend stub: unset BACKEND_BASE_URL");
    const backend = await startEmbeddedBackend(name, checkpointStorageOf(storage.target));
    cleanups.push(() => backend.close());
    return backend;
  }
  if (embedded) {
    const backend = await startEmbeddedBackend(name);
    cleanups.push(() => backend.close());
    return backend;
  }
  return useExternalBackend({
    baseUrl,
    jobId: env.JOB_ID,
    token: env.CALLBACK_TOKEN,
    adminToken: env.BACKEND_ADMIN_TOKEN,
    name,
  });
}
