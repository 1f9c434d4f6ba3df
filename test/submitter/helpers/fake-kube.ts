/**
 * A stand-in for the Kubernetes API server, which cannot run here: a small HTTP server on 127.0.0.1 that plays
 * the few endpoints the submitter uses (TrainJobs, ClusterTrainingRuntimes, ConfigMaps, Secrets, pod list, pod
 * log with follow) and records every request (verb, path, query, content type, authorization, body).
 *
 * What it reproduces of a real kube-apiserver (checked against v1.26 with the Trainer v2.3 CRDs):
 * - status codes and metav1.Status bodies: 201 on create, 409 AlreadyExists, 404 NotFound with details, 409
 *   Conflict on a PUT with a stale resourceVersion;
 * - a create in a namespace that does not exist: 404 `namespaces "x" not found`, details {name, kind: namespaces}
 *   (the NamespaceLifecycle admission plugin); `namespaces` holds the ones that exist;
 * - unknown fields of a TrainJob (per the CRD's structural schema) and of a ConfigMap/Secret: with
 *   fieldValidation=Strict 400 BadRequest `strict decoding error: unknown field "..."`; with Warn (the default
 *   since v1.23) the object is stored pruned and each field comes back as a `Warning: 299 - "unknown field ..."`
 *   header; with Ignore it is pruned silently;
 * - the CRD's OpenAPI schema (minimum, maximum, maxLength, enum, required...): 422 Invalid with
 *   details.causes [{reason, message, field}], and the TrainJob name rule its CEL checks;
 * - dryRun=All: validated and answered as a create would be (uid, creationTimestamp), nothing stored;
 * - finalizers: with `trainJobFinalizers` set a DELETE only stamps metadata.deletionTimestamp; `finalize()`
 *   lets the object go, as its controller would;
 * - pod logs: 204 No Content (no body, no content type) for a pod not scheduled to a node (no spec.nodeName),
 *   400 "waiting to start" for a scheduled pod whose phase is Pending, 200 text otherwise, follow streams.
 * What it does not: CEL rules other than the name rule, int32/int64 format ranges, admission webhooks (JobSet's, the Trainer's), defaulting,
 * the garbage collector (children owned by a deleted TrainJob stay, as they do until the collector runs),
 * RBAC (every request is allowed; the RBAC test compares the verbs used with runtimes/rbac.yaml instead),
 * watches, label selectors other than equality, and the controllers (no JobSet, no pods unless a test adds them).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { crdDir, loadCrd, type CrdValidator } from "./crd.ts";

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  authorization: string | undefined;
  body: unknown;
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface FakeKube {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** namespace/name -> object, per collection (trainjobs, configmaps, secrets, pods). */
  readonly store: Map<string, Map<string, Obj>>;
  /** Cluster-scoped runtimes by name. */
  readonly runtimes: Map<string, Obj>;
  /** Namespaces that exist (default, team-a, team-b): a create elsewhere is 404 as NamespaceLifecycle answers. */
  readonly namespaces: Set<string>;
  /** Warnings every successful write answers with (what a CRD version's deprecationWarning makes the server send). */
  readonly writeWarnings: string[];
  /** Finalizers every new TrainJob gets (none by default): a DELETE then leaves it with a deletionTimestamp. */
  trainJobFinalizers: string[];
  /** Removes the finalizers of a deleted object, so it goes (what its controller does when done). */
  finalize(collection: string, namespace: string, name: string): void;
  /** Answer the next requests matching (method, collection) with this status (403, 500...). */
  failNext(
    method: string,
    collection: string,
    status: number,
    message?: string,
    details?: Record<string, unknown>,
  ): void;
  addPod(namespace: string, pod: Obj, log?: string): void;
  /** Append to a followed log; `end` closes the stream. */
  appendLog(namespace: string, pod: string, text: string, end?: boolean): void;
  close(): Promise<void>;
  kubeConfig(): Promise<unknown>;
}

function status(
  res: ServerResponse,
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(
    JSON.stringify({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message,
      reason,
      ...(details === undefined ? {} : { details }),
      code,
    }),
  );
}

type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
let trainJobCrd: { schema: Schema; validator: CrdValidator } | undefined;
/** The TrainJob CRD's schema, read once per test process (the file is about 1 MB). */
function trainJobSchema(): { schema: Schema; validator: CrdValidator } {
  const file = "trainer.kubeflow.org_trainjobs.yaml";
  trainJobCrd ??= {
    schema: (
      YAML.parse(readFileSync(path.join(crdDir, file), "utf8")) as {
        spec: { versions: Array<{ name: string; schema: { openAPIV3Schema: Schema } }> };
      }
    ).spec.versions.find((v) => v.name === "v1alpha1")!.schema.openAPIV3Schema,
    validator: loadCrd(file),
  };
  return trainJobCrd;
}

/** Drops what a structural schema does not name, collecting the dotted paths, as the apiserver prunes. */
function prune(value: unknown, schema: Schema | undefined, at: string, unknown: string[]): void {
  if (schema === undefined || value === null || typeof value !== "object") return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => prune(v, schema.items as Schema | undefined, `${at}[${i}]`, unknown));
    return;
  }
  if (schema["x-kubernetes-preserve-unknown-fields"] === true) return;
  const props = schema.properties as Record<string, Schema> | undefined;
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const sub =
      props?.[key] ?? (typeof schema.additionalProperties === "object" ? schema.additionalProperties : undefined);
    const here = at === "" ? key : `${at}.${key}`;
    if (sub === undefined && props !== undefined && schema.additionalProperties === undefined) {
      if (!(at === "" && ["apiVersion", "kind", "metadata"].includes(key))) {
        unknown.push(here);
        delete obj[key];
      }
      continue;
    }
    prune(obj[key], sub as Schema | undefined, here, unknown);
  }
}

const CORE_FIELDS = new Set([
  "apiVersion",
  "kind",
  "metadata",
  "data",
  "binaryData",
  "stringData",
  "immutable",
  "type",
]);

/** 422 causes from the schema: ajv's errors with their paths in the apiserver's dotted form, int32 ranges added. */
function invalidCauses(doc: Obj, validator: CrdValidator): Array<{ reason: string; message: string; field: string }> {
  const causes = validator.validate(doc).map((e) => {
    const m = /^(\S+) (.*)$/.exec(e);
    const field = (m?.[1] ?? "/").replace(/^\//, "").replaceAll("/", ".");
    return { reason: "FieldValueInvalid", message: `Invalid value: ${m?.[2] ?? e}`, field };
  });
  return causes;
}

export async function startFakeKube(): Promise<FakeKube> {
  const requests: RecordedRequest[] = [];
  const store = new Map<string, Map<string, Obj>>();
  const runtimes = new Map<string, Obj>();
  const logs = new Map<string, { text: string; ended: boolean; followers: Set<ServerResponse> }>();
  const failures: Array<{
    method: string;
    collection: string;
    status: number;
    message: string;
    details?: Record<string, unknown>;
  }> = [];
  const namespaces = new Set(["default", "team-a", "team-b"]);
  const self = { trainJobFinalizers: [] as string[] };
  const writeWarnings: string[] = [];
  const coll = (name: string): Map<string, Obj> => {
    let m = store.get(name);
    if (!m) store.set(name, (m = new Map()));
    return m;
  };
  const logOf = (key: string) => {
    let l = logs.get(key);
    if (!l) logs.set(key, (l = { text: "", ended: false, followers: new Set() }));
    return l;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    const url = new URL(req.url ?? "/", "http://x");
    const query = Object.fromEntries(url.searchParams);
    let body: unknown = undefined;
    if (raw !== "") {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    const method = req.method ?? "GET";
    requests.push({
      method,
      path: url.pathname,
      query,
      contentType: req.headers["content-type"],
      authorization: req.headers.authorization,
      body,
    });

    let m = /^\/apis\/trainer\.kubeflow\.org\/v1alpha1\/clustertrainingruntimes\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const rt = runtimes.get(m[1]!);
      if (method === "GET" && rt)
        return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(rt));
      return status(res, 404, "NotFound", `clustertrainingruntimes.trainer.kubeflow.org "${m[1]}" not found`);
    }
    m =
      /^\/apis\/trainer\.kubeflow\.org\/v1alpha1\/namespaces\/([^/]+)\/(trainjobs)(?:\/([^/]+))?$/.exec(url.pathname) ??
      /^\/api\/v1\/namespaces\/([^/]+)\/(configmaps|secrets|pods)(?:\/([^/]+))?$/.exec(url.pathname);
    const logMatch = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/log$/.exec(url.pathname);
    if (logMatch) {
      const key = `${logMatch[1]}/${logMatch[2]}`;
      if (!coll("pods").has(key)) return status(res, 404, "NotFound", `pods "${logMatch[2]}" not found`);
      const pod = coll("pods").get(key)!;
      // Not scheduled: the kubelet that would serve the log is not known, and the server answers with nothing.
      if (pod.spec?.nodeName === undefined) return void res.writeHead(204).end();
      if (pod.status?.phase === "Pending") {
        return status(
          res,
          400,
          "BadRequest",
          `container "node" in pod "${logMatch[2]}" is waiting to start: ContainerCreating`,
        );
      }
      const l = logOf(key);
      res.writeHead(200, { "content-type": "text/plain" });
      let text = l.text;
      if (query.tailLines !== undefined)
        text = text
          .split(/(?<=\n)/)
          .slice(-Number(query.tailLines))
          .join("");
      if (query.follow !== "true" || l.ended) return void res.end(text);
      res.write(text);
      l.followers.add(res);
      res.on("close", () => l.followers.delete(res));
      return;
    }
    if (!m) return status(res, 404, "NotFound", `no route ${url.pathname}`);
    const [, ns, collection, name] = m as unknown as [string, string, string, string | undefined];
    const failure = failures.findIndex((f) => f.method === method && f.collection === collection);
    if (failure >= 0) {
      const f = failures.splice(failure, 1)[0]!;
      const reason = ({ 403: "Forbidden", 422: "Invalid" } as Record<number, string>)[f.status] ?? "InternalError";
      return status(res, f.status, reason, f.message, f.details);
    }
    const objects = coll(collection);
    const json = (code: number, obj: unknown): void => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(obj));
    };
    const write = method === "POST" || method === "PUT";
    let warnings: string[] = [];
    let obj: Obj = {};
    if (write) {
      if (!namespaces.has(ns)) {
        return status(res, 404, "NotFound", `namespaces "${ns}" not found`, { name: ns, kind: "namespaces" });
      }
      obj = structuredClone(body) as Obj;
      const unknown: string[] = [];
      const crd = collection === "trainjobs" ? trainJobSchema() : undefined;
      if (crd !== undefined) prune(obj, crd.schema, "", unknown);
      else
        for (const k of Object.keys(obj))
          if (!CORE_FIELDS.has(k)) {
            unknown.push(k);
            delete obj[k];
          }
      const validation = query.fieldValidation ?? "Warn";
      const kind = collection === "trainjobs" ? "TrainJob" : collection === "configmaps" ? "ConfigMap" : "Secret";
      if (unknown.length > 0 && validation === "Strict") {
        return status(
          res,
          400,
          "BadRequest",
          `${kind} in version "${collection === "trainjobs" ? "v1alpha1" : "v1"}" cannot be handled as a ${kind}: strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(", ")}`,
        );
      }
      warnings = [...writeWarnings, ...(validation === "Warn" ? unknown.map((u) => `unknown field "${u}"`) : [])];
      if (crd !== undefined) {
        const causes = invalidCauses(obj, crd.validator);
        if (causes.length > 0) {
          return status(
            res,
            422,
            "Invalid",
            `TrainJob.trainer.kubeflow.org "${obj.metadata?.name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(", ")}`,
            { name: obj.metadata?.name, group: "trainer.kubeflow.org", kind: "TrainJob", causes },
          );
        }
      }
      if (collection === "secrets" && obj.stringData) {
        obj.data = {
          ...obj.data,
          ...Object.fromEntries(
            Object.entries(obj.stringData as Record<string, string>).map(([k, v]) => [
              k,
              Buffer.from(v).toString("base64"),
            ]),
          ),
        };
        delete obj.stringData;
      }
    }
    const answer = (code: number, o: Obj): void => {
      // Each warning its own header line, as the apiserver sends them.
      const headers: Array<[string, string]> = [["content-type", "application/json"]];
      for (const w of warnings) headers.push(["warning", `299 - ${JSON.stringify(w)}`]);
      res.writeHead(code, headers.flat());
      res.end(JSON.stringify(o));
    };
    const dryRun = query.dryRun === "All";
    if (method === "POST" && name === undefined) {
      const key = `${ns}/${obj.metadata?.name}`;
      if (objects.has(key))
        return status(res, 409, "AlreadyExists", `${collection} "${obj.metadata?.name}" already exists`, {
          name: obj.metadata?.name,
          kind: collection,
        });
      obj.metadata = {
        ...obj.metadata,
        namespace: ns,
        uid: randomUUID(),
        creationTimestamp: new Date().toISOString(),
        resourceVersion: "1",
        ...(collection === "trainjobs" && self.trainJobFinalizers.length > 0
          ? { finalizers: [...self.trainJobFinalizers] }
          : {}),
      };
      if (!dryRun) objects.set(key, obj);
      return answer(201, obj);
    }
    if (method === "GET" && name === undefined) {
      const selector = (query.labelSelector ?? "")
        .split(",")
        .filter(Boolean)
        .map((s) => s.split("="));
      const items = [...objects.entries()]
        .filter(([k]) => k.startsWith(`${ns}/`))
        .map(([, v]) => v)
        .filter((o) => selector.every(([k, v]) => o.metadata?.labels?.[k!] === v));
      return json(200, { kind: "List", apiVersion: "v1", metadata: {}, items });
    }
    const key = `${ns}/${name}`;
    const current = objects.get(key);
    if (current === undefined)
      return status(res, 404, "NotFound", `${collection} "${name}" not found`, { name, kind: collection });
    if (method === "GET") return json(200, current);
    if (method === "PUT") {
      if (obj.metadata?.resourceVersion !== current.metadata.resourceVersion) {
        return status(
          res,
          409,
          "Conflict",
          `Operation cannot be fulfilled on ${collection} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      obj.metadata = {
        ...obj.metadata,
        namespace: ns,
        uid: current.metadata.uid,
        creationTimestamp: current.metadata.creationTimestamp,
        resourceVersion: String(Number(current.metadata.resourceVersion) + 1),
      };
      if (!dryRun) objects.set(key, obj);
      return answer(200, obj);
    }
    if (method === "DELETE") {
      if ((current.metadata.finalizers ?? []).length > 0) {
        current.metadata.deletionTimestamp ??= new Date().toISOString();
        return json(200, current);
      }
      objects.delete(key);
      return json(200, { kind: "Status", apiVersion: "v1", status: "Success", details: { name } });
    }
    return status(res, 405, "MethodNotAllowed", `${method} not allowed`);
  };

  const server: Server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (raw += d));
    req.on("end", () => handle(req, res, raw));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    requests,
    store,
    runtimes,
    namespaces,
    writeWarnings,
    get trainJobFinalizers() {
      return self.trainJobFinalizers;
    },
    set trainJobFinalizers(list: string[]) {
      self.trainJobFinalizers = list;
    },
    finalize(collection, namespace, name) {
      const key = `${namespace}/${name}`;
      const o = coll(collection).get(key);
      if (o === undefined) return;
      o.metadata.finalizers = [];
      if (o.metadata.deletionTimestamp !== undefined) coll(collection).delete(key);
    },
    failNext(method, collection, code, message = "injected failure", details) {
      failures.push({ method, collection, status: code, message, ...(details === undefined ? {} : { details }) });
    },
    addPod(namespace, pod, log = "") {
      coll("pods").set(`${namespace}/${pod.metadata.name}`, { ...pod, metadata: { ...pod.metadata, namespace } });
      logOf(`${namespace}/${pod.metadata.name}`).text = log;
    },
    appendLog(namespace, pod, text, end = false) {
      const l = logOf(`${namespace}/${pod}`);
      l.text += text;
      for (const f of l.followers) {
        f.write(text);
        if (end) f.end();
      }
      if (end) l.ended = true;
    },
    async close() {
      for (const l of logs.values()) for (const f of l.followers) f.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    async kubeConfig() {
      const k8s = await import("@kubernetes/client-node");
      const kc = new k8s.KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: "fake", server: url, skipTLSVerify: true }],
        users: [{ name: "tester", token: "test-bearer-token" }],
        contexts: [{ name: "fake", cluster: "fake", user: "tester", namespace: "team-a" }],
        currentContext: "fake",
      });
      return kc;
    },
  };
}

/** A pod as the Job controller makes it for worker `index` of TrainJob `name`. */
export function workerPod(
  name: string,
  index: number,
  extra: { phase?: string; created?: string; suffix?: string; scheduled?: boolean } = {},
): Obj {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `${name}-node-0-${index}-${extra.suffix ?? "abcde"}`,
      creationTimestamp: extra.created ?? "2026-01-01T00:00:00Z",
      labels: {
        "jobset.sigs.k8s.io/jobset-name": name,
        "jobset.sigs.k8s.io/replicatedjob-name": "node",
        "jobset.sigs.k8s.io/job-index": "0",
        "batch.kubernetes.io/job-completion-index": String(index),
      },
      annotations: { "batch.kubernetes.io/job-completion-index": String(index) },
    },
    spec: extra.scheduled === false ? {} : { nodeName: "worker-node-1" },
    status: { phase: extra.phase ?? "Running" },
  };
}
