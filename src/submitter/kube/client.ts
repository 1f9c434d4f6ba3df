/**
 * The few Kubernetes API calls the submitter makes, on @kubernetes/client-node (v1+/2.x: object parameters,
 * promises, undici underneath). The library is imported lazily, on the first call. Errors become AgentErrors:
 * 404 -> K8S_NOT_FOUND, 409 -> K8S_CONFLICT, anything else -> K8S_FAILED, with the API server's Status message.
 */
import type { Writable } from "node:stream";
import { AgentError } from "../../errors/index.ts";
import type { K8sObject } from "../render.ts";

export const TRAINER_GROUP = "trainer.kubeflow.org";
export const TRAINER_VERSION = "v1alpha1";

export type CoreKind = "ConfigMap" | "Secret";

export interface LogOptions {
  readonly follow?: boolean;
  readonly tailLines?: number;
  readonly signal?: AbortSignal;
}

export interface KubeClient {
  readonly currentNamespace: string;
  getTrainJob(namespace: string, name: string): Promise<K8sObject | undefined>;
  createTrainJob(namespace: string, body: K8sObject): Promise<K8sObject>;
  /** false when it did not exist. */
  deleteTrainJob(namespace: string, name: string): Promise<boolean>;
  getClusterTrainingRuntime(name: string): Promise<K8sObject | undefined>;
  getCore(kind: CoreKind, namespace: string, name: string): Promise<K8sObject | undefined>;
  createCore(kind: CoreKind, namespace: string, body: K8sObject): Promise<K8sObject>;
  deleteCore(kind: CoreKind, namespace: string, name: string): Promise<boolean>;
  listPods(namespace: string, labelSelector: string): Promise<K8sObject[]>;
  readPodLog(namespace: string, pod: string, container: string, options?: LogOptions): Promise<string>;
  /** Streams the log into `out` (not ended) until the server closes it or `signal` aborts. */
  streamPodLog(namespace: string, pod: string, container: string, out: Writable, options?: LogOptions): Promise<void>;
}

export interface KubeClientOptions {
  /** Path of a kubeconfig file; default: KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  readonly kubeconfig?: string;
  readonly context?: string;
  /** A ready KubeConfig (tests, embedding); wins over the two above. */
  readonly kubeConfig?: unknown;
}

type K8sModule = typeof import("@kubernetes/client-node");

/** Translates a client-node failure into the project's error family, keeping the server's own message. */
export function kubeError(error: unknown, what: string): AgentError {
  const e = error as { code?: unknown; body?: unknown; message?: unknown };
  const status = typeof e.code === "number" ? e.code : undefined;
  if (status === undefined) {
    // fetch says only "fetch failed"; the socket error (ECONNREFUSED, ENOTFOUND, a TLS error) is in the causes.
    let reason = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
    for (
      let c = (error as { cause?: unknown }).cause, depth = 0;
      c instanceof Error && depth < 4;
      c = c.cause, depth += 1
    ) {
      reason += `: ${(c as NodeJS.ErrnoException).code ?? c.message.split("\n")[0]}`;
    }
    return new AgentError("K8S_FAILED", `${what}: cannot reach the Kubernetes API: ${reason}`, { cause: error });
  }
  let body: { message?: unknown; reason?: unknown } = {};
  try {
    body = typeof e.body === "string" ? (JSON.parse(e.body) as typeof body) : ((e.body ?? {}) as typeof body);
  } catch {
    body = {};
  }
  const message = typeof body.message === "string" ? body.message : `HTTP ${status}`;
  const reason = typeof body.reason === "string" ? body.reason : undefined;
  const details = { status, ...(reason === undefined ? {} : { reason }) };
  if (status === 404)
    return new AgentError("K8S_NOT_FOUND", `${what}: not found (${message})`, { cause: error, details });
  if (status === 409) return new AgentError("K8S_CONFLICT", `${what}: ${message}`, { cause: error, details });
  const hint =
    status === 403
      ? " (check the submitter's RBAC: runtimes/rbac.yaml)"
      : status === 401
        ? " (check the kubeconfig credentials)"
        : "";
  return new AgentError("K8S_FAILED", `${what}: Kubernetes API answered ${status}: ${message}${hint}`, {
    cause: error,
    details,
  });
}

export async function createKubeClient(options: KubeClientOptions = {}): Promise<KubeClient> {
  const k8s: K8sModule = await import("@kubernetes/client-node");
  let kc: InstanceType<K8sModule["KubeConfig"]>;
  if (options.kubeConfig !== undefined) kc = options.kubeConfig as typeof kc;
  else {
    kc = new k8s.KubeConfig();
    try {
      if (options.kubeconfig !== undefined) kc.loadFromFile(options.kubeconfig);
      else kc.loadFromDefault();
      if (options.context !== undefined) kc.setCurrentContext(options.context);
    } catch (error) {
      throw new AgentError("CONFIG_INVALID", `kubeconfig: ${(error as Error).message}`, { cause: error });
    }
    const cluster = kc.getCurrentCluster();
    // loadFromDefault falls back to http://localhost:8080 when it finds nothing: say so instead of failing later.
    if (
      cluster === null ||
      (options.kubeconfig === undefined && cluster.name === "cluster" && cluster.server === "http://localhost:8080")
    ) {
      throw new AgentError(
        "CONFIG_INVALID",
        "kubeconfig: no cluster configured (set KUBECONFIG, use --kubeconfig, or run in a pod)",
      );
    }
  }
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const currentNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";

  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      throw kubeError(error, what);
    }
  };
  const orUndefined = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await call(what, fn);
    } catch (error) {
      if (error instanceof AgentError && error.code === "K8S_NOT_FOUND") return undefined;
      throw error;
    }
  };
  const deleted = async (what: string, fn: () => Promise<unknown>): Promise<boolean> =>
    (await orUndefined(what, async () => {
      await fn();
      return true;
    })) ?? false;
  const tj = { group: TRAINER_GROUP, version: TRAINER_VERSION, plural: "trainjobs" };

  return {
    currentNamespace,
    getTrainJob: (namespace, name) =>
      orUndefined(
        `trainjob ${namespace}/${name}`,
        () => custom.getNamespacedCustomObject({ ...tj, namespace, name }) as Promise<K8sObject>,
      ),
    createTrainJob: (namespace, body) =>
      call(
        `trainjob ${namespace}/${body.metadata.name}`,
        () => custom.createNamespacedCustomObject({ ...tj, namespace, body }) as Promise<K8sObject>,
      ),
    deleteTrainJob: (namespace, name) =>
      deleted(`trainjob ${namespace}/${name}`, () =>
        custom.deleteNamespacedCustomObject({ ...tj, namespace, name, propagationPolicy: "Background" }),
      ),
    getClusterTrainingRuntime: (name) =>
      orUndefined(
        `clustertrainingruntime ${name}`,
        () =>
          custom.getClusterCustomObject({
            group: TRAINER_GROUP,
            version: TRAINER_VERSION,
            plural: "clustertrainingruntimes",
            name,
          }) as Promise<K8sObject>,
      ),
    getCore: (kind, namespace, name) =>
      orUndefined(`${kind.toLowerCase()} ${namespace}/${name}`, async () =>
        kind === "ConfigMap"
          ? ((await core.readNamespacedConfigMap({ namespace, name })) as unknown as K8sObject)
          : ((await core.readNamespacedSecret({ namespace, name })) as unknown as K8sObject),
      ),
    createCore: (kind, namespace, body) =>
      call(`${kind.toLowerCase()} ${namespace}/${body.metadata.name}`, async () =>
        kind === "ConfigMap"
          ? ((await core.createNamespacedConfigMap({ namespace, body: body as never })) as unknown as K8sObject)
          : ((await core.createNamespacedSecret({ namespace, body: body as never })) as unknown as K8sObject),
      ),
    deleteCore: (kind, namespace, name) =>
      deleted(`${kind.toLowerCase()} ${namespace}/${name}`, () =>
        kind === "ConfigMap"
          ? core.deleteNamespacedConfigMap({ namespace, name })
          : core.deleteNamespacedSecret({ namespace, name }),
      ),
    listPods: async (namespace, labelSelector) =>
      (await call(`pods in ${namespace}`, () => core.listNamespacedPod({ namespace, labelSelector })))
        .items as unknown as K8sObject[],
    readPodLog: (namespace, pod, container, options = {}) =>
      call(`log of pod ${namespace}/${pod}`, () =>
        core.readNamespacedPodLog({
          namespace,
          name: pod,
          container,
          ...(options.tailLines === undefined ? {} : { tailLines: options.tailLines }),
        }),
      ),
    streamPodLog: async (namespace, pod, container, out, options = {}) => {
      // node:http(s) with the kubeconfig's TLS and auth options rather than client-node's Log: aborting its
      // fetch leaves an unhandled AbortError on the piped stream, and a follow must stop cleanly on Ctrl-C.
      const server = kc.getCurrentCluster()?.server ?? "";
      const url = new URL(
        `${server.replace(/\/+$/, "")}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`,
      );
      url.searchParams.set("container", container);
      if (options.follow) url.searchParams.set("follow", "true");
      if (options.tailLines !== undefined) url.searchParams.set("tailLines", String(options.tailLines));
      const requestOptions: import("node:https").RequestOptions = { method: "GET", headers: {} };
      await kc.applyToHTTPSOptions(requestOptions);
      const what = `log of pod ${namespace}/${pod}`;
      const { request } = url.protocol === "https:" ? await import("node:https") : await import("node:http");
      await new Promise<void>((resolve, reject) => {
        const req = request(url, requestOptions, (res) => {
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => (body += d.slice(0, 4096)));
            res.on("end", () => reject(kubeError({ code: status, body }, what)));
            res.on("error", () => reject(kubeError({ code: status, body }, what)));
            return;
          }
          res.on("data", (chunk: Buffer) => {
            if (!out.write(chunk)) {
              res.pause();
              out.once("drain", () => res.resume());
            }
          });
          res.on("end", () => resolve());
          res.on("error", () => resolve()); // connection cut (abort, API server restart): the stream simply ends
          res.on("close", () => resolve());
        });
        const onAbort = (): void => {
          req.destroy();
          resolve();
        };
        if (options.signal?.aborted) onAbort();
        options.signal?.addEventListener("abort", onAbort, { once: true });
        req.on("close", () => options.signal?.removeEventListener("abort", onAbort));
        req.on("error", (error) => reject(options.signal?.aborted ? undefined : kubeError(error, what)));
        req.end();
      });
    },
  };
}
