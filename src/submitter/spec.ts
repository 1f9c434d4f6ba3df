/** The submitter's validated job spec: what `normalizeJobRequest` returns and `renderJob` consumes. */
import type { CheckpointStore } from "../config/agent.ts";

export const FRAMEWORKS = ["pytorch", "tensorflow"] as const;
export type Framework = (typeof FRAMEWORKS)[number];

/** ClusterTrainingRuntime per framework (CONTRACT section 7). */
export const DEFAULT_RUNTIMES: Readonly<Record<Framework, string>> = {
  pytorch: "pytorch-simple",
  tensorflow: "tensorflow-distributed",
};

/**
 * How the node container finds the agent: `init` = an init container of the runtime copied it into the shared
 * `trainer-agent` volume at /opt/agent (any framework image works); `baked` = the image ships `trainer-agent` on PATH.
 */
export type AgentMode = "init" | "baked";
export const AGENT_DIR = "/opt/agent";
export const AGENT_VOLUME = "trainer-agent";
export const CODE_VOLUME = "train-script";
export const CODE_MOUNT_PATH = "/workspace/scripts";

export type VolumeSource =
  | { readonly kind: "pvc"; readonly claimName: string }
  | { readonly kind: "configMap"; readonly name: string }
  | { readonly kind: "secret"; readonly name: string }
  | { readonly kind: "emptyDir"; readonly medium?: "Memory"; readonly sizeLimit?: string }
  | { readonly kind: "hostPath"; readonly path: string };

export interface VolumeSpec {
  readonly name: string;
  readonly mountPath: string;
  readonly readOnly: boolean;
  readonly subPath?: string;
  readonly source: VolumeSource;
}

export interface KeyRef {
  readonly name: string;
  readonly key: string;
}

/** A user env var: a literal value, or a reference. Secret-looking literals are moved into the job's Secret. */
export interface EnvVarSpec {
  readonly name: string;
  readonly value?: string;
  readonly secretKeyRef?: KeyRef;
  readonly configMapKeyRef?: KeyRef;
  readonly fieldPath?: string;
}

export interface ResourceSpec {
  readonly cpuRequest?: string;
  readonly cpuLimit?: string;
  readonly memoryRequest?: string;
  readonly memoryLimit?: string;
  /** GPUs per node; 0 = no accelerator resource at all. */
  readonly gpu: number;
  readonly gpuResource: string;
}

export interface CallbackSpec {
  readonly baseUrl: string;
  readonly jobId: string;
  /** The JWT; stored in the job's Secret, reaching the pod only through secretKeyRef. */
  readonly token?: string;
}

export interface StorageSpec {
  readonly type?: "minio" | "r2" | "s3" | "file";
  readonly endpoint?: string;
  readonly bucket?: string;
  readonly region?: string;
  /** An existing Secret holding the keys (preferred), or literal keys copied into the job's Secret. */
  readonly credentialsSecret?: {
    readonly name: string;
    readonly accessKeyIdKey: string;
    readonly secretAccessKeyKey: string;
  };
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
}

/** Pod-level settings applied to the `node` job through a runtime patch (from the seeds' override fields). */
export interface PodPatchSpec {
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly nodeSelector?: Readonly<Record<string, string>>;
  readonly tolerations?: readonly unknown[];
  readonly affinity?: unknown;
  readonly serviceAccountName?: string;
  readonly imagePullSecrets?: readonly string[];
  readonly securityContext?: unknown;
  readonly containerSecurityContext?: unknown;
  readonly terminationGracePeriodSeconds?: number;
}

/** A predict job: the agent runs `--mode predict` with the model named here (one of the two). */
export interface PredictSpec {
  /** MODEL_JOB_ID: the job whose latest complete checkpoint is the model. */
  readonly modelJobId?: string;
  /** MODEL_URI: s3://bucket/key of a checkpoint object, or a checkpoint root ending in "/". */
  readonly modelUri?: string;
  /** PREDICTIONS_URI: where the predictions go (default predictions/job-{JOB_ID}/ in the bucket). */
  readonly predictionsUri?: string;
}

export interface JobSpec {
  readonly name: string;
  readonly namespace: string;
  readonly userId?: string;
  readonly framework: Framework;
  readonly runtime: string;
  readonly agent: AgentMode;
  readonly image?: string;
  readonly numNodes: number;
  /** Processes per node: torchrun workers (pytorch); always 1 for tensorflow. */
  readonly procPerNode: number;
  readonly resources: ResourceSpec;
  /** The training command as an argv; the agent runs it. */
  readonly command: readonly string[];
  readonly env: readonly EnvVarSpec[];
  readonly volumes: readonly VolumeSpec[];
  /** Files of the training code (file name -> content), mounted read-only at /workspace/scripts. */
  readonly code?: Readonly<Record<string, string>>;
  /** Training code from git instead (never with `code`). */
  readonly git?: GitSpec;
  readonly callback?: CallbackSpec;
  readonly storage?: StorageSpec;
  readonly datasetId?: string;
  readonly datasetUri?: string;
  /**
   * DATASET_URL: the dataset as one object behind an http(s) URL (a presigned GET). Its query is a credential: it
   * reaches the pod only through the job's Secret.
   */
  readonly datasetUrl?: string;
  readonly checkpointUri?: string;
  /**
   * CHECKPOINT_STORE: `backend` stores and restores checkpoints through URLs the backend presigns, so the pod
   * needs no storage keys (absent: the agent's default, `bucket`).
   */
  readonly checkpointStore?: CheckpointStore;
  readonly activeDeadlineSeconds?: number;
  /** Set for a predict job (inference over a trained model) instead of a training. */
  readonly predict?: PredictSpec;
  /**
   * The job's correlation id: TRACE_ID of the agent (its logs and callbacks) and a label and annotation on the
   * pods, so log collectors that keep pod labels select the job's lines by it. submit makes one when none is given.
   */
  readonly traceId?: string;
  readonly pod: PodPatchSpec;
  /** Non-fatal notes from normalisation (dropped seed fields, literal shell syntax): shown to the user. */
  readonly warnings: readonly string[];
}

/**
 * Training code from a git repository, fetched by the agent before the command runs (CODE_GIT_* in the pod). The
 * command runs in the checkout's `subdir`; credentials come only from an existing Secret, by reference.
 */
export interface GitSpec {
  readonly url: string;
  /** Branch, tag, full ref or commit id; absent = the remote's default branch. */
  readonly revision?: string;
  readonly subdir?: string;
  /** A Secret with `username` (optional) and `password` or `token`: the keys are read by secretKeyRef. */
  readonly credentialsSecret?: {
    readonly name: string;
    readonly usernameKey: string;
    readonly passwordKey: string;
    readonly tokenKey: string;
  };
}
