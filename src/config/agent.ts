/**
 * The agent's configuration: the one place that interprets the environment (CONTRACT section 2).
 * `loadAgentConfig(process.env)` is called once in main(); everything after takes the typed, frozen result.
 */
import { isIP } from "node:net";
import { inspect, type InspectOptions } from "node:util";
import { AgentError } from "../errors/index.ts";
import { DEFAULT_RETRY_POLICY } from "../retry/index.ts";
import { dirsOverlap, readWorkDirs } from "./dirs.ts";
import { GIT_SECRET_ENV_NAMES, readGitSource, type GitSourceConfig } from "./git.ts";
import { EnvReader, type Env } from "./parse.ts";
import { secretList } from "./mask.ts";
import { readPredict, type PredictConfig, type RunMode } from "./predict.ts";
import {
  isSecretLookingName,
  isSecretLookingValue,
  maskUrlQueries,
  urlPasswords,
  urlQueryCredentials,
  type Secret,
} from "./secret.ts";

export { RUN_MODES, type PredictConfig, type RunMode } from "./predict.ts";

export const STORAGE_TYPES = ["minio", "r2", "s3", "file"] as const;
export type StorageType = (typeof STORAGE_TYPES)[number];

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const CHECKPOINT_UPLOAD_MODES = ["rank0", "sharded", "off"] as const;
export type CheckpointUploadMode = (typeof CHECKPOINT_UPLOAD_MODES)[number];

export const STALL_ACTIONS = ["report", "terminate"] as const;
export type StallAction = (typeof STALL_ACTIONS)[number];

/** The hung-rank watchdog (src/agent/watchdog.ts). */
export interface StallConfig {
  /**
   * `STALL_SECONDS`: a fixed limit of quiet time (every node watches its own child), "auto" (node 0 watches, the
   * limit derived from the job's epoch times) or "off".
   */
  seconds: number | "auto" | "off";
  /** `STALL_ACTION`: report the stall only, or also end the job (after saving the checkpoint). */
  action: StallAction;
}

/** `PET_NPROC_PER_NODE`: a count, or one of torchrun's symbolic values (resolved later, see src/env). */
export type NprocPerNode = number | "auto" | "cpu" | "gpu";

export interface DistributedConfig {
  nnodes: number;
  nprocPerNode: NprocPerNode;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** `JOB_COMPLETION_INDEX`, when the pod is part of an indexed Job. */
  jobCompletionIndex: number | undefined;
  /** An existing `TF_CONFIG`, already checked to be a JSON object; left untouched. */
  tfConfig: string | undefined;
  tfPort: number;
  /** The pod's hostname (`HOSTNAME`), used to derive TensorFlow worker hosts when PET_MASTER_ADDR is absent. */
  hostname: string | undefined;
  /** Whether each PET_* value was given explicitly (torchrun reads the same variables itself). */
  explicit: ReadonlySet<string>;
}

export interface CallbackConfig {
  /** Callbacks are off when undefined. */
  baseUrl: URL | undefined;
  token: Secret | undefined;
  tokenFile: string | undefined;
  heartbeatIntervalSeconds: number;
  /** How long `done` keeps being retried before the agent gives up, seconds. */
  doneDeadlineSeconds: number;
  /** Per-request timeout, seconds. */
  requestTimeoutSeconds: number;
  /** Longest wait between two tries of a report, seconds (backoff doubles from 0.5 s up to it). */
  retryMaxDelaySeconds?: number;
}

export interface StorageConfig {
  /** Undefined when no storage is configured (no endpoint, bucket or URI). */
  type: StorageType | undefined;
  endpoint: URL | undefined;
  /** For STORAGE_TYPE=file: the directory that plays the bucket root. */
  fileRoot: string | undefined;
  accessKeyId: Secret | undefined;
  secretAccessKey: Secret | undefined;
  bucket: string | undefined;
  region: string;
  datasetId: string | undefined;
  datasetUri: string | undefined;
  /** Absolute; checked not to overlap checkpointDir nor be a dangerous folder (config/dirs.ts). */
  datasetDir: string;
  checkpointDir: string;
  /** Explicit CHECKPOINT_URI, else derived from bucket and JOB_ID by the storage module. */
  checkpointUri: string | undefined;
  checkpointUpload: CheckpointUploadMode;
  /** Parallel ranged GETs / multipart parts in flight. */
  concurrency: number;
  partSizeBytes: number;
  /**
   * Ranged GETs read straight into their destination buffers (store/direct-get.ts, http and https); false sends
   * every GET through the SDK's streams.
   */
  directReads: boolean;
  maxDatasetBytes: number;
  maxExpansionRatio: number;
  /**
   * DATASET_URL: the dataset as one object behind an http(s) URL (a presigned GET), checked to parse as one. A
   * Secret: its query is a credential, so the config never prints it.
   */
  datasetUrl: Secret | undefined;
  /**
   * CHECKPOINT_STORE: `bucket` (the S3 keys in the pod) or `backend` (presigned URLs the backend hands out for this
   * job's checkpoint prefix, so the pod holds no storage keys).
   */
  checkpointStore: CheckpointStore;
}

/** Whether the agent has storage work: a bucket or folder, a DATASET_URL, or checkpoints through the backend. */
export function storageWanted(sc: StorageConfig): boolean {
  return sc.type !== undefined || sc.datasetUrl !== undefined || sc.checkpointStore === "backend";
}

export const CHECKPOINT_STORES = ["bucket", "backend"] as const;
export type CheckpointStore = (typeof CHECKPOINT_STORES)[number];

/**
 * Kubeflow Trainer's status server (v2.2+, feature gate TrainJobStatus): the controller injects the endpoint URL
 * and two file paths into the trainer pods (pkg/runtime/framework/plugins/trainjobstatus in kubeflow/trainer).
 */
export interface TrainerStatusConfig {
  /** `KUBEFLOW_TRAINER_SERVER_URL`: https://.../namespaces/{ns}/trainjobs/{name}/status, POSTed as is. */
  url: URL;
  /** `KUBEFLOW_TRAINER_SERVER_CA_CERT`: path of the PEM CA that signed the status server's certificate. */
  caCertFile: string;
  /** `KUBEFLOW_TRAINER_SERVER_TOKEN`: path of a projected service-account token; it rotates, so read per request. */
  tokenFile: string;
}

/** The MLflow mirror (src/mlflow/): MLflow's own variables, read as its Python client reads them. */
export interface MlflowConfig {
  /** `MLFLOW_TRACKING_URI`, an http(s) tracking server; the REST API is under `{uri}/api/2.0/mlflow/`. */
  trackingUri: URL;
  /** `MLFLOW_EXPERIMENT_NAME`: got, or created when missing. */
  experimentName: string;
  /** `MLFLOW_EXPERIMENT_ID`: used as is, no lookup. */
  experimentId: string | undefined;
  /** `MLFLOW_TRACKING_TOKEN`: `Authorization: Bearer`. */
  token: Secret | undefined;
  /** `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`: Basic auth, preferred over the token (as MLflow does). */
  username: string | undefined;
  password: Secret | undefined;
  /** `MLFLOW_TRACKING_INSECURE_TLS`: no certificate checks. */
  insecureTls: boolean;
  /** `MLFLOW_FLUSH_SECONDS`: how long the end of the run may wait for what is queued and the final status. */
  flushSeconds: number;
}

export interface AgentConfig {
  jobId: string | undefined;
  traceId: string | undefined;
  traceparent: string | undefined;
  distributed: DistributedConfig;
  callbacks: CallbackConfig;
  storage: StorageConfig;
  /** The training code from git (CODE_GIT_*, config/git.ts); undefined when CODE_GIT_REPO is unset. */
  git: GitSourceConfig | undefined;
  /** Undefined when the Trainer injected nothing (or something unusable: see trainerStatusProblems). */
  trainerStatus: TrainerStatusConfig | undefined;
  /** Why the injected status-server settings are not used; logged as a warning, never fatal to the training. */
  trainerStatusProblems: readonly string[];
  /** Undefined when MLFLOW_TRACKING_URI is unset, not http(s), or MLFLOW_MIRROR is false (see mlflowNote). */
  mlflow: MlflowConfig | undefined;
  /** Why a set MLFLOW_TRACKING_URI is not mirrored (logged once); undefined otherwise. */
  mlflowNote: string | undefined;
  terminationGraceSeconds: number;
  /** Bound on the final checkpoint sync after the command exits on its own, seconds. */
  finalSyncTimeoutSeconds: number;
  /** Bound on the final checkpoint sync when the agent was told to terminate (the pod's grace is running), seconds. */
  terminationSyncSeconds: number;
  /** Lines of child output kept for the done report. */
  logTailLines: number;
  /** JobSet's restart attempt of this pod (JOBSET_RESTART_ATTEMPT, from the downward API; 0 when absent). */
  restartAttempt: number;
  stall: StallConfig;
  /** `LOG_LEVEL` of the agent's own logs (default info; debug shows retries and reports). */
  logLevel: LogLevel;
  /** The environment the child starts from (a frozen copy); the agent adds the translated variables to it. */
  baseEnv: Readonly<Record<string, string>>;
  /** `--mode`: a training (the default) or a predict run over a trained model. */
  mode: RunMode;
  /** The predict run's model and output; set exactly when mode is predict. */
  predict: PredictConfig | undefined;
}

/** The predict settings of a predict run; an INTERNAL error when called in a training run (a bug, not input). */
export function requirePredict(config: Pick<AgentConfig, "predict">): PredictConfig {
  if (config.predict === undefined) throw new AgentError("INTERNAL", "not a predict run (--mode predict)");
  return config.predict;
}

/** Variables whose values are never shown, not even in configuration errors. */
export const SECRET_ENV_NAMES = [
  "CALLBACK_TOKEN",
  "S3_SECRET_ACCESS_KEY",
  "R2_SECRET_ACCESS_KEY",
  "MINIO_SECRET_KEY",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "S3_ACCESS_KEY_ID",
  "R2_ACCESS_KEY_ID",
  "MINIO_ACCESS_KEY",
  "AWS_ACCESS_KEY_ID",
  "BACKEND_ADMIN_TOKEN",
  "CALLBACK_JWT_SECRET",
  "MLFLOW_TRACKING_TOKEN",
  "MLFLOW_TRACKING_PASSWORD",
  ...GIT_SECRET_ENV_NAMES,
] as const;

/**
 * Every secret value the agent holds, longest first, for masking what it sends to the backend: its keys and
 * callback token, the values of the secret variables and of secret-looking names in its environment, and
 * passwords inside URLs (`postgres://user:pass@host`). The token in CALLBACK_TOKEN_FILE is read by the caller.
 */
export function secretValues(config: AgentConfig): string[] {
  const values: (string | undefined)[] = [
    config.callbacks.token?.reveal(),
    config.storage.accessKeyId?.reveal(),
    config.storage.secretAccessKey?.reveal(),
    config.mlflow?.token?.reveal(),
    config.mlflow?.password?.reveal(),
    config.git?.password?.reveal(),
  ];
  for (const [name, value] of Object.entries(config.baseEnv)) {
    // A URL with a password keeps its host readable in what is sent: only the password is masked.
    const passwords = urlPasswords(value);
    if (
      (SECRET_ENV_NAMES as readonly string[]).includes(name) ||
      isSecretLookingName(name) ||
      (passwords.length === 0 && isSecretLookingValue(value))
    )
      values.push(value.trim());
    values.push(...passwords, ...urlQueryCredentials(value));
  }
  return secretList(values);
}

const ENDPOINT_NAMES = ["S3_ENDPOINT", "MINIO_ENDPOINT", "R2_ENDPOINT"] as const;
const ACCESS_KEY_NAMES = ["S3_ACCESS_KEY_ID", "R2_ACCESS_KEY_ID", "MINIO_ACCESS_KEY", "AWS_ACCESS_KEY_ID"] as const;
const SECRET_KEY_NAMES = ["S3_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"];
const BUCKET_NAMES = ["S3_BUCKET", "R2_BUCKET", "MINIO_BUCKET"] as const;

/** Reads and validates the whole agent environment; throws one CONFIG_INVALID error listing every problem. */
export function loadAgentConfig(env: Env, options: { mode?: RunMode } = {}): AgentConfig {
  const mode = options.mode ?? "train";
  const r = new EnvReader(env, SECRET_ENV_NAMES);

  const distributed = readDistributed(r);
  const callbacks = readCallbacks(r);
  const storage = readStorage(r, env);
  const git = readGitSource(r, env);
  for (const [name, dir] of [
    ["DATASET_DIR", storage.datasetDir],
    ["CHECKPOINT_DIR", storage.checkpointDir],
  ] as const) {
    if (git !== undefined && dirsOverlap(git.dir, dir))
      r.problems.push(
        `CODE_GIT_DIR (${JSON.stringify(git.dir)}) and ${name} (${JSON.stringify(dir)}) must be separate folders, neither inside the other`,
      );
  }
  const jobId = r.string("JOB_ID");
  if (callbacks.baseUrl !== undefined) {
    if (jobId === undefined) r.problems.push("JOB_ID must be set when BACKEND_BASE_URL is set (callbacks are on)");
    if (callbacks.token === undefined && callbacks.tokenFile === undefined)
      r.problems.push("CALLBACK_TOKEN or CALLBACK_TOKEN_FILE must be set when BACKEND_BASE_URL is set");
  }
  if (storage.checkpointStore === "backend" && callbacks.baseUrl === undefined)
    r.problems.push("BACKEND_BASE_URL must be set when CHECKPOINT_STORE is backend (the backend hands out the URLs)");
  const traceparent = r.string("TRACEPARENT");
  // W3C Trace Context: version ff and all-zero trace or parent ids are invalid.
  if (
    traceparent !== undefined &&
    (!/^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/.test(traceparent) ||
      traceparent.startsWith("ff-") ||
      /^..-0{32}-|-0{16}-..$/.test(traceparent))
  )
    r.problem("TRACEPARENT", "a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)", traceparent);
  const predict =
    mode === "predict"
      ? readPredict(r, env, {
          jobId,
          storageConfigured: storage.type !== undefined,
          datasetDir: storage.datasetDir,
          checkpointDir: storage.checkpointDir,
        })
      : undefined;

  const trainerStatus = readTrainerStatus(env);
  const mlflow = readMlflow(r);
  const config: AgentConfig = {
    jobId,
    traceId: r.string("TRACE_ID"),
    traceparent,
    distributed,
    callbacks,
    storage,
    git,
    trainerStatus: trainerStatus.config,
    trainerStatusProblems: trainerStatus.problems,
    mlflow: mlflow.config,
    mlflowNote: mlflow.note,
    terminationGraceSeconds: r.number("TERMINATION_GRACE_SECONDS", { min: 0, max: 3600, fallback: 25 }),
    finalSyncTimeoutSeconds: r.number("FINAL_SYNC_TIMEOUT_SECONDS", { min: 1, max: 86_400, fallback: 1800 }),
    terminationSyncSeconds: r.number("TERMINATION_SYNC_SECONDS", { min: 1, max: 3600, fallback: 60 }),
    logTailLines: r.int("LOG_TAIL_LINES", { min: 0, max: 10_000, fallback: 50 }),
    restartAttempt: r.int("JOBSET_RESTART_ATTEMPT", {
      min: 0,
      max: 1_000_000,
      fallback: 0,
      expected: "a non-negative integer (the pod annotation jobset.sigs.k8s.io/restart-attempt)",
    }),
    stall: readStall(r),
    logLevel: r.oneOf("LOG_LEVEL", LOG_LEVELS, "info"),
    baseEnv: childBaseEnv(env),
    mode,
    predict,
  };

  if (r.problems.length > 0) {
    throw new AgentError("CONFIG_INVALID", `invalid configuration: ${r.problems.join("; ")}`, {
      details: { problems: [...r.problems] },
    });
  }
  return deepFreeze(config);
}

function readDistributed(r: EnvReader): DistributedConfig {
  const explicit = new Set(
    ["PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"].filter(
      (n) => r.raw(n) !== undefined,
    ),
  );
  const nnodes = readNnodes(r);
  const nprocPerNode = readNproc(r);
  const jobCompletionIndex =
    r.raw("JOB_COMPLETION_INDEX") === undefined ? undefined : r.int("JOB_COMPLETION_INDEX", { min: 0, fallback: 0 });
  const nodeRank = r.int("PET_NODE_RANK", { min: 0, fallback: jobCompletionIndex ?? 0 });
  if (nodeRank >= nnodes && r.problems.length === 0) {
    // Name the variable the rank came from: an indexed Job's JOB_COMPLETION_INDEX when PET_NODE_RANK is unset.
    const source =
      r.raw("PET_NODE_RANK") === undefined && jobCompletionIndex !== undefined
        ? "JOB_COMPLETION_INDEX (the node rank when PET_NODE_RANK is unset)"
        : "PET_NODE_RANK";
    r.problems.push(`${source} must be less than PET_NNODES (${nnodes}), got ${JSON.stringify(String(nodeRank))}`);
  }
  const masterAddr = r.string("PET_MASTER_ADDR", "localhost");
  // A host name (letters, digits, '.', '-', '_') or an IP address; "host:port" and "tcp://host" are common mistakes.
  if (!/^[A-Za-z0-9._-]+$/.test(masterAddr) && isIP(masterAddr) === 0)
    r.problem("PET_MASTER_ADDR", "a host name or IP address (no port, no scheme)", masterAddr);
  const masterPort = r.int("PET_MASTER_PORT", {
    min: 1,
    max: 65535,
    fallback: 29500,
    expected: "a port from 1 to 65535",
  });
  const tfPort = r.int("TF_PORT", { min: 1, max: 65535, fallback: 2222, expected: "a port from 1 to 65535" });

  const tfConfig = r.raw("TF_CONFIG");
  if (tfConfig !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(tfConfig);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      r.problem("TF_CONFIG", "a JSON object", tfConfig.length > 80 ? `${tfConfig.slice(0, 77)}...` : tfConfig);
  }
  return {
    nnodes,
    nprocPerNode,
    nodeRank,
    masterAddr,
    masterPort,
    jobCompletionIndex,
    tfConfig,
    tfPort,
    hostname: r.string("HOSTNAME"),
    explicit,
  };
}

/** torchrun accepts `N` or `MIN:MAX`; a pod of a non-elastic TrainJob gets `N`. `MIN:MAX` with MIN == MAX is N. */
function readNnodes(r: EnvReader): number {
  const v = r.raw("PET_NNODES");
  if (v === undefined) return 1;
  const m = /^(\d+)(?::(\d+))?$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
  if (!m || lo < 1 || hi !== lo) {
    r.problem("PET_NNODES", "a positive integer (or MIN:MAX with MIN == MAX)", v);
    return 1;
  }
  return lo;
}

function readNproc(r: EnvReader): NprocPerNode {
  const v = r.raw("PET_NPROC_PER_NODE");
  if (v === undefined) return 1;
  const lower = v.toLowerCase();
  if (lower === "auto" || lower === "cpu" || lower === "gpu") return lower;
  return r.int("PET_NPROC_PER_NODE", { min: 1, fallback: 1, expected: "a positive integer or auto, cpu, gpu" });
}

/**
 * The Trainer's status-server settings, read apart from the rest: progress reporting is optional, so what is wrong
 * with them becomes a warning and reporting stays off, rather than a CONFIG_INVALID that would fail the pod.
 */
function readTrainerStatus(env: Env): { config: TrainerStatusConfig | undefined; problems: string[] } {
  const r = new EnvReader(env, SECRET_ENV_NAMES);
  const url = r.url("KUBEFLOW_TRAINER_SERVER_URL", ["https:"]);
  if (r.raw("KUBEFLOW_TRAINER_SERVER_URL") === undefined) return { config: undefined, problems: [] };
  const caCertFile = r.string("KUBEFLOW_TRAINER_SERVER_CA_CERT");
  const tokenFile = r.string("KUBEFLOW_TRAINER_SERVER_TOKEN");
  for (const [name, value] of [
    ["KUBEFLOW_TRAINER_SERVER_CA_CERT", caCertFile],
    ["KUBEFLOW_TRAINER_SERVER_TOKEN", tokenFile],
  ] as const) {
    if (value === undefined)
      r.problems.push(`${name} must be set (a file path) when KUBEFLOW_TRAINER_SERVER_URL is set`);
    else if (!value.startsWith("/")) r.problem(name, "an absolute file path (the Trainer mounts it)", value);
  }
  if (r.problems.length > 0 || url === undefined || caCertFile === undefined || tokenFile === undefined)
    return { config: undefined, problems: [...r.problems] };
  return { config: { url, caCertFile, tokenFile }, problems: [] };
}

/** The longest fixed STALL_SECONDS: a week (a stall longer than that is a job nobody watches anyway). */
const MAX_STALL_SECONDS = 604_800;

function readStall(r: EnvReader): StallConfig {
  const action = r.oneOf("STALL_ACTION", STALL_ACTIONS, "report");
  const raw = r.raw("STALL_SECONDS");
  const lower = raw?.toLowerCase();
  if (raw === undefined || lower === "auto") return { seconds: "auto", action };
  if (lower === "off" || raw === "0") return { seconds: "off", action };
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1 || n > MAX_STALL_SECONDS) {
    r.problem("STALL_SECONDS", `a number of seconds from 1 to ${MAX_STALL_SECONDS}, auto, or off (0)`, raw);
    return { seconds: "auto", action };
  }
  return { seconds: n, action };
}

/** Experiment of the runs when MLFLOW_EXPERIMENT_NAME is unset: one place for every job this agent runs. */
export const DEFAULT_MLFLOW_EXPERIMENT = "astrago-trainer";

/**
 * MLflow's variables. A tracking URI MLflow's Python client takes but a REST mirror cannot (`file:./mlruns`,
 * `databricks`, `sqlite:///...`) is the training code's own business: a note, not an error. A malformed http(s)
 * URI or half of the Basic credentials is a configuration error: the user asked for a mirror that cannot work
 * (unless MLFLOW_MIRROR=false: then the variables are the training code's alone).
 */
function readMlflow(r: EnvReader): { config: MlflowConfig | undefined; note: string | undefined } {
  const raw = r.raw("MLFLOW_TRACKING_URI");
  const mirror = r.bool("MLFLOW_MIRROR", true);
  if (raw === undefined) return { config: undefined, note: undefined };
  // The training code logs to MLflow itself: its variables are its own business, not the agent's to judge.
  if (!mirror) return { config: undefined, note: "MLFLOW_MIRROR is false; the run is not mirrored to MLflow" };
  if (!/^https?:/i.test(raw))
    return {
      config: undefined,
      note: "MLFLOW_TRACKING_URI is not an http(s) tracking server; the run is not mirrored",
    };
  const trackingUri = r.url("MLFLOW_TRACKING_URI");
  const username = r.string("MLFLOW_TRACKING_USERNAME");
  const password = r.secret("MLFLOW_TRACKING_PASSWORD");
  if ((username === undefined) !== (password === undefined))
    r.problems.push("MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together (Basic auth)");
  const config: MlflowConfig | undefined =
    trackingUri === undefined
      ? undefined
      : {
          trackingUri,
          experimentName: r.string("MLFLOW_EXPERIMENT_NAME", DEFAULT_MLFLOW_EXPERIMENT),
          experimentId: r.string("MLFLOW_EXPERIMENT_ID"),
          token: r.secret("MLFLOW_TRACKING_TOKEN"),
          username,
          password,
          insecureTls: r.bool("MLFLOW_TRACKING_INSECURE_TLS", false),
          flushSeconds: r.number("MLFLOW_FLUSH_SECONDS", { min: 0, max: 600, fallback: 10 }),
        };
  return { config, note: undefined };
}

function readCallbacks(r: EnvReader): CallbackConfig {
  return {
    baseUrl: r.url("BACKEND_BASE_URL"),
    token: r.secret("CALLBACK_TOKEN"),
    tokenFile: r.string("CALLBACK_TOKEN_FILE"),
    heartbeatIntervalSeconds: r.number("HEARTBEAT_INTERVAL_SECONDS", { min: 1, max: 86_400, fallback: 30 }),
    doneDeadlineSeconds: r.number("DONE_DEADLINE_SECONDS", { min: 0, max: 3_600, fallback: 60 }),
    requestTimeoutSeconds: r.number("CALLBACK_TIMEOUT_SECONDS", { min: 0.1, max: 600, fallback: 10 }),
    // The project's retry policy: waits start at its first delay and are capped at its longest by default.
    retryMaxDelaySeconds: r.number("CALLBACK_RETRY_MAX_SECONDS", {
      min: DEFAULT_RETRY_POLICY.minDelayMs / 1000,
      max: 600,
      fallback: DEFAULT_RETRY_POLICY.maxDelayMs / 1000,
    }),
  };
}

function readStorage(r: EnvReader, env: Env): StorageConfig {
  const endpointVar = r.firstOf(ENDPOINT_NAMES);
  const endpoint = endpointVar === undefined ? undefined : r.url(endpointVar.name);
  const bucket = r.firstOf(BUCKET_NAMES)?.value;
  const datasetUri = r.string("DATASET_URI");
  if (datasetUri !== undefined && !/^(s3|file):\/\/[^/]+/.test(datasetUri))
    r.problem("DATASET_URI", "an s3://bucket/key-or-prefix URI", datasetUri);
  const checkpointUri = r.string("CHECKPOINT_URI");
  if (checkpointUri !== undefined && !/^(s3|file):\/\/[^/]+/.test(checkpointUri))
    r.problem("CHECKPOINT_URI", "an s3://bucket/prefix/ URI", checkpointUri);
  const datasetId = r.string("DATASET_ID");
  if (datasetId !== undefined && (datasetId.includes("..") || datasetId.startsWith("/")))
    r.problem("DATASET_ID", "a dataset name without '..' or a leading '/'", datasetId);

  const explicitType = r.oneOf("STORAGE_TYPE", STORAGE_TYPES);
  const fileRoot = r.string("STORAGE_PATH");
  let type: StorageType | undefined = explicitType;
  if (type === undefined) {
    if (endpoint !== undefined) type = endpointVar?.name === "R2_ENDPOINT" ? "r2" : "minio";
    else if (fileRoot !== undefined) type = "file";
    else if (bucket !== undefined || datasetUri !== undefined || checkpointUri !== undefined) type = "s3";
  }
  if (type === "file" && fileRoot === undefined)
    r.problems.push("STORAGE_PATH must be set to a directory when STORAGE_TYPE is file");
  if ((type === "minio" || type === "r2") && endpoint === undefined)
    r.problems.push(`S3_ENDPOINT must be set when STORAGE_TYPE is ${type}`);

  return {
    type,
    endpoint,
    fileRoot,
    accessKeyId: firstSecret(r, ACCESS_KEY_NAMES),
    secretAccessKey: firstSecret(r, SECRET_KEY_NAMES),
    bucket,
    region: r.string("S3_REGION") ?? (type === "r2" ? "auto" : "us-east-1"),
    datasetId,
    datasetUri,
    ...readWorkDirs(r, env),
    checkpointUri,
    checkpointUpload: r.oneOf("CHECKPOINT_UPLOAD", CHECKPOINT_UPLOAD_MODES, "rank0"),
    concurrency: r.int("STORAGE_CONCURRENCY", { min: 1, max: 64, fallback: 8 }),
    partSizeBytes: r.int("STORAGE_PART_SIZE_MB", { min: 5, max: 5_120, fallback: 16 }) * 1024 * 1024,
    directReads: r.bool("STORAGE_DIRECT_READS", true),
    maxDatasetBytes: r.int("DATASET_MAX_BYTES", { min: 1, fallback: 1024 ** 4 }),
    maxExpansionRatio: r.number("DATASET_MAX_EXPANSION_RATIO", { min: 1, fallback: 200 }),
    ...readPresignedStorage(r, { datasetId, datasetUri }),
  };
}

/**
 * Storage without keys in the pod (docs/storage.md, "Presigned URLs"): DATASET_URL instead of DATASET_ID/URI, and
 * CHECKPOINT_STORE=backend, which asks the backend (BACKEND_BASE_URL, the job's token) for presigned URLs.
 */
function readPresignedStorage(
  r: EnvReader,
  other: { datasetId: string | undefined; datasetUri: string | undefined },
): Pick<StorageConfig, "datasetUrl" | "checkpointStore"> {
  const raw = r.raw("DATASET_URL");
  let datasetUrl: Secret | undefined;
  if (raw !== undefined) {
    const expected = datasetUrlExpected(raw);
    if (expected !== undefined) r.problem("DATASET_URL", expected, raw);
    else datasetUrl = r.secret("DATASET_URL");
    if (other.datasetId !== undefined || other.datasetUri !== undefined)
      r.problems.push(
        `DATASET_URL and ${other.datasetUri !== undefined ? "DATASET_URI" : "DATASET_ID"} are both set: give one dataset`,
      );
  }
  const checkpointStore = r.oneOf("CHECKPOINT_STORE", CHECKPOINT_STORES, "bucket");
  return { datasetUrl, checkpointStore };
}

/**
 * What a DATASET_URL (or a request's `dataset_url`, which the submitter passes as one) must be, when `url` is not
 * that; undefined when it is one: an http(s) URL without user:password@, since a presigned URL carries its own
 * credential in its query.
 */
export function datasetUrlExpected(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return DATASET_URL_FORM;
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return DATASET_URL_FORM;
  if (parsed.username !== "" || parsed.password !== "") return "a URL without user:password@ (use a presigned URL)";
  return undefined;
}

const DATASET_URL_FORM = "an https:// URL (a presigned GET) or an http:// URL";

function firstSecret(r: EnvReader, names: readonly string[]): Secret | undefined {
  for (const n of names) {
    const s = r.secret(n);
    if (s !== undefined) return s;
  }
  return undefined;
}

/**
 * The frozen copy of the environment the child starts from. It holds secrets in clear (the child may need its
 * S3 keys), so it prints masked: JSON.stringify and util.inspect of the config show secret values as `***`.
 * The masking members are non-enumerable: spreading or iterating the object still gives the real values.
 */
function childBaseEnv(env: Env): Readonly<Record<string, string>> {
  const copy = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  const masked = (): Record<string, string> =>
    Object.fromEntries(
      Object.entries(copy).map(([k, v]) => [
        k,
        (SECRET_ENV_NAMES as readonly string[]).includes(k)
          ? "***"
          : urlQueryCredentials(v).length > 0
            ? maskUrlQueries(v)
            : v,
      ]),
    );
  Object.defineProperty(copy, "toJSON", { value: masked, enumerable: false });
  Object.defineProperty(copy, inspect.custom, {
    value: (_depth: number, options: InspectOptions, inspectFn: typeof inspect) => inspectFn(masked(), options),
    enumerable: false,
  });
  return Object.freeze(copy);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !(value instanceof URL) && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
