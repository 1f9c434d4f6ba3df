/**
 * A stand-in for the Kubernetes API server, which cannot run here: a small HTTP server on 127.0.0.1 that plays
 * the few endpoints the submitter uses (TrainJobs, ClusterTrainingRuntimes, ConfigMaps, Secrets, pod list, pod
 * log with follow) with the API server's status codes and Status bodies (201 on create, 409 AlreadyExists,
 * 404 NotFound), and records every request (verb, path, query, content type, authorization, body).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";

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
  /** Answer the next requests matching (method, collection) with this status (403, 500...). */
  failNext(method: string, collection: string, status: number, message?: string): void;
  addPod(namespace: string, pod: Obj, log?: string): void;
  /** Append to a followed log; `end` closes the stream. */
  appendLog(namespace: string, pod: string, text: string, end?: boolean): void;
  close(): Promise<void>;
  kubeConfig(): Promise<unknown>;
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }));
}

export async function startFakeKube(): Promise<FakeKube> {
  const requests: RecordedRequest[] = [];
  const store = new Map<string, Map<string, Obj>>();
  const runtimes = new Map<string, Obj>();
  const logs = new Map<string, { text: string; ended: boolean; followers: Set<ServerResponse> }>();
  const failures: Array<{ method: string; collection: string; status: number; message: string }> = [];
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
      return status(res, f.status, f.status === 403 ? "Forbidden" : "InternalError", f.message);
    }
    const objects = coll(collection);
    const json = (code: number, obj: unknown): void => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(obj));
    };
    if (method === "POST" && name === undefined) {
      const obj = structuredClone(body) as Obj;
      const key = `${ns}/${obj.metadata?.name}`;
      if (objects.has(key))
        return status(res, 409, "AlreadyExists", `${collection} "${obj.metadata?.name}" already exists`);
      obj.metadata = {
        ...obj.metadata,
        namespace: ns,
        uid: randomUUID(),
        creationTimestamp: new Date().toISOString(),
        resourceVersion: "1",
      };
      if (collection === "secrets" && obj.stringData) {
        obj.data = Object.fromEntries(
          Object.entries(obj.stringData as Record<string, string>).map(([k, v]) => [
            k,
            Buffer.from(v).toString("base64"),
          ]),
        );
        delete obj.stringData;
      }
      objects.set(key, obj);
      return json(201, obj);
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
    const obj = objects.get(key);
    if (obj === undefined) return status(res, 404, "NotFound", `${collection} "${name}" not found`);
    if (method === "GET") return json(200, obj);
    if (method === "DELETE") {
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
    failNext(method, collection, code, message = "injected failure") {
      failures.push({ method, collection, status: code, message });
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
  extra: { phase?: string; created?: string; suffix?: string } = {},
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
    status: { phase: extra.phase ?? "Running" },
  };
}
