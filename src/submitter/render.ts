/**
 * Pure rendering of a JobSpec into the objects `submit` creates: the TrainJob (trainer.kubeflow.org/v1alpha1,
 * Kubeflow Trainer v2.3 form), a ConfigMap with the training code and a Secret with the callback token and any
 * credentials. The node container's command is the agent; env goes to `spec.trainer.env`; volumes and mounts go
 * through `spec.runtimePatches` (podTemplateOverrides and podSpecOverrides no longer exist in v2.3).
 */
import { createHash } from "node:crypto";
import { escapeKubernetesExpansion } from "./argv.ts";
import { LABEL_VALUE, NODE_CONTAINER, NODE_JOB } from "./names.ts";
import { isSecretLookingName, isSecretLookingValue, urlQueryCredentials } from "../config/index.ts";
import {
  AGENT_DIR,
  CODE_MOUNT_PATH,
  CODE_VOLUME,
  type EnvVarSpec,
  type GitSpec,
  type JobSpec,
  type VolumeSpec,
} from "./spec.ts";

export const TRAINER_API_VERSION = "trainer.kubeflow.org/v1alpha1";
/** Owner of the submitter's runtime patch entry (the list is keyed by manager). */
export const PATCH_MANAGER = "trainer.astrago.io/submitter";
export const SPEC_HASH_ANNOTATION = "trainer.astrago.io/spec-hash";
/** Label and annotation with the job's trace id, on the TrainJob and its pods (the agent's TRACE_ID). */
export const TRACE_ID_LABEL = "trainer.astrago.io/trace-id";
export const MANAGED_BY = "astrago-trainjob";
/** Key of the callback JWT in the job's Secret. */
export const CALLBACK_TOKEN_KEY = "callback-token";

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    uid?: string;
    ownerReferences?: Array<Record<string, unknown>>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
};

export interface RenderedJob {
  readonly trainJob: K8sObject;
  readonly configMap?: K8sObject;
  readonly secret?: K8sObject;
  /** sha256 of what defines the job (TrainJob spec, code, Secret key names, not values): equal hash = same job. */
  readonly specHash: string;
  readonly warnings: readonly string[];
}

export function configMapName(jobName: string): string {
  return `${jobName}-train-script`;
}

export function secretName(jobName: string): string {
  return `${jobName}-trainer-secrets`;
}

/** The node container's command: the agent, then the user's argv with `$` escaped against kubelet expansion. */
export function agentCommand(spec: Pick<JobSpec, "agent" | "framework" | "command" | "predict">): string[] {
  const bin = spec.agent === "init" ? `${AGENT_DIR}/trainer-agent` : "trainer-agent";
  const mode = spec.predict === undefined ? [] : ["--mode", "predict"];
  return [bin, "run", ...mode, "--framework", spec.framework, "--", ...spec.command.map(escapeKubernetesExpansion)];
}

/** A predict job's variables for the agent (docs/run.md): the model and where the predictions go. */
function predictEnv(spec: JobSpec, setManaged: (name: string, value: string | undefined) => void): void {
  if (spec.predict === undefined) return;
  setManaged("MODEL_JOB_ID", spec.predict.modelJobId);
  setManaged("MODEL_URI", spec.predict.modelUri);
  setManaged("PREDICTIONS_URI", spec.predict.predictionsUri);
}

function secretRef(secret: string, key: string): Record<string, unknown> {
  return { secretKeyRef: { name: secret, key } };
}

/** The agent's attempt number, from JobSet's pod annotation through the downward API (absent: 0). */
export const RESTART_ATTEMPT_ENV = "JOBSET_RESTART_ATTEMPT";
export const RESTART_ATTEMPT_ENV_VAR = {
  name: RESTART_ATTEMPT_ENV,
  valueFrom: { fieldRef: { fieldPath: "metadata.annotations['jobset.sigs.k8s.io/restart-attempt']" } },
} as const;

/** Secret data keys are the env names, lower-cased with `_` -> `-` (valid ConfigMap/Secret keys). */
function secretKeyFor(envName: string): string {
  return envName.toLowerCase().replaceAll("_", "-");
}

export function renderJob(spec: JobSpec): RenderedJob {
  const warnings = [...spec.warnings];
  const labels: Record<string, string> = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    "app.kubernetes.io/part-of": "astrago-trainer",
    "trainer.astrago.io/trainjob": spec.name,
    "trainer.astrago.io/framework": spec.framework,
  };
  // normalizeJobRequest refuses a user_id that is not a label value; a hand-made JobSpec's is left out here.
  if (spec.userId !== undefined && LABEL_VALUE.test(spec.userId)) {
    labels["trainer.astrago.io/user-id"] = spec.userId;
  }
  const sName = secretName(spec.name);
  const secretData: Record<string, string> = {};
  const env: Array<Record<string, unknown>> = [];
  const fromSecret = (name: string, value: string): void => {
    // Env names differ by case and `_`/`-` where keys do not (`DB_PASS`, `db-pass`), and `callback_token` must
    // not read the callback JWT: a taken key gets a numbered one.
    const base = secretKeyFor(name);
    let key = base;
    for (let i = 2; key in secretData || key === CALLBACK_TOKEN_KEY; i++) key = `${base}-${i}`;
    secretData[key] = value;
    env.push({ name, valueFrom: secretRef(sName, key) });
  };

  const userEnvNames = new Set(spec.env.map((e) => e.name));
  const setManaged = (name: string, value: string | undefined): void => {
    if (value === undefined) return;
    if (userEnvNames.has(name)) {
      warnings.push(`env ${name}: the job's own value is kept; the submitter would have set ${JSON.stringify(value)}`);
      return;
    }
    env.push(literalEnv(name, value));
  };

  for (const e of spec.env) env.push(...userEnv(e, spec, fromSecret, warnings));

  setManaged("TRACE_ID", spec.traceId);
  // Always set: the callback API needs it, and the agent's default checkpoint prefix is checkpoints/job-{JOB_ID}/,
  // so a job submitted again under the same name resumes from its own checkpoints.
  setManaged("JOB_ID", spec.callback?.jobId ?? spec.name);
  // Which attempt this pod is (JobSet restarts all pods on a failure and counts on this annotation): every
  // callback carries it, so the backend keeps a restarted job's reports and refuses a superseded attempt's.
  if (!userEnvNames.has(RESTART_ATTEMPT_ENV)) env.push(RESTART_ATTEMPT_ENV_VAR);
  if (spec.callback !== undefined) {
    setManaged("BACKEND_BASE_URL", spec.callback.baseUrl);
    // Always referenced, so the rendered job is the same whether or not the token is known yet (the submitter
    // registers the job with the backend and fills the Secret; an idempotent re-submit does not know it).
    if (!userEnvNames.has("CALLBACK_TOKEN")) {
      env.push({ name: "CALLBACK_TOKEN", valueFrom: secretRef(sName, CALLBACK_TOKEN_KEY) });
      if (spec.callback.token !== undefined) secretData[CALLBACK_TOKEN_KEY] = spec.callback.token;
      else {
        warnings.push(
          `callback: the token is not known yet; Secret ${sName} must hold key ${CALLBACK_TOKEN_KEY} (submit registers the job with the backend)`,
        );
      }
    }
  }
  const st = spec.storage;
  if (st !== undefined) {
    setManaged("STORAGE_TYPE", st.type);
    setManaged("S3_ENDPOINT", st.endpoint);
    setManaged("S3_BUCKET", st.bucket);
    setManaged("S3_REGION", st.region);
    if (st.credentialsSecret !== undefined) {
      env.push({
        name: "S3_ACCESS_KEY_ID",
        valueFrom: secretRef(st.credentialsSecret.name, st.credentialsSecret.accessKeyIdKey),
      });
      env.push({
        name: "S3_SECRET_ACCESS_KEY",
        valueFrom: secretRef(st.credentialsSecret.name, st.credentialsSecret.secretAccessKeyKey),
      });
    } else if (st.accessKeyId !== undefined && st.secretAccessKey !== undefined) {
      fromSecret("S3_ACCESS_KEY_ID", st.accessKeyId);
      fromSecret("S3_SECRET_ACCESS_KEY", st.secretAccessKey);
    }
  }
  setManaged("DATASET_ID", spec.datasetId);
  setManaged("DATASET_URI", spec.datasetUri);
  if (spec.datasetUrl !== undefined) {
    // A presigned URL's query is its credential: the Secret holds it, and a warning never shows it.
    if (userEnvNames.has("DATASET_URL"))
      warnings.push("env DATASET_URL: the job's own value is kept; dataset_url is not rendered");
    else fromSecret("DATASET_URL", spec.datasetUrl);
  }
  setManaged("CHECKPOINT_URI", spec.checkpointUri);
  setManaged("CHECKPOINT_STORE", spec.checkpointStore);
  predictEnv(spec, setManaged);
  if (spec.git !== undefined)
    renderGitEnv(spec.git, setManaged, (entry) => {
      if (!userEnvNames.has(entry.name)) env.push(entry);
    });

  // Patch: user volumes, the code volume, and pod settings, all on the `node` job's pod template.
  const volumes: Array<Record<string, unknown>> = [];
  const mounts: Array<Record<string, unknown>> = [];
  let configMap: K8sObject | undefined;
  if (spec.code !== undefined) {
    const cmName = configMapName(spec.name);
    configMap = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: cmName, namespace: spec.namespace, labels: { ...labels } },
      data: { ...spec.code },
    };
    volumes.push({ name: CODE_VOLUME, configMap: { name: cmName, defaultMode: 0o755 } });
    mounts.push({ name: CODE_VOLUME, mountPath: CODE_MOUNT_PATH, readOnly: true });
  }
  for (const v of spec.volumes) {
    volumes.push(renderVolume(v));
    mounts.push({
      name: v.name,
      mountPath: v.mountPath,
      ...(v.readOnly ? { readOnly: true } : {}),
      ...(v.subPath ? { subPath: v.subPath } : {}),
    });
  }
  const podSpec: Record<string, unknown> = {};
  const p = spec.pod;
  if (p.serviceAccountName !== undefined) podSpec.serviceAccountName = p.serviceAccountName;
  if (p.nodeSelector !== undefined) podSpec.nodeSelector = { ...p.nodeSelector };
  if (p.affinity !== undefined) podSpec.affinity = p.affinity;
  if (p.tolerations !== undefined) podSpec.tolerations = [...p.tolerations];
  if (p.imagePullSecrets !== undefined) podSpec.imagePullSecrets = p.imagePullSecrets.map((name) => ({ name }));
  if (p.securityContext !== undefined) podSpec.securityContext = p.securityContext;
  if (p.terminationGracePeriodSeconds !== undefined)
    podSpec.terminationGracePeriodSeconds = p.terminationGracePeriodSeconds;
  if (volumes.length > 0) podSpec.volumes = volumes;
  const container: Record<string, unknown> = { name: NODE_CONTAINER };
  if (mounts.length > 0) container.volumeMounts = mounts;
  if (p.containerSecurityContext !== undefined) container.securityContext = p.containerSecurityContext;
  if (Object.keys(container).length > 1) podSpec.containers = [container];
  const podMeta: Record<string, unknown> = {};
  if (p.labels !== undefined) podMeta.labels = { ...p.labels };
  if (p.annotations !== undefined) podMeta.annotations = { ...p.annotations };
  if (spec.traceId !== undefined) {
    // Pod labels are what log collectors keep (Promtail, Fluent Bit, Vector); the annotation survives relabeling
    // rules that drop unknown labels. The agent's own lines carry the same id as trace_id.
    podMeta.labels = { ...(podMeta.labels as object | undefined), [TRACE_ID_LABEL]: spec.traceId };
    podMeta.annotations = { ...(podMeta.annotations as object | undefined), [TRACE_ID_LABEL]: spec.traceId };
  }

  const resources = renderResources(spec);
  const trainer: Record<string, unknown> = {
    ...(spec.image === undefined ? {} : { image: spec.image }),
    numNodes: spec.numNodes,
    numProcPerNode: spec.procPerNode,
    command: agentCommand(spec),
    ...(env.length > 0 ? { env } : {}),
    ...(resources === undefined ? {} : { resourcesPerNode: resources }),
  };
  const trainJobSpec: Record<string, unknown> = {
    runtimeRef: { name: spec.runtime },
    trainer,
  };
  if (spec.activeDeadlineSeconds !== undefined) trainJobSpec.activeDeadlineSeconds = spec.activeDeadlineSeconds;
  if (Object.keys(podSpec).length > 0 || Object.keys(podMeta).length > 0) {
    const podTemplate: Record<string, unknown> = {};
    if (Object.keys(podMeta).length > 0) podTemplate.metadata = podMeta;
    if (Object.keys(podSpec).length > 0) podTemplate.spec = podSpec;
    trainJobSpec.runtimePatches = [
      {
        manager: PATCH_MANAGER,
        trainingRuntimeSpec: {
          template: { spec: { replicatedJobs: [{ name: NODE_JOB, template: { spec: { template: podTemplate } } }] } },
        },
      },
    ];
  }

  let secret: K8sObject | undefined;
  if (Object.keys(secretData).length > 0) {
    secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: sName, namespace: spec.namespace, labels: { ...labels } },
      type: "Opaque",
      stringData: secretData,
    };
  }
  // The trace id differs on every submit: it must not make the same job look like another (idempotency).
  const specHash =
    spec.traceId !== undefined
      ? renderJob({ ...spec, traceId: undefined }).specHash
      : createHash("sha256")
          .update(
            canonicalJson({
              spec: trainJobSpec,
              code: spec.code ?? {},
              secretKeys: [
                ...new Set([...Object.keys(secretData), ...(spec.callback ? [CALLBACK_TOKEN_KEY] : [])]),
              ].sort(),
            }),
          )
          .digest("hex");
  const trainJob: K8sObject = {
    apiVersion: TRAINER_API_VERSION,
    kind: "TrainJob",
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      labels: spec.traceId === undefined ? labels : { ...labels, [TRACE_ID_LABEL]: spec.traceId },
      annotations: { [SPEC_HASH_ANNOTATION]: specHash },
    },
    spec: trainJobSpec,
  };
  return {
    trainJob,
    ...(configMap === undefined ? {} : { configMap }),
    ...(secret === undefined ? {} : { secret }),
    specHash,
    warnings,
  };
}

/**
 * CODE_GIT_* for the agent, which fetches the code before the command (src/agent/code.ts). The credentials go by
 * reference only, each key optional: one Secret shape serves a password or a token, with or without a user name.
 */
function renderGitEnv(
  git: GitSpec,
  set: (name: string, value: string | undefined) => void,
  ref: (entry: { name: string; valueFrom: Record<string, unknown> }) => void,
): void {
  set("CODE_GIT_REPO", git.url);
  set("CODE_GIT_REVISION", git.revision);
  set("CODE_GIT_SUBDIR", git.subdir);
  const s = git.credentialsSecret;
  if (s === undefined) return;
  for (const [name, key] of [
    ["CODE_GIT_USERNAME", s.usernameKey],
    ["CODE_GIT_PASSWORD", s.passwordKey],
    ["CODE_GIT_TOKEN", s.tokenKey],
  ] as const)
    ref({ name, valueFrom: { secretKeyRef: { name: s.name, key, optional: true } } });
}

function userEnv(
  e: EnvVarSpec,
  spec: JobSpec,
  fromSecret: (name: string, value: string) => void,
  warnings: string[],
): Array<Record<string, unknown>> {
  if (e.secretKeyRef !== undefined) return [{ name: e.name, valueFrom: { secretKeyRef: { ...e.secretKeyRef } } }];
  if (e.configMapKeyRef !== undefined)
    return [{ name: e.name, valueFrom: { configMapKeyRef: { ...e.configMapKeyRef } } }];
  if (e.fieldPath !== undefined) return [{ name: e.name, valueFrom: { fieldRef: { fieldPath: e.fieldPath } } }];
  const value = e.value ?? "";
  const secretValue = isSecretLookingValue(value) || urlQueryCredentials(value).length > 0;
  if (value !== "" && (isSecretLookingName(e.name) || secretValue)) {
    // Names the variable, never the value: warnings reach stderr and API answers.
    const why = isSecretLookingName(e.name) ? "its name looks like a credential" : "its value looks like a credential";
    warnings.push(`env ${e.name}: ${why}; stored in the job's Secret and passed by secretKeyRef`);
    fromSecret(e.name, value);
    return [];
  }
  // The runtime's init-container variant sets PYTHONPATH=/opt/agent for the helper; keep it importable.
  if (e.name === "PYTHONPATH" && spec.agent === "init" && !value.split(":").includes(AGENT_DIR)) {
    return [literalEnv(e.name, value === "" ? AGENT_DIR : `${value}:${AGENT_DIR}`)];
  }
  return [literalEnv(e.name, value)];
}

/**
 * A literal env entry. The kubelet expands `$(VAR)` in `value` (not in secretKeyRef values), so `$` is escaped
 * as in the command: the program gets exactly the text that was given.
 */
function literalEnv(name: string, value: string): Record<string, unknown> {
  return { name, value: escapeKubernetesExpansion(value) };
}

function renderVolume(v: VolumeSpec): Record<string, unknown> {
  const s = v.source;
  switch (s.kind) {
    case "pvc":
      return {
        name: v.name,
        persistentVolumeClaim: { claimName: s.claimName, ...(v.readOnly ? { readOnly: true } : {}) },
      };
    case "configMap":
      return { name: v.name, configMap: { name: s.name } };
    case "secret":
      return { name: v.name, secret: { secretName: s.name } };
    case "hostPath":
      return { name: v.name, hostPath: { path: s.path } };
    case "emptyDir":
      return {
        name: v.name,
        emptyDir: { ...(s.medium ? { medium: s.medium } : {}), ...(s.sizeLimit ? { sizeLimit: s.sizeLimit } : {}) },
      };
  }
}

/** resourcesPerNode: the accelerator only when gpu > 0, with requests = limits (extended resources require it). */
function renderResources(spec: JobSpec): Record<string, Record<string, string>> | undefined {
  const r = spec.resources;
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (r.cpuRequest !== undefined) requests.cpu = r.cpuRequest;
  if (r.memoryRequest !== undefined) requests.memory = r.memoryRequest;
  if (r.cpuLimit !== undefined) limits.cpu = r.cpuLimit;
  if (r.memoryLimit !== undefined) limits.memory = r.memoryLimit;
  if (r.gpu > 0) {
    requests[r.gpuResource] = String(r.gpu);
    limits[r.gpuResource] = String(r.gpu);
  }
  const out: Record<string, Record<string, string>> = {};
  if (Object.keys(limits).length > 0) out.limits = limits;
  if (Object.keys(requests).length > 0) out.requests = requests;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** JSON with object keys sorted at every level: a stable input for hashing. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
