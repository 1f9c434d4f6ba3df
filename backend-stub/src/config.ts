/**
 * The backend stub's configuration from its environment (read once in main.ts):
 * BACKEND_PORT, BACKEND_HOST, CALLBACK_JWT_SECRET, BACKEND_ADMIN_TOKEN, BACKEND_DATA_DIR,
 * BACKEND_JOURNAL, BACKEND_TOKEN_TTL_SECONDS, BACKEND_MAX_BODY_BYTES, BACKEND_INSECURE_NO_AUTH, LOG_LEVEL, and the
 * bucket it presigns checkpoint URLs for (BACKEND_S3_*, readCheckpointStorage).
 */
import { EnvReader, type Env, type Secret } from "../../src/config/public.ts";
import { AgentError } from "../../src/errors/index.ts";
import { isLoopbackHost } from "../../src/http/index.ts";
import { DEFAULT_MAX_BODY_BYTES } from "./http/body.ts";
import type { CheckpointStorageOptions } from "./storage/checkpoint-urls.ts";
import { DEFAULT_TOKEN_TTL_SECONDS } from "./stub.ts";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export interface BackendConfig {
  port: number;
  host: string;
  /** Undefined: main.ts generates one (or reuses the one it generated before in the data dir). */
  secret: Secret | undefined;
  adminToken: Secret | undefined;
  dataDir: string;
  /** BACKEND_JOURNAL=off keeps jobs in memory only (throwaway runs, benchmarks). */
  journal: boolean;
  tokenTtlSeconds: number;
  maxBodyBytes: number;
  logLevel: (typeof LOG_LEVELS)[number];
  checkpointStorage: CheckpointStorageOptions | undefined;
}

/** Reads the stub's environment; every bad variable is named in one CONFIG_INVALID error. */
export function loadBackendConfig(env: Env): BackendConfig {
  const r = new EnvReader(env, [
    "CALLBACK_JWT_SECRET",
    "BACKEND_ADMIN_TOKEN",
    "BACKEND_S3_ACCESS_KEY_ID",
    "BACKEND_S3_SECRET_ACCESS_KEY",
  ]);
  const config: BackendConfig = {
    port: r.int("BACKEND_PORT", { min: 0, max: 65535, fallback: 8000, expected: "a TCP port from 0 to 65535" }),
    host: r.string("BACKEND_HOST", "127.0.0.1"),
    secret: r.secret("CALLBACK_JWT_SECRET"),
    adminToken: r.secret("BACKEND_ADMIN_TOKEN"),
    dataDir: r.string("BACKEND_DATA_DIR", ".tmp/backend-stub"),
    journal: r.bool("BACKEND_JOURNAL", true),
    tokenTtlSeconds: r.int("BACKEND_TOKEN_TTL_SECONDS", {
      min: 60,
      max: 30 * 24 * 3600,
      fallback: DEFAULT_TOKEN_TTL_SECONDS,
    }),
    maxBodyBytes: r.int("BACKEND_MAX_BODY_BYTES", {
      min: 1024,
      max: 64 * 1024 * 1024,
      fallback: DEFAULT_MAX_BODY_BYTES,
    }),
    logLevel: r.oneOf("LOG_LEVEL", LOG_LEVELS, "info"),
    checkpointStorage: readCheckpointStorage(r),
  };
  // Beyond loopback, anyone who reaches the port could create and cancel jobs: the same rule as `trainjob serve`.
  const insecure = r.bool("BACKEND_INSECURE_NO_AUTH", false);
  if (!isLoopbackHost(config.host) && config.adminToken === undefined && !insecure) {
    r.problems.push(
      `BACKEND_HOST=${config.host} listens beyond loopback: set BACKEND_ADMIN_TOKEN (or BACKEND_INSECURE_NO_AUTH=1 to run open)`,
    );
  }
  if (r.problems.length > 0) {
    throw new AgentError("CONFIG_INVALID", `invalid backend stub configuration:\n  ${r.problems.join("\n  ")}`, {
      details: { problems: r.problems },
    });
  }
  return Object.freeze(config);
}

/**
 * The bucket the stub presigns checkpoint URLs for: BACKEND_S3_BUCKET turns it on, and then its keys must be set
 * (BACKEND_S3_ENDPOINT for MinIO, RGW or R2; AWS S3 without it).
 */
function readCheckpointStorage(r: EnvReader): CheckpointStorageOptions | undefined {
  const bucket = r.string("BACKEND_S3_BUCKET");
  if (bucket === undefined) return undefined;
  const endpoint = r.url("BACKEND_S3_ENDPOINT");
  const accessKeyId = r.secret("BACKEND_S3_ACCESS_KEY_ID");
  const secretAccessKey = r.secret("BACKEND_S3_SECRET_ACCESS_KEY");
  for (const [name, value] of [
    ["BACKEND_S3_ACCESS_KEY_ID", accessKeyId],
    ["BACKEND_S3_SECRET_ACCESS_KEY", secretAccessKey],
  ] as const)
    if (value === undefined) r.problems.push(`${name} must be set when BACKEND_S3_BUCKET is set`);
  const expiresSeconds = r.int("BACKEND_PRESIGN_EXPIRES_SECONDS", { min: 1, max: 604_800, fallback: 900 });
  if (accessKeyId === undefined || secretAccessKey === undefined) return undefined;
  return {
    ...(endpoint === undefined ? {} : { endpoint: endpoint.toString() }),
    bucket,
    region: r.string("BACKEND_S3_REGION", "us-east-1"),
    accessKeyId: accessKeyId.reveal(),
    secretAccessKey: secretAccessKey.reveal(),
    expiresSeconds,
  };
}
