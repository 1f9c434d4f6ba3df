/**
 * The submitter's environment: defaults for `trainjob serve` and `submit` (the CLI entry passes process.env here;
 * nothing else reads it). Bad values are reported together, each naming its variable.
 */
import { AgentError } from "../errors/index.ts";
import { EnvReader, type Env, type Secret } from "../config/index.ts";
import type { AgentMode, CallbackSpec, StorageSpec } from "./spec.ts";
import type { NormalizeOptions } from "./request/index.ts";

export interface SubmitterConfig {
  readonly namespace?: string;
  /** Bearer token required by `serve` (TRAINJOB_API_TOKEN). */
  readonly apiToken?: Secret;
  readonly port: number;
  readonly host: string;
  /** Callback base URL given to pods (BACKEND_BASE_URL). */
  readonly callbackUrl?: string;
  /** Where the submitter registers jobs (TRAINJOB_BACKEND_URL, default BACKEND_BASE_URL). */
  readonly backendUrl?: string;
  readonly backendAdminToken?: Secret;
  readonly agent?: AgentMode;
  readonly runtimes: { pytorch?: string; tensorflow?: string };
  readonly storage?: StorageSpec;
}

export const SUBMITTER_ENV = [
  "TRAINJOB_NAMESPACE",
  "TRAINJOB_API_TOKEN",
  "TRAINJOB_PORT",
  "TRAINJOB_HOST",
  "BACKEND_BASE_URL",
  "TRAINJOB_BACKEND_URL",
  "BACKEND_ADMIN_TOKEN",
  "TRAINJOB_AGENT",
  "TRAINJOB_PYTORCH_RUNTIME",
  "TRAINJOB_TENSORFLOW_RUNTIME",
  "STORAGE_TYPE",
  "S3_ENDPOINT",
  "S3_BUCKET",
  "S3_REGION",
  "TRAINJOB_STORAGE_SECRET",
] as const;

export function loadSubmitterConfig(env: Env): SubmitterConfig {
  const r = new EnvReader(env, ["TRAINJOB_API_TOKEN", "BACKEND_ADMIN_TOKEN"]);
  const url = (name: string): string | undefined => {
    const v = r.string(name);
    if (v !== undefined && !/^https?:\/\/\S+$/.test(v)) r.problem(name, "an http(s) URL", v);
    return v;
  };
  const namespace = r.string("TRAINJOB_NAMESPACE");
  const apiToken = r.secret("TRAINJOB_API_TOKEN");
  const port = r.int("TRAINJOB_PORT", { min: 0, max: 65535, fallback: 8080 });
  const host = r.string("TRAINJOB_HOST", "127.0.0.1");
  const callbackUrl = url("BACKEND_BASE_URL");
  const backendUrl = url("TRAINJOB_BACKEND_URL") ?? callbackUrl;
  const backendAdminToken = r.secret("BACKEND_ADMIN_TOKEN");
  const agent = r.oneOf("TRAINJOB_AGENT", ["init", "baked"] as const);
  const storageSecret = r.string("TRAINJOB_STORAGE_SECRET");
  const type = r.oneOf("STORAGE_TYPE", ["minio", "r2", "s3", "file"] as const);
  const endpoint = url("S3_ENDPOINT");
  const bucket = r.string("S3_BUCKET");
  const region = r.string("S3_REGION");
  if (r.problems.length > 0) throw new AgentError("CONFIG_INVALID", r.problems.join("; "));
  const storage: StorageSpec | undefined =
    (type ?? endpoint ?? bucket ?? storageSecret)
      ? {
          ...(type === undefined ? {} : { type }),
          ...(endpoint === undefined ? {} : { endpoint }),
          ...(bucket === undefined ? {} : { bucket }),
          ...(region === undefined ? {} : { region }),
          ...(storageSecret === undefined
            ? {}
            : {
                credentialsSecret: {
                  name: storageSecret,
                  accessKeyIdKey: "access-key-id",
                  secretAccessKeyKey: "secret-access-key",
                },
              }),
        }
      : undefined;
  const pytorch = r.string("TRAINJOB_PYTORCH_RUNTIME");
  const tensorflow = r.string("TRAINJOB_TENSORFLOW_RUNTIME");
  return {
    ...(namespace === undefined ? {} : { namespace }),
    ...(apiToken === undefined ? {} : { apiToken }),
    port,
    host,
    ...(callbackUrl === undefined ? {} : { callbackUrl }),
    ...(backendUrl === undefined ? {} : { backendUrl }),
    ...(backendAdminToken === undefined ? {} : { backendAdminToken }),
    ...(agent === undefined ? {} : { agent }),
    runtimes: { ...(pytorch === undefined ? {} : { pytorch }), ...(tensorflow === undefined ? {} : { tensorflow }) },
    ...(storage === undefined ? {} : { storage }),
  };
}

/** Normalisation defaults from the configuration (callback URL without a token: the submitter registers the job). */
export function normalizeOptionsFrom(config: SubmitterConfig, namespace?: string): NormalizeOptions {
  const callback: CallbackSpec | undefined =
    config.callbackUrl === undefined ? undefined : { baseUrl: config.callbackUrl, jobId: "" };
  return {
    defaultNamespace: namespace ?? config.namespace ?? "default",
    defaults: {
      ...(callback === undefined ? {} : { callback }),
      ...(config.storage === undefined ? {} : { storage: config.storage }),
      ...(config.agent === undefined ? {} : { agent: config.agent }),
      runtimes: config.runtimes,
    },
  };
}
