/**
 * Submit, inspect, follow and delete TrainJobs. Submission is idempotent: the TrainJob carries the hash of what
 * defines it, so the same spec again is a no-op and a different spec under the same name is K8S_CONFLICT. The
 * TrainJob is created first; the ConfigMap and Secret follow with an owner reference to it, so deleting the
 * TrainJob removes them. When a child cannot be created the TrainJob is deleted again: nothing half-made stays.
 * A TrainJob being deleted (deletionTimestamp set, finalizers pending) is neither reused nor given children; a
 * child left by an earlier TrainJob of the same name (the garbage collector has not removed it yet) is adopted by
 * an update that points its owner reference at the new TrainJob.
 */
import { randomBytes } from "node:crypto";
import type { Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { AgentError, isAgentError } from "../errors/index.ts";
import type { BackendClient } from "./backend.ts";
import type { KubeClient, CoreKind, WriteOptions } from "./kube/client.ts";
import { NODE_CONTAINER, NODE_JOB } from "./names.ts";
import { specInvalid } from "./request/index.ts";
import {
  configMapName,
  renderJob,
  secretName,
  SPEC_HASH_ANNOTATION,
  TRACE_ID_LABEL,
  TRAINER_API_VERSION,
  type K8sObject,
  type RenderedJob,
} from "./render.ts";
import type { JobSpec } from "./spec.ts";
import { trainJobStatus, type TrainJobStatus } from "./status.ts";

export const JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name";
export const REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name";
export const JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index";
export const COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index";

export interface SubmitResult {
  readonly status: "success";
  readonly trainjob_name: string;
  readonly namespace: string;
  readonly created_at: string;
  /** false when the same spec was already there (idempotent re-submit). */
  readonly created: boolean;
  readonly uid?: string;
  readonly job_id?: string;
  /** The job's trace id (pod label trainer.astrago.io/trace-id, the agent's TRACE_ID): search logs by it. */
  readonly trace_id?: string;
  /** true with `dryRun`: the server checked and admitted everything but stored nothing. */
  readonly dry_run?: boolean;
  readonly warnings: readonly string[];
}

export interface SubmitOptions {
  /** Server-side dry run (dryRun=All): validated and admitted by the API server, nothing stored or registered. */
  readonly dryRun?: boolean;
}

export interface DeleteResult {
  readonly status: "success";
  readonly trainjob_name: string;
  readonly namespace: string;
  /** What is gone (`trainjob/x`, `configmap/x-train-script`...). */
  readonly deleted: string[];
  /** Set when the TrainJob is still there with a deletion timestamp: its finalizers have not run yet. */
  readonly terminating?: { readonly since: string; readonly finalizers: readonly string[] };
}

export interface LogsOptions {
  readonly follow?: boolean;
  readonly tailLines?: number;
  readonly signal?: AbortSignal;
  /** With follow: how long to wait for the worker's pod to start (ms, default 300 000). */
  readonly waitMs?: number;
  /** With follow: called once when the pod is not there or not started yet, with the reason. */
  readonly onWaiting?: (reason: string) => void;
}

export interface SubmitterDeps {
  /** The Kubernetes client, or a factory called on first use (so `render` never loads client-node). */
  readonly kube: KubeClient | (() => Promise<KubeClient>);
  /** Registers jobs with the backend to obtain their callback token (CONTRACT section 5, POST /v1/jobs). */
  readonly backend?: BackendClient;
  /** Check that the ClusterTrainingRuntime exists before creating (default true). */
  readonly checkRuntime?: boolean;
  readonly now?: () => Date;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface Submitter {
  submit(spec: JobSpec, options?: SubmitOptions): Promise<SubmitResult>;
  status(namespace: string, name: string): Promise<TrainJobStatus>;
  /** The state of every TrainJob in `namespace` (all namespaces when undefined), newest first. */
  list(namespace: string | undefined): Promise<TrainJobStatus[]>;
  /** Logs of worker `worker` (node rank): returned as text, or streamed into `out` when `follow` is set. */
  logs(namespace: string, name: string, worker: number, options?: LogsOptions & { out?: Writable }): Promise<string>;
  delete(namespace: string, name: string): Promise<DeleteResult>;
}

/** The deletion timestamp and pending finalizers of an object being deleted, or undefined. */
export function terminating(obj: K8sObject): { since: string; finalizers: string[] } | undefined {
  const since = obj.metadata.deletionTimestamp;
  if (since === undefined || since === null) return undefined;
  const finalizers = Array.isArray(obj.metadata.finalizers) ? obj.metadata.finalizers.map(String) : [];
  return { since: since instanceof Date ? since.toISOString() : String(since), finalizers };
}

function beingDeleted(obj: K8sObject, what: string): AgentError {
  const t = terminating(obj)!;
  return new AgentError(
    "K8S_CONFLICT",
    `${what} is being deleted (since ${t.since}${t.finalizers.length > 0 ? `, waiting on finalizers ${t.finalizers.join(", ")}` : ""}); submit again once it is gone (trainjob status says not found)`,
    { details: { field: "name", reason: "Terminating" } },
  );
}

function ownerReference(trainJob: K8sObject): Record<string, unknown> {
  return {
    apiVersion: TRAINER_API_VERSION,
    kind: "TrainJob",
    name: trainJob.metadata.name,
    uid: trainJob.metadata.uid,
  };
}

/** The runtime's JobSet `failurePolicy.maxRestarts`: the backend job's restart budget. */
function runtimeMaxRestarts(runtime: K8sObject | undefined): number | undefined {
  const spec = runtime?.spec as { template?: { spec?: { failurePolicy?: { maxRestarts?: unknown } } } } | undefined;
  const n = spec?.template?.spec?.failurePolicy?.maxRestarts;
  return typeof n === "number" && Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** The backend job id a rendered TrainJob reports under (its JOB_ID), when it has callbacks. */
function backendJobId(tj: K8sObject | undefined): string | undefined {
  const env = (tj?.spec as { trainer?: { env?: { name?: string; value?: unknown }[] } } | undefined)?.trainer?.env;
  if (env?.some((e) => e.name === "BACKEND_BASE_URL") !== true) return undefined;
  const id = env.find((e) => e.name === "JOB_ID")?.value;
  return typeof id === "string" && id !== "" ? id : undefined;
}

export function createSubmitter(deps: SubmitterDeps): Submitter {
  /** Submit's last step: the TrainJob exists, so the backend job is QUEUED (a failure is a warning, not undone). */
  async function queueOnBackend(spec: JobSpec, warnings: string[]): Promise<void> {
    if (spec.callback === undefined || deps.backend === undefined) return;
    try {
      await deps.backend.queueJob(spec.callback.jobId);
    } catch (error) {
      warnings.push(`backend: job ${spec.callback.jobId} not moved to QUEUED: ${(error as Error).message}`);
    }
  }

  let kubePromise: Promise<KubeClient> | undefined;
  const kube = (): Promise<KubeClient> => {
    kubePromise ??= typeof deps.kube === "function" ? deps.kube() : Promise.resolve(deps.kube);
    return kubePromise;
  };
  const now = deps.now ?? (() => new Date());
  const sleep =
    deps.sleep ??
    ((ms: number, signal?: AbortSignal) => delay(ms, undefined, signal ? { signal } : {}).then(() => undefined));

  const sameJob = (existing: K8sObject, rendered: RenderedJob): void => {
    const theirs = existing.metadata.annotations?.[SPEC_HASH_ANNOTATION];
    if (theirs !== rendered.specHash) {
      const { namespace, name } = rendered.trainJob.metadata;
      throw new AgentError(
        "K8S_CONFLICT",
        theirs === undefined
          ? `trainjob ${namespace}/${name} already exists and was not made by this submitter; choose another name`
          : `trainjob ${namespace}/${name} already exists with a different spec; delete it first or choose another name`,
        { details: { field: "name" } },
      );
    }
  };

  const ensureChild = async (
    k: KubeClient,
    kind: CoreKind,
    body: K8sObject,
    owner: K8sObject,
    options: WriteOptions,
  ): Promise<void> => {
    const ns = body.metadata.namespace!;
    const withOwner: K8sObject = { ...body, metadata: { ...body.metadata, ownerReferences: [ownerReference(owner)] } };
    try {
      await k.createCore(kind, ns, withOwner, options);
    } catch (error) {
      if (!isAgentError(error, "K8S_CONFLICT")) throw error;
      const existing = await k.getCore(kind, ns, body.metadata.name);
      if (existing === undefined) throw error;
      const owners = existing.metadata.ownerReferences ?? [];
      if (owners.some((o) => o.uid === owner.metadata.uid)) return;
      // Ours by label and owned by a TrainJob of this name that is gone (or going): the garbage collector has not
      // caught up. Taking it over is what the collector would let a new create do a moment later.
      const ours =
        existing.metadata.labels?.["trainer.astrago.io/trainjob"] === owner.metadata.name &&
        owners.length > 0 &&
        owners.every((o) => o.kind === "TrainJob" && o.name === owner.metadata.name);
      if (!ours || terminating(existing) !== undefined) {
        throw new AgentError(
          "K8S_CONFLICT",
          `${kind.toLowerCase()} ${ns}/${body.metadata.name} already exists and does not belong to trainjob ${owner.metadata.name}`,
          { cause: error },
        );
      }
      const adopted: K8sObject = {
        ...withOwner,
        metadata: { ...withOwner.metadata, resourceVersion: existing.metadata.resourceVersion },
      };
      await k.replaceCore(kind, ns, adopted, options);
    }
  };

  return {
    async submit(specIn, options = {}) {
      const k = await kube();
      const dryRun = options.dryRun === true;
      let spec: JobSpec =
        specIn.traceId === undefined ? { ...specIn, traceId: randomBytes(16).toString("hex") } : specIn;
      let rendered = renderJob(spec);
      const { namespace, name } = { namespace: spec.namespace, name: spec.name };
      // submit takes care of an unknown token itself: it registers the job, or finds it created before, or fails.
      const warnings = rendered.warnings.filter((w) => !w.startsWith("callback: the token is not known"));
      const result = (tj: K8sObject, created: boolean): SubmitResult => ({
        status: "success",
        trainjob_name: name,
        namespace,
        created_at:
          typeof tj.metadata.creationTimestamp === "string" ? tj.metadata.creationTimestamp : now().toISOString(),
        created,
        ...(tj.metadata.uid === undefined ? {} : { uid: tj.metadata.uid }),
        ...(spec.callback === undefined ? {} : { job_id: spec.callback.jobId }),
        // An existing job keeps the trace id it was made with.
        trace_id: tj.metadata.labels?.[TRACE_ID_LABEL] ?? spec.traceId,
        ...(dryRun ? { dry_run: true } : {}),
        warnings,
      });
      const write: WriteOptions = { dryRun, warnings };

      const existing = await k.getTrainJob(namespace, name);
      if (existing !== undefined) {
        if (terminating(existing) !== undefined) throw beingDeleted(existing, `trainjob ${namespace}/${name}`);
        sameJob(existing, rendered);
        if (rendered.configMap) await ensureChild(k, "ConfigMap", rendered.configMap, existing, write);
        if (rendered.secret) await ensureChild(k, "Secret", rendered.secret, existing, write);
        if (!dryRun) await queueOnBackend(spec, warnings);
        return result(existing, false);
      }
      let maxRestarts: number | undefined;
      if (deps.checkRuntime ?? true) {
        try {
          const runtime = await k.getClusterTrainingRuntime(spec.runtime);
          maxRestarts = runtimeMaxRestarts(runtime);
          if (runtime === undefined) {
            throw specInvalid([
              {
                field: "runtime",
                message: `ClusterTrainingRuntime ${JSON.stringify(spec.runtime)} is not installed (kubectl apply -f runtimes/${spec.framework}/runtime.yaml)`,
              },
            ]);
          }
        } catch (error) {
          if (!isAgentError(error, "K8S_FAILED")) throw error;
          warnings.push(`runtime check skipped: ${error.message}`);
        }
      }
      if (dryRun && spec.callback !== undefined && spec.callback.token === undefined) {
        // Registering would create the job at the backend: a dry run sends a placeholder the server never stores.
        spec = { ...spec, callback: { ...spec.callback, token: "dry-run" } };
        rendered = renderJob(spec);
      } else if (spec.callback !== undefined && spec.callback.token === undefined && deps.backend !== undefined) {
        const registered = await deps.backend.registerJob({
          id: spec.callback.jobId,
          name,
          ...(maxRestarts !== undefined && { max_restarts: maxRestarts }),
        });
        spec = { ...spec, callback: { ...spec.callback, token: registered.token } };
        rendered = renderJob(spec);
      } else if (spec.callback !== undefined && spec.callback.token === undefined) {
        throw specInvalid([
          {
            field: "callback.token",
            message:
              "is required when no backend is configured to register the job with (TRAINJOB_BACKEND_URL or BACKEND_BASE_URL)",
          },
        ]);
      }

      let trainJob: K8sObject;
      try {
        trainJob = await k.createTrainJob(namespace, rendered.trainJob, write);
      } catch (error) {
        if (!isAgentError(error, "K8S_CONFLICT")) throw error;
        const raced = await k.getTrainJob(namespace, name);
        if (raced === undefined) throw error;
        if (terminating(raced) !== undefined) throw beingDeleted(raced, `trainjob ${namespace}/${name}`);
        sameJob(raced, rendered);
        trainJob = raced;
      }
      try {
        if (rendered.configMap) await ensureChild(k, "ConfigMap", rendered.configMap, trainJob, write);
        if (rendered.secret) await ensureChild(k, "Secret", rendered.secret, trainJob, write);
      } catch (error) {
        // Without its code or token the job cannot run: take it back rather than leave pods waiting forever.
        if (!dryRun) await k.deleteTrainJob(namespace, name).catch(() => false);
        throw error;
      }
      if (!dryRun) await queueOnBackend(spec, warnings);
      return result(trainJob, true);
    },

    async status(namespace, name) {
      const k = await kube();
      const tj = await k.getTrainJob(namespace, name);
      if (tj === undefined) throw new AgentError("K8S_NOT_FOUND", `trainjob ${namespace}/${name} not found`);
      return trainJobStatus(tj);
    },

    async list(namespace) {
      const k = await kube();
      const all = (await k.listTrainJobs(namespace)).map(trainJobStatus);
      return all.sort((a, b) => (b.created_at ?? "").localeCompare(a.created_at ?? ""));
    },

    async logs(namespace, name, worker, options = {}) {
      const k = await kube();
      const tj = await k.getTrainJob(namespace, name);
      if (tj === undefined) throw new AgentError("K8S_NOT_FOUND", `trainjob ${namespace}/${name} not found`);
      const numNodes = Number((tj.spec as { trainer?: { numNodes?: number } } | undefined)?.trainer?.numNodes ?? 1);
      if (!Number.isInteger(worker) || worker < 0 || worker >= numNodes) {
        throw specInvalid([
          {
            field: "worker",
            message: `must be an integer from 0 to ${numNodes - 1} (the job has ${numNodes} node(s)), got ${worker}`,
          },
        ]);
      }
      const deadline = Date.now() + (options.waitMs ?? 300_000);
      let waited = false;
      for (;;) {
        try {
          const pod = await findWorkerPod(k, namespace, name, worker);
          if (options.follow && options.out !== undefined) {
            await k.streamPodLog(namespace, pod, NODE_CONTAINER, options.out, options);
            return "";
          }
          return await k.readPodLog(namespace, pod, NODE_CONTAINER, options);
        } catch (error) {
          // A pod that does not exist yet, or that has not started (204 unscheduled, 400 waiting), is worth waiting for.
          const waitable =
            isAgentError(error, "K8S_NOT_FOUND") ||
            (isAgentError(error, "K8S_FAILED") && error.details?.notStarted === true);
          if (!options.follow || !waitable || Date.now() >= deadline || options.signal?.aborted) throw error;
          if (!waited) options.onWaiting?.((error as Error).message);
          waited = true;
          await sleep(2000, options.signal).catch(() => undefined);
          if (options.signal?.aborted) return "";
        }
      }
    },

    async delete(namespace, name) {
      const k = await kube();
      const before = await k.getTrainJob(namespace, name);
      const jobId = backendJobId(before);
      if (before === undefined || !(await k.deleteTrainJob(namespace, name)))
        throw new AgentError("K8S_NOT_FOUND", `trainjob ${namespace}/${name} not found`);
      // With finalizers pending the object stays, marked with a deletion timestamp, until its controller lets go.
      const after = await k.getTrainJob(namespace, name);
      const pending =
        after === undefined || after.metadata.uid !== before.metadata.uid ? undefined : terminating(after);
      const deleted = pending === undefined ? [`trainjob/${name}`] : [];
      // The backend job ends with its TrainJob: a job deleted before its pods reported would wait forever.
      if (jobId !== undefined && deps.backend !== undefined) {
        try {
          if (await deps.backend.cancelJob(jobId, `trainjob ${namespace}/${name} deleted`))
            deleted.push(`job/${jobId}`);
        } catch (error) {
          throw new AgentError(
            isAgentError(error) ? error.code : "CALLBACK_FAILED",
            `trainjob ${namespace}/${name} deleted, but its backend job ${jobId} was not cancelled: ${(error as Error).message}`,
            { cause: error },
          );
        }
      }
      // The owner references make the garbage collector remove these; deleting them now frees them at once.
      for (const [kind, child] of [
        ["ConfigMap", configMapName(name)],
        ["Secret", secretName(name)],
      ] as const) {
        const obj = await k.getCore(kind, namespace, child);
        if (
          obj?.metadata.labels?.["trainer.astrago.io/trainjob"] === name &&
          (await k.deleteCore(kind, namespace, child))
        ) {
          deleted.push(`${kind.toLowerCase()}/${child}`);
        }
      }
      return {
        status: "success",
        trainjob_name: name,
        namespace,
        deleted,
        ...(pending === undefined ? {} : { terminating: pending }),
      };
    },
  };
}

/** The newest pod of worker `worker` of TrainJob `name` (JobSet labels; index from the completion-index label/annotation). */
export async function findWorkerPod(k: KubeClient, namespace: string, name: string, worker: number): Promise<string> {
  const pods = await k.listPods(namespace, `${JOBSET_NAME_LABEL}=${name},${REPLICATED_JOB_LABEL}=${NODE_JOB}`);
  const index = String(worker);
  const mine = pods.filter((p) => {
    const m = p.metadata;
    const idx = m.labels?.[COMPLETION_INDEX] ?? m.annotations?.[COMPLETION_INDEX];
    const jobIndex = m.labels?.[JOB_INDEX_LABEL];
    if (jobIndex !== undefined && jobIndex !== "0") return false;
    return idx !== undefined ? idx === index : m.name.startsWith(`${name}-${NODE_JOB}-0-${index}-`);
  });
  if (mine.length === 0) {
    throw new AgentError("K8S_NOT_FOUND", `trainjob ${namespace}/${name}: no pod for worker ${worker} yet`);
  }
  // client-node turns creationTimestamp into a Date; a raw JSON answer has the RFC 3339 string. Both parse.
  const created = (p: K8sObject): number => new Date(p.metadata.creationTimestamp as string | Date).getTime() || 0;
  mine.sort((a, b) => created(b) - created(a));
  return mine[0]!.metadata.name;
}
