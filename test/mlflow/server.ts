/**
 * An MLflow tracking server for tests, on 127.0.0.1. No MLflow server can be installed here (MLflow is a Python
 * package and the Python package index is not reachable from this machine nor from CI), so this one enforces
 * MLflow's documented REST API 2.0 request shapes instead (mlflow.org/docs/latest/rest-api.html): the path under
 * /api/2.0/mlflow/, the method, the JSON content type, every field's name and type (strings, int64 ms timestamps
 * and steps as integers, metric values as doubles, param values as strings), MLflow's rule for names, the
 * log-batch limits (1000 metrics, 100 params, 100 tags, 1000 in all), params never changing once written, and a
 * run's `run_name` agreeing with its `mlflow.runName` tag.
 * A request of the wrong shape gets MLflow's `400 {"error_code": "INVALID_PARAMETER_VALUE", "message"}`; an
 * unknown path `404 ENDPOINT_NOT_FOUND`. It keeps experiments and runs in memory, records every request in order,
 * and can be told to fail or hang per request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface MlflowRequest {
  method: string;
  /** Path under /api/2.0/mlflow/ (`runs/log-batch`). */
  endpoint: string;
  query: Record<string, string>;
  headers: IncomingMessage["headers"];
  body: Record<string, unknown>;
  /** What the server answered (0 while hanging). */
  status: number;
}

/**
 * Answers a request differently from the rules: a status (with an MLflow error code), never ("hang"), or as usual
 * once `hold` resolves.
 */
export type Fault = (
  req: MlflowRequest,
  n: number,
) => { status: number; errorCode?: string; retryAfter?: string } | { hold: Promise<void> } | "hang" | undefined;

export interface StoredRun {
  runId: string;
  experimentId: string;
  runName: string | undefined;
  startTime: number | undefined;
  endTime: number | undefined;
  status: string;
  params: Map<string, string>;
  tags: Map<string, string>;
  metrics: Array<{ key: string; value: number; timestamp: number; step: number }>;
}

export interface TestMlflow {
  url: string;
  requests: MlflowRequest[];
  /** The endpoints in order (`GET experiments/get-by-name`, `POST runs/create`, ...). */
  sequence(): string[];
  runs: Map<string, StoredRun>;
  experiments: Map<string, { id: string; lifecycle: "active" | "deleted" }>;
  setFault(fault: Fault | undefined): void;
  waitFor(pred: (requests: MlflowRequest[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** How a run in an experiment that does not exist yet starts: the lookup, the experiment, the run, its params. */
export const NEW_EXPERIMENT_RUN = [
  "GET experiments/get-by-name",
  "POST experiments/create",
  "POST runs/create",
  "POST runs/log-batch",
];

const PREFIX = "/api/2.0/mlflow/";
const RUN_STATUSES = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

class Invalid extends Error {}

/** MLflow's name rule (mlflow/utils/validation.py, the 1.x/2.x form): at most 250 of `[/\w.\- ]`, no `..` part. */
const validName = (key: string): boolean =>
  key.length <= 250 && /^[/\w.\- ]*$/.test(key) && !key.split("/").includes("..");

type FieldType = "string" | "int64" | "double" | "keyValues" | "metrics" | "status";

/** Checks `body` has only `fields`, each of its type, and the `required` ones. */
function shape(body: Record<string, unknown>, fields: Record<string, FieldType>, required: string[] = []): void {
  for (const name of required)
    if (body[name] === undefined) throw new Invalid(`Missing value for required parameter '${name}'.`);
  for (const [name, value] of Object.entries(body)) {
    const type = fields[name];
    if (type === undefined) throw new Invalid(`Unknown field '${name}'.`);
    check(name, type, value);
  }
}

function check(name: string, type: FieldType, value: unknown): void {
  const bad = () => new Invalid(`Invalid value ${JSON.stringify(value)} for parameter '${name}' supplied (${type}).`);
  switch (type) {
    case "string":
      if (typeof value !== "string") throw bad();
      return;
    case "int64":
      if (typeof value !== "number" || !Number.isSafeInteger(value)) throw bad();
      return;
    case "double":
      if (typeof value !== "number") throw bad();
      return;
    case "status":
      if (typeof value !== "string" || !RUN_STATUSES.includes(value)) throw bad();
      return;
    case "keyValues":
      if (!Array.isArray(value)) throw bad();
      for (const kv of value) {
        if (typeof kv !== "object" || kv === null) throw bad();
        shape(kv as Record<string, unknown>, { key: "string", value: "string" }, ["key", "value"]);
        const { key, value: v } = kv as { key: string; value: string };
        if (!validName(key) || v.length > 6000) throw bad();
      }
      return;
    case "metrics":
      if (!Array.isArray(value)) throw bad();
      for (const m of value) {
        if (typeof m !== "object" || m === null) throw bad();
        shape(m as Record<string, unknown>, { key: "string", value: "double", timestamp: "int64", step: "int64" }, [
          "key",
          "value",
          "timestamp",
        ]);
        if (!validName((m as { key: string }).key)) throw bad();
      }
      return;
  }
}

export async function startMlflow(): Promise<TestMlflow> {
  const requests: MlflowRequest[] = [];
  const runs = new Map<string, StoredRun>();
  const experiments = new Map<string, { id: string; lifecycle: "active" | "deleted" }>();
  const hanging = new Set<ServerResponse>();
  let fault: Fault | undefined;
  let nextId = 1;

  const handle = (r: MlflowRequest): { status: number; body: unknown } => {
    const post = (fields: Record<string, FieldType>, required: string[]) => {
      if (r.method !== "POST") throw Object.assign(new Invalid("method"), { status: 405 });
      if (!String(r.headers["content-type"] ?? "").startsWith("application/json"))
        throw new Invalid("Content-Type must be application/json");
      shape(r.body, fields, required);
    };
    const runOf = (id: unknown): StoredRun => {
      const run = runs.get(String(id));
      if (run === undefined)
        throw Object.assign(new Invalid(`Run '${String(id)}' not found`), {
          status: 404,
          code: "RESOURCE_DOES_NOT_EXIST",
        });
      return run;
    };
    switch (r.endpoint) {
      case "experiments/get-by-name": {
        if (r.method !== "GET") throw Object.assign(new Invalid("method"), { status: 405 });
        const name = r.query.experiment_name;
        if (name === undefined || name === "" || Object.keys(r.query).length !== 1)
          throw new Invalid("Missing value for required parameter 'experiment_name'.");
        const exp = experiments.get(name);
        if (exp === undefined)
          throw Object.assign(new Invalid(`Could not find experiment with name '${name}'`), {
            status: 404,
            code: "RESOURCE_DOES_NOT_EXIST",
          });
        return { status: 200, body: { experiment: { experiment_id: exp.id, name, lifecycle_stage: exp.lifecycle } } };
      }
      case "experiments/create": {
        post({ name: "string", artifact_location: "string", tags: "keyValues" }, ["name"]);
        const name = r.body.name as string;
        if (experiments.has(name))
          throw Object.assign(new Invalid(`Experiment '${name}' already exists.`), { code: "RESOURCE_ALREADY_EXISTS" });
        const id = String(nextId++);
        experiments.set(name, { id, lifecycle: "active" });
        return { status: 200, body: { experiment_id: id } };
      }
      case "runs/create": {
        post(
          { experiment_id: "string", user_id: "string", run_name: "string", start_time: "int64", tags: "keyValues" },
          ["experiment_id"],
        );
        const exp = [...experiments.values()].find((e) => e.id === r.body.experiment_id);
        if (exp === undefined || exp.lifecycle === "deleted")
          throw new Invalid(`The experiment ${String(r.body.experiment_id)} must be in the 'active' state.`);
        const runId = `run${nextId++}`.padEnd(32, "0");
        const tags = new Map(
          (r.body.tags as { key: string; value: string }[] | undefined)?.map((t) => [t.key, t.value]),
        );
        const tagName = tags.get("mlflow.runName");
        if (r.body.run_name !== undefined && tagName !== undefined && tagName !== r.body.run_name)
          throw new Invalid(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values.",
          );
        runs.set(runId, {
          runId,
          experimentId: r.body.experiment_id as string,
          runName: r.body.run_name as string | undefined,
          startTime: r.body.start_time as number | undefined,
          endTime: undefined,
          status: "RUNNING",
          params: new Map(),
          tags,
          metrics: [],
        });
        return {
          status: 200,
          body: { run: { info: { run_id: runId, experiment_id: r.body.experiment_id, status: "RUNNING" } } },
        };
      }
      case "runs/log-batch": {
        post({ run_id: "string", metrics: "metrics", params: "keyValues", tags: "keyValues" }, ["run_id"]);
        const m = (r.body.metrics ?? []) as StoredRun["metrics"];
        const p = (r.body.params ?? []) as { key: string; value: string }[];
        const t = (r.body.tags ?? []) as { key: string; value: string }[];
        if (m.length > 1000)
          throw new Invalid(`A batch logging request can contain at most 1000 metrics. Got ${m.length} metrics.`);
        if (p.length > 100)
          throw new Invalid(`A batch logging request can contain at most 100 params. Got ${p.length} params.`);
        if (t.length > 100)
          throw new Invalid(`A batch logging request can contain at most 100 tags. Got ${t.length} tags.`);
        if (m.length + p.length + t.length > 1000)
          throw new Invalid("A batch logging request can contain at most 1000 metrics, params, and tags in total.");
        const run = runOf(r.body.run_id);
        for (const { key, value } of p) {
          const old = run.params.get(key);
          if (old !== undefined && old !== value)
            throw new Invalid(
              `Changing param values is not allowed. Param with key='${key}' was already logged with value='${old}'.`,
            );
        }
        for (const { key, value } of p) run.params.set(key, value);
        for (const { key, value } of t) run.tags.set(key, value);
        run.metrics.push(...m.map((x) => ({ ...x, step: x.step ?? 0 })));
        return { status: 200, body: {} };
      }
      case "runs/update": {
        post({ run_id: "string", run_uuid: "string", status: "status", end_time: "int64", run_name: "string" }, [
          "run_id",
        ]);
        const run = runOf(r.body.run_id);
        if (r.body.status !== undefined) run.status = r.body.status as string;
        if (r.body.end_time !== undefined) run.endTime = r.body.end_time as number;
        return { status: 200, body: { run_info: { run_id: run.runId, status: run.status } } };
      }
      default:
        throw Object.assign(new Invalid(`No API route for ${r.endpoint}`), { status: 404, code: "ENDPOINT_NOT_FOUND" });
    }
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://x");
      const text = Buffer.concat(chunks).toString("utf8");
      const r: MlflowRequest = {
        method: req.method ?? "",
        endpoint: url.pathname.startsWith(PREFIX) ? url.pathname.slice(PREFIX.length) : url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: req.headers,
        body: {},
        status: 0,
      };
      requests.push(r);
      const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        r.status = status;
        res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
      };
      const f = fault?.(r, requests.length);
      if (f === "hang") {
        hanging.add(res);
        return;
      }
      if (f !== undefined && "hold" in f) {
        void f.hold.then(() => answer());
        return;
      }
      if (f !== undefined)
        return reply(
          f.status,
          { error_code: f.errorCode ?? "INTERNAL_ERROR", message: "told to fail" },
          f.retryAfter === undefined ? {} : { "retry-after": f.retryAfter },
        );
      answer();
      function answer() {
        try {
          if (text !== "") {
            const parsed = JSON.parse(text) as unknown;
            if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
              throw new Invalid("not an object");
            r.body = parsed as Record<string, unknown>;
          }
          const { status, body } = handle(r);
          reply(status, body);
        } catch (error) {
          const e = error as Error & { status?: number; code?: string };
          reply(e.status ?? 400, { error_code: e.code ?? "INVALID_PARAMETER_VALUE", message: e.message });
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    sequence: () => requests.map((r) => `${r.method} ${r.endpoint}`),
    runs,
    experiments,
    setFault(f) {
      fault = f;
    },
    async waitFor(pred, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (!pred(requests)) {
        if (Date.now() > until) throw new Error(`timed out; got ${requests.map((r) => r.endpoint).join(",")}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
