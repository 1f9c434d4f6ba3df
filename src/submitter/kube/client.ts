/**
 * The few Kubernetes API calls the submitter makes, on @kubernetes/client-node (v1+/2.x: object parameters,
 * promises, undici underneath). The library is imported lazily, on the first call. Errors become AgentErrors:
 * 404 -> K8S_NOT_FOUND, 409 -> K8S_CONFLICT, anything else -> K8S_FAILED, with the API server's Status message.
 */
import type { Writable } from "node:stream";
import type { IncomingMessage } from "node:http";
import { AgentError } from "../../errors/index.ts";
import type { K8sObject } from "../render.ts";
import type { Problem } from "../request/reader.ts";

export const TRAINER_GROUP = "trainer.kubeflow.org";
export const TRAINER_VERSION = "v1alpha1";

export type CoreKind = "ConfigMap" | "Secret";

export interface LogOptions {
  readonly follow?: boolean;
  readonly tailLines?: number;
  readonly signal?: AbortSignal;
  /** Bytes of a non-followed log kept in memory (its newest); default MAX_LOG_BYTES. */
  readonly maxBytes?: number;
}

/** Bounds on what a read keeps in memory: an object answer larger than this is an error, a log keeps its tail. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
export const MAX_LOG_BYTES = 64 * 1024 * 1024;

/** Options of a write (create/update): sent with fieldValidation=Strict, so an unknown field is refused. */
export interface WriteOptions {
  /** dryRun=All: the server validates and admits the object but stores nothing (`--dry-run=server`). */
  readonly dryRun?: boolean;
  /** The server's `Warning` headers (299 deprecations, unknown fields under Warn) are appended here. */
  readonly warnings?: string[];
}

export interface KubeClient {
  readonly currentNamespace: string;
  getTrainJob(namespace: string, name: string): Promise<K8sObject | undefined>;
  /** TrainJobs of a namespace, or of all namespaces when `namespace` is undefined. */
  listTrainJobs(namespace: string | undefined): Promise<K8sObject[]>;
  createTrainJob(namespace: string, body: K8sObject, options?: WriteOptions): Promise<K8sObject>;
  /** false when it did not exist. */
  deleteTrainJob(namespace: string, name: string): Promise<boolean>;
  getClusterTrainingRuntime(name: string): Promise<K8sObject | undefined>;
  getCore(kind: CoreKind, namespace: string, name: string): Promise<K8sObject | undefined>;
  createCore(kind: CoreKind, namespace: string, body: K8sObject, options?: WriteOptions): Promise<K8sObject>;
  /** PUT: body.metadata.resourceVersion must be the one read (409 when the object changed since). */
  replaceCore(kind: CoreKind, namespace: string, body: K8sObject, options?: WriteOptions): Promise<K8sObject>;
  deleteCore(kind: CoreKind, namespace: string, name: string): Promise<boolean>;
  listPods(namespace: string, labelSelector: string): Promise<K8sObject[]>;
  /** Throws K8S_FAILED with details.notStarted when the pod has no log yet (204, or 400 "waiting to start"). */
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

interface StatusCause {
  reason?: unknown;
  message?: unknown;
  field?: unknown;
}

/** The problems a refused write names: the 422 Status's causes, or the fields of a strict decoding error (400). */
function causesOf(status: number, message: string, details: { causes?: StatusCause[] } | undefined): Problem[] {
  const problems: Problem[] = [];
  for (const c of details?.causes ?? []) {
    if (typeof c.message !== "string") continue;
    problems.push({ field: typeof c.field === "string" && c.field !== "" ? c.field : "(object)", message: c.message });
  }
  if (problems.length === 0 && status === 400) {
    for (const m of message.matchAll(/(unknown|duplicate) field "([^"]+)"/g))
      problems.push({ field: m[2]!, message: `${m[1]} field (the server refuses it with fieldValidation=Strict)` });
  }
  return problems.length > 0 ? problems : [{ field: "(object)", message }];
}

/**
 * Translates a client-node failure (or a raw answer: `{code, body}`) into the project's error family, keeping the
 * server's own message. `write` marks a create/update, where 422 Invalid and 400 BadRequest (strict decoding) mean
 * the object itself is wrong: SPEC_INVALID listing the server's causes, not an outage.
 */
export function kubeError(error: unknown, what: string, options: { write?: boolean } = {}): AgentError {
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
  let body: {
    message?: unknown;
    reason?: unknown;
    details?: { kind?: unknown; name?: unknown; causes?: StatusCause[] };
  } = {};
  try {
    body = typeof e.body === "string" ? (JSON.parse(e.body) as typeof body) : ((e.body ?? {}) as typeof body);
  } catch {
    body = {};
  }
  if (typeof body !== "object" || body === null) body = {};
  const message = typeof body.message === "string" ? body.message : `HTTP ${status}`;
  const reason = typeof body.reason === "string" ? body.reason : undefined;
  const details = { status, ...(reason === undefined ? {} : { reason }) };
  if (status === 404 && body.details?.kind === "namespaces") {
    // The NamespaceLifecycle admission plugin's answer to a create in a namespace that is not there.
    const ns = typeof body.details.name === "string" ? body.details.name : "?";
    return new AgentError(
      "K8S_NOT_FOUND",
      `${what}: namespace ${JSON.stringify(ns)} does not exist (kubectl create namespace ${ns})`,
      { cause: error, details: { ...details, field: "namespace" } },
    );
  }
  if (status === 404)
    return new AgentError("K8S_NOT_FOUND", `${what}: not found (${message})`, { cause: error, details });
  if (status === 409) return new AgentError("K8S_CONFLICT", `${what}: ${message}`, { cause: error, details });
  if (status === 422 || (options.write === true && status === 400)) {
    const problems = causesOf(status, message, body.details);
    return new AgentError(
      "SPEC_INVALID",
      `${what}: the Kubernetes API refused the object (${reason ?? status}):\n  ${problems.map((p) => `${p.field}: ${p.message}`).join("\n  ")}`,
      { cause: error, details: { ...details, problems, field: problems[0]!.field } },
    );
  }
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

/** The texts of `Warning` headers (RFC 7234 form `299 - "text"`), one per header line. */
export function warningsOf(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== "warning") continue;
    const m = /^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"/.exec(rawHeaders[i + 1]!);
    out.push(m ? m[1]!.replace(/\\(.)/g, "$1") : rawHeaders[i + 1]!);
  }
  return out;
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

  // Writes and pod logs go over node:http(s) with the kubeconfig's TLS and auth options rather than client-node:
  // its generated calls hide the `Warning` headers and cannot read a 204 (a pod not scheduled yet) nor stop a
  // followed log cleanly (aborting its fetch leaves an unhandled AbortError on the piped stream).
  const server = (kc.getCurrentCluster()?.server ?? "").replace(/\/+$/, "");
  const open = async (
    method: string,
    path: string,
    query: Record<string, string | undefined>,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> => {
    const url = new URL(server + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const requestOptions: import("node:https").RequestOptions = {
      method,
      headers: {
        accept: "application/json, */*",
        ...(payload === undefined
          ? {}
          : { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) }),
      },
      ...(signal === undefined ? {} : { signal }),
    };
    await kc.applyToHTTPSOptions(requestOptions);
    const { request } = url.protocol === "https:" ? await import("node:https") : await import("node:http");
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, requestOptions, resolve);
      req.on("error", reject);
      req.end(payload);
    });
  };
  /** Reads a body up to `max` bytes, keeping the newest bytes: `dropped` counts what came before them. */
  const readCapped = async (res: IncomingMessage, max: number): Promise<{ text: string; dropped: number }> => {
    const chunks: Buffer[] = [];
    let kept = 0;
    let dropped = 0;
    for await (const chunk of res) {
      chunks.push(chunk as Buffer);
      kept += (chunk as Buffer).length;
      while (kept > max) {
        const first = chunks[0]!;
        const cut = Math.min(first.length, kept - max);
        if (cut === first.length) chunks.shift();
        else chunks[0] = first.subarray(cut);
        kept -= cut;
        dropped += cut;
      }
    }
    return { text: Buffer.concat(chunks).toString("utf8"), dropped };
  };
  /** An API object answer: never cut (the API server caps objects near 1.5 MiB, so this bound is never met). */
  const readAll = async (res: IncomingMessage, max = MAX_ANSWER_BYTES): Promise<string> => {
    const { text, dropped } = await readCapped(res, max);
    if (dropped > 0) throw new Error(`the answer is larger than ${max} bytes`);
    return text;
  };
  const write = async (
    method: "POST" | "PUT",
    what: string,
    path: string,
    body: K8sObject,
    options: WriteOptions = {},
  ): Promise<K8sObject> => {
    let res: IncomingMessage;
    let text: string;
    try {
      res = await open(
        method,
        path,
        {
          fieldValidation: "Strict",
          ...(options.dryRun ? { dryRun: "All" } : {}),
        },
        body,
      );
      text = await readAll(res);
    } catch (error) {
      throw kubeError(error, what);
    }
    options.warnings?.push(...warningsOf(res.rawHeaders).map((w) => `${what}: Kubernetes API warning: ${w}`));
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw kubeError({ code: status, body: text }, what, { write: true });
    try {
      return JSON.parse(text) as K8sObject;
    } catch (error) {
      throw new AgentError("K8S_FAILED", `${what}: the Kubernetes API answered ${status} with no JSON object`, {
        cause: error,
      });
    }
  };
  const tjPath = (namespace: string): string =>
    `/apis/${TRAINER_GROUP}/${TRAINER_VERSION}/namespaces/${encodeURIComponent(namespace)}/trainjobs`;
  const corePath = (kind: CoreKind, namespace: string): string =>
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/${kind === "ConfigMap" ? "configmaps" : "secrets"}`;
  const logPath = (namespace: string, pod: string): string =>
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`;
  /** The log request's answer: 200 is the log; 204 (no node yet) and 400 "waiting to start" are a state. */
  const openLog = async (
    namespace: string,
    pod: string,
    container: string,
    options: LogOptions,
  ): Promise<IncomingMessage | undefined> => {
    const what = `log of pod ${namespace}/${pod}`;
    let res: IncomingMessage;
    try {
      res = await open(
        "GET",
        logPath(namespace, pod),
        {
          container,
          follow: options.follow ? "true" : undefined,
          tailLines: options.tailLines === undefined ? undefined : String(options.tailLines),
        },
        undefined,
        options.signal,
      );
    } catch (error) {
      if (options.signal?.aborted) return undefined;
      throw kubeError(error, what);
    }
    const status = res.statusCode ?? 0;
    if (status === 200) return res;
    const text = status === 204 ? "" : await readAll(res, 64 * 1024).catch(() => "");
    if (status === 204) {
      res.resume();
      throw new AgentError("K8S_FAILED", `${what}: the pod has not started yet (not scheduled to a node)`, {
        details: { status, notStarted: true },
      });
    }
    const error = kubeError({ code: status, body: text }, what);
    // 400 BadRequest "container ... is waiting to start": the container exists but has not run yet.
    if (status === 400) {
      throw new AgentError("K8S_FAILED", error.message, { cause: error, details: { status, notStarted: true } });
    }
    throw error;
  };

  return {
    currentNamespace,
    getTrainJob: (namespace, name) =>
      orUndefined(
        `trainjob ${namespace}/${name}`,
        () => custom.getNamespacedCustomObject({ ...tj, namespace, name }) as Promise<K8sObject>,
      ),
    listTrainJobs: async (namespace) =>
      (
        (await call(`trainjobs in ${namespace ?? "all namespaces"}`, () =>
          namespace === undefined
            ? custom.listClusterCustomObject({ ...tj })
            : custom.listNamespacedCustomObject({ ...tj, namespace }),
        )) as { items?: K8sObject[] }
      ).items ?? [],
    createTrainJob: (namespace, body, options) =>
      write("POST", `trainjob ${namespace}/${body.metadata.name}`, tjPath(namespace), body, options),
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
    createCore: (kind, namespace, body, options) =>
      write(
        "POST",
        `${kind.toLowerCase()} ${namespace}/${body.metadata.name}`,
        corePath(kind, namespace),
        body,
        options,
      ),
    replaceCore: (kind, namespace, body, options) =>
      write(
        "PUT",
        `${kind.toLowerCase()} ${namespace}/${body.metadata.name}`,
        `${corePath(kind, namespace)}/${encodeURIComponent(body.metadata.name)}`,
        body,
        options,
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
    readPodLog: async (namespace, pod, container, options = {}) => {
      const res = await openLog(namespace, pod, container, { ...options, follow: false });
      if (res === undefined) return "";
      try {
        // A log can outgrow memory: keep its newest MAX_LOG_BYTES and say how much came before, never cut silently.
        const { text, dropped } = await readCapped(res, options.maxBytes ?? MAX_LOG_BYTES);
        return dropped === 0 ? text : `[${dropped} earlier bytes not shown: use --follow or --tail]\n${text}`;
      } catch (error) {
        throw kubeError(error, `log of pod ${namespace}/${pod}`);
      }
    },
    streamPodLog: async (namespace, pod, container, out, options = {}) => {
      const res = await openLog(namespace, pod, container, { ...options, follow: options.follow ?? true });
      if (res === undefined) return;
      await new Promise<void>((resolve) => {
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
    },
  };
}
