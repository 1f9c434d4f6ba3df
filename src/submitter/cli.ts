/**
 * The `trainjob` command line: render, submit, status, logs, delete, serve. The entry (src/cli/trainjob.ts)
 * hands it process.env; Kubernetes and HTTP code load only for the commands that need them.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { Command, Option } from "commander";
import { AgentError } from "../errors/index.ts";
import type { Env } from "../config/index.ts";
import { loadSubmitterConfig, normalizeOptionsFrom, type SubmitterConfig } from "./config.ts";
import { normalizeJobRequest } from "./request.ts";
import { renderJob, type K8sObject, type RenderedJob } from "./render.ts";
import type { JobSpec } from "./spec.ts";
import type { Submitter } from "./submitter.ts";

export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin?: NodeJS.ReadableStream;
  readonly now?: () => Date;
  /** Replaces the Kubernetes-backed submitter (tests). */
  readonly submitter?: (opts: KubeOpts, config: SubmitterConfig) => Promise<Connected>;
}

interface KubeOpts {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  runtimeCheck?: boolean;
}

interface SpecOpts extends KubeOpts {
  file?: string;
  name?: string;
  userId?: string;
  framework?: string;
  image?: string;
  nodes?: string;
  procPerNode?: string;
  cpu?: string;
  cpuLimit?: string;
  memory?: string;
  memoryLimit?: string;
  gpu?: string;
  env: string[];
  volume: string[];
  code: string[];
  command?: string;
  runtime?: string;
  agent?: string;
  backendUrl?: string;
  jobId?: string;
  datasetId?: string;
  checkpointUri?: string;
  storageSecret?: string;
  s3Endpoint?: string;
  s3Bucket?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function specOptions(cmd: Command): Command {
  return cmd
    .option("-f, --file <path>", "job request as JSON or YAML (the seed API's body is accepted as is); - reads stdin")
    .option("--name <name>", "TrainJob name (default <user-id>-job-<UTC timestamp>)")
    .option("--user-id <id>", "user id, used for the generated name and a label")
    .option(
      "-n, --namespace <ns>",
      "namespace (default: TRAINJOB_NAMESPACE, else the kubeconfig context's on submit, default on render)",
    )
    .option("--framework <fw>", "pytorch or tensorflow")
    .option("--image <image>", "container image (default: the runtime's)")
    .option("--nodes <n>", "number of nodes (pods)")
    .option("--proc-per-node <n>", "processes per node (pytorch; default: GPUs per node, or 1)")
    .option("--cpu <q>", "CPU request per node, e.g. 2 or 500m")
    .option("--cpu-limit <q>", "CPU limit per node")
    .option("--memory <q>", "memory request per node, e.g. 8Gi")
    .option("--memory-limit <q>", "memory limit per node")
    .option("--gpu <n>", "GPUs per node (nvidia.com/gpu, requests = limits)")
    .option(
      "-e, --env <NAME=VALUE>",
      "environment variable (repeatable); credential-looking names go into the job's Secret",
      collect,
      [],
    )
    .option("-v, --volume <NAME:PVC:/PATH[:ro]>", "mount a PersistentVolumeClaim (repeatable)", collect, [])
    .option(
      "--code <file>",
      "training code file put in a ConfigMap at /workspace/scripts/<file name> (repeatable)",
      collect,
      [],
    )
    .option("-c, --command <line>", "training command, split with shell quoting rules (or give the argv after --)")
    .option("--runtime <name>", "ClusterTrainingRuntime (default pytorch-simple / tensorflow-distributed)")
    .addOption(
      new Option(
        "--agent <mode>",
        "how the pod gets trainer-agent: init (runtime's init container) or baked (image)",
      ).choices(["init", "baked"]),
    )
    .option("--backend-url <url>", "callback API base URL for the agent (default BACKEND_BASE_URL)")
    .option("--job-id <id>", "backend job id (default: the TrainJob name)")
    .option("--dataset-id <id>", "DATASET_ID for the agent")
    .option("--checkpoint-uri <uri>", "CHECKPOINT_URI for the agent (s3://bucket/prefix/)")
    .option("--storage-secret <name>", "existing Secret with keys access-key-id and secret-access-key for S3")
    .option("--s3-endpoint <url>", "S3 endpoint for the agent")
    .option("--s3-bucket <bucket>", "S3 bucket for the agent");
}

function kubeOptions(cmd: Command): Command {
  return cmd
    .option("--kubeconfig <path>", "kubeconfig file (default KUBECONFIG, ~/.kube/config or in-cluster)")
    .option("--context <name>", "kubeconfig context");
}

async function readInput(path: string, io: CliIo): Promise<unknown> {
  let text: string;
  if (path === "-") {
    if (io.stdin === undefined) throw new AgentError("USAGE", "--file -: no stdin");
    const chunks: Buffer[] = [];
    for await (const chunk of io.stdin) chunks.push(Buffer.from(chunk as Buffer));
    text = Buffer.concat(chunks).toString("utf8");
  } else {
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      throw new AgentError(
        "USAGE",
        `--file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        { cause: error },
      );
    }
  }
  try {
    const YAML = await import("yaml");
    return YAML.parse(text);
  } catch (error) {
    throw new AgentError(
      "SPEC_INVALID",
      `--file ${path}: not valid JSON or YAML: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}

async function buildSpec(
  opts: SpecOpts,
  argv: string[],
  config: SubmitterConfig,
  io: CliIo,
  namespace?: string,
): Promise<JobSpec> {
  const fromFile = opts.file === undefined ? {} : await readInput(opts.file, io);
  if (typeof fromFile !== "object" || fromFile === null || Array.isArray(fromFile)) {
    throw new AgentError("SPEC_INVALID", `--file ${opts.file}: must hold a JSON/YAML object`);
  }
  const req: Record<string, unknown> = { ...(fromFile as Record<string, unknown>) };
  const set = (key: string, value: unknown): void => {
    if (value !== undefined) req[key] = value;
  };
  set("name", opts.name);
  set("user_id", opts.userId);
  set("namespace", opts.namespace);
  set("framework", opts.framework);
  set("image", opts.image);
  set("num_nodes", opts.nodes);
  set("proc_per_node", opts.procPerNode);
  set("cpu_request", opts.cpu);
  set("cpu_limit", opts.cpuLimit);
  set("memory_request", opts.memory);
  set("memory_limit", opts.memoryLimit);
  set("gpu_count", opts.gpu);
  set("runtime", opts.runtime);
  set("agent", opts.agent);
  set("dataset_id", opts.datasetId);
  set("checkpoint_uri", opts.checkpointUri);
  if (req.framework === undefined && opts.file === undefined) req.framework = "pytorch";
  if (opts.command !== undefined && argv.length > 0)
    throw new AgentError("USAGE", "give the command either with --command or after --, not both");
  if (opts.command !== undefined) req.command = opts.command;
  if (argv.length > 0) req.command = argv;
  if (opts.env.length > 0) {
    const env = Array.isArray(req.env_vars) ? [...(req.env_vars as unknown[])] : [];
    for (const item of opts.env) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new AgentError("USAGE", `--env ${JSON.stringify(item.split("=")[0])}: expected NAME=VALUE`);
      env.push({ name: item.slice(0, eq), value: item.slice(eq + 1) });
    }
    req.env_vars = env;
  }
  if (opts.volume.length > 0) {
    const volumes = Array.isArray(req.volumes) ? [...(req.volumes as unknown[])] : [];
    for (const item of opts.volume) {
      const parts = item.split(":");
      if (parts.length < 3 || parts.length > 4 || (parts[3] !== undefined && parts[3] !== "ro" && parts[3] !== "rw")) {
        throw new AgentError("USAGE", `--volume ${item}: expected NAME:PVC:/PATH[:ro]`);
      }
      volumes.push({ name: parts[0], pvc: parts[1], mountPath: parts[2], readOnly: parts[3] === "ro" });
    }
    req.volumes = volumes;
  }
  if (opts.code.length > 0) {
    const files: Record<string, string> = {};
    for (const file of opts.code) {
      if (files[basename(file)] !== undefined) {
        throw new AgentError("USAGE", `--code ${file}: another --code file is also named ${basename(file)}`);
      }
      try {
        files[basename(file)] = await readFile(file, "utf8");
      } catch (error) {
        throw new AgentError(
          "USAGE",
          `--code ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
          { cause: error },
        );
      }
    }
    req.training_code = files;
  }
  if (opts.backendUrl !== undefined || opts.jobId !== undefined) {
    req.callback = {
      ...((req.callback as object | undefined) ?? {}),
      ...(opts.backendUrl === undefined ? {} : { base_url: opts.backendUrl }),
      ...(opts.jobId === undefined ? {} : { job_id: opts.jobId }),
    };
  }
  if (opts.storageSecret !== undefined || opts.s3Endpoint !== undefined || opts.s3Bucket !== undefined) {
    req.storage = {
      ...((req.storage as object | undefined) ?? config.storage ?? {}),
      ...(opts.storageSecret === undefined ? {} : { credentials_secret: opts.storageSecret }),
      ...(opts.s3Endpoint === undefined ? {} : { endpoint: opts.s3Endpoint }),
      ...(opts.s3Bucket === undefined ? {} : { bucket: opts.s3Bucket }),
    };
  }
  return normalizeJobRequest(req, {
    ...normalizeOptionsFrom(config, namespace),
    ...(io.now === undefined ? {} : { now: io.now }),
  });
}

function redactSecret(secret: K8sObject): K8sObject {
  const data = (secret.stringData ?? {}) as Record<string, string>;
  return {
    ...secret,
    stringData: Object.fromEntries(Object.keys(data).map((k) => [k, "<redacted: render --show-secrets>"])),
  };
}

/** The objects of a rendered job in apply order: TrainJob first (the others get its uid as owner on submit). */
export function renderedObjects(rendered: RenderedJob, showSecrets: boolean): K8sObject[] {
  const out: K8sObject[] = [rendered.trainJob];
  if (rendered.configMap) out.push(rendered.configMap);
  if (rendered.secret) out.push(showSecrets ? rendered.secret : redactSecret(rendered.secret));
  return out;
}

export async function formatObjects(objects: K8sObject[], format: string): Promise<string> {
  if (format === "json") {
    return (
      JSON.stringify(objects.length === 1 ? objects[0] : { apiVersion: "v1", kind: "List", items: objects }, null, 2) +
      "\n"
    );
  }
  const YAML = await import("yaml");
  return objects.map((o) => YAML.stringify(o, { lineWidth: 0 })).join("---\n");
}

function warn(io: CliIo, warnings: readonly string[]): void {
  for (const w of warnings) io.stderr.write(`trainjob: warning: ${w}\n`);
}

/** A submitter and the kubeconfig context's namespace (the default, as for kubectl). */
export interface Connected {
  readonly submitter: Submitter;
  readonly currentNamespace: string;
}

async function defaultSubmitter(opts: KubeOpts, config: SubmitterConfig): Promise<Connected> {
  const { createKubeClient } = await import("./kube/client.ts");
  const { createSubmitter } = await import("./submitter.ts");
  const { createBackendClient } = await import("./backend.ts");
  const kube = await createKubeClient({
    ...(opts.kubeconfig === undefined ? {} : { kubeconfig: opts.kubeconfig }),
    ...(opts.context === undefined ? {} : { context: opts.context }),
  });
  const submitter = createSubmitter({
    kube,
    ...(config.backendUrl === undefined
      ? {}
      : {
          backend: createBackendClient({
            url: config.backendUrl,
            ...(config.backendAdminToken ? { adminToken: config.backendAdminToken } : {}),
          }),
        }),
    ...(opts.runtimeCheck === false ? { checkRuntime: false } : {}),
  });
  return { submitter, currentNamespace: kube.currentNamespace };
}

function namespaceOf(opts: KubeOpts, config: SubmitterConfig, connected: Connected): string {
  return opts.namespace ?? config.namespace ?? connected.currentNamespace;
}

export function registerTrainjobCommands(program: Command, env: Env, io: CliIo): void {
  let config: SubmitterConfig | undefined;
  const cfg = (): SubmitterConfig => (config ??= loadSubmitterConfig(env));
  const connect = (opts: KubeOpts): Promise<Connected> => (io.submitter ?? defaultSubmitter)(opts, cfg());

  specOptions(program.command("render"))
    .description(
      "print the TrainJob, ConfigMap and Secret a submit would create (like kubectl --dry-run=client -o yaml)",
    )
    .argument("[argv...]", "training command after --, passed as an argv")
    .addOption(new Option("-o, --output <format>", "output format").choices(["yaml", "json"]).default("yaml"))
    .option("--show-secrets", "print Secret values instead of placeholders", false)
    .action(async (argv: string[], opts: SpecOpts & { output: string; showSecrets: boolean }) => {
      const spec = await buildSpec(opts, argv, cfg(), io);
      const rendered = renderJob(spec);
      warn(io, rendered.warnings);
      io.stdout.write(await formatObjects(renderedObjects(rendered, opts.showSecrets), opts.output));
    });

  kubeOptions(specOptions(program.command("submit")))
    .description("create the TrainJob with its ConfigMap and Secret (idempotent: the same spec again is fine)")
    .argument("[argv...]", "training command after --, passed as an argv")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .option("--no-runtime-check", "do not check that the ClusterTrainingRuntime exists")
    .action(async (argv: string[], opts: SpecOpts & { output: string }) => {
      const connected = await connect(opts);
      const spec = await buildSpec(opts, argv, cfg(), io, namespaceOf(opts, cfg(), connected));
      const result = await connected.submitter.submit(spec);
      warn(io, result.warnings);
      if (opts.output === "json") io.stdout.write(JSON.stringify(result, null, 2) + "\n");
      else
        io.stdout.write(
          `trainjob.trainer.kubeflow.org/${result.trainjob_name} ${result.created ? "created" : "unchanged"} (namespace ${result.namespace})\n`,
        );
    });

  kubeOptions(program.command("status"))
    .description("state of a TrainJob: Pending, Running, Suspended, Complete or Failed")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .option("-w, --wait", "wait until Complete or Failed; exit 0 on Complete, 1 on Failed", false)
    .option("--interval <seconds>", "poll interval with --wait", "5")
    .action(async (name: string, opts: KubeOpts & { output: string; wait: boolean; interval: string }) => {
      const connected = await connect(opts);
      const submitter = connected.submitter;
      const ns = namespaceOf(opts, cfg(), connected);
      let status = await submitter.status(ns, name);
      while (opts.wait && status.state !== "Complete" && status.state !== "Failed") {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0.1, Number(opts.interval) || 5) * 1000));
        status = await submitter.status(ns, name);
      }
      if (opts.output === "json") io.stdout.write(JSON.stringify(status, null, 2) + "\n");
      else io.stdout.write(`${status.trainjob_name}\t${status.state}\t${status.message}\n`);
      if (opts.wait && status.state === "Failed") process.exitCode = 1;
    });

  kubeOptions(program.command("logs"))
    .description("logs of one worker (node rank) of a TrainJob")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .option("--worker <index>", "worker index (0 = master)", "0")
    .option("-f, --follow", "stream the log; waits for the pod to start", false)
    .option("--tail <lines>", "only the last N lines")
    .action(async (name: string, opts: KubeOpts & { worker: string; follow: boolean; tail?: string }) => {
      if (!/^\d+$/.test(opts.worker))
        throw new AgentError("USAGE", `--worker must be a non-negative integer, got ${JSON.stringify(opts.worker)}`);
      if (opts.tail !== undefined && !/^\d+$/.test(opts.tail))
        throw new AgentError("USAGE", `--tail must be a non-negative integer, got ${JSON.stringify(opts.tail)}`);
      const connected = await connect(opts);
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once("SIGINT", stop);
      try {
        const text = await connected.submitter.logs(namespaceOf(opts, cfg(), connected), name, Number(opts.worker), {
          follow: opts.follow,
          out: io.stdout as unknown as import("node:stream").Writable,
          signal: abort.signal,
          ...(opts.tail === undefined ? {} : { tailLines: Number(opts.tail) }),
        });
        io.stdout.write(text);
      } finally {
        process.off("SIGINT", stop);
      }
    });

  kubeOptions(program.command("delete"))
    .description("delete a TrainJob (its pods, ConfigMap and Secret go with it)")
    .argument("<name>", "TrainJob name")
    .option("-n, --namespace <ns>", "namespace")
    .action(async (name: string, opts: KubeOpts) => {
      const connected = await connect(opts);
      const result = await connected.submitter.delete(namespaceOf(opts, cfg(), connected), name);
      for (const what of result.deleted) io.stdout.write(`${what} deleted\n`);
    });

  kubeOptions(program.command("serve"))
    .description(
      "serve the seed backend's HTTP API: POST /api/trainjob/create, GET .../{name}/status, .../{name}/logs, DELETE /api/trainjob/{name}",
    )
    .option("--port <port>", "port (default TRAINJOB_PORT or 8080)")
    .option("--host <host>", "address to bind (default TRAINJOB_HOST or 127.0.0.1; 0.0.0.0 in a pod)")
    .option("-n, --namespace <ns>", "namespace when a request names none")
    .option("--no-runtime-check", "do not check that the ClusterTrainingRuntime exists")
    .action(async (opts: KubeOpts & { port?: string; host?: string }) => {
      const c = cfg();
      if (opts.port !== undefined && !/^\d+$/.test(opts.port))
        throw new AgentError("USAGE", `--port must be a number, got ${JSON.stringify(opts.port)}`);
      const { createApiServer, listen } = await import("./http/server.ts");
      const { createLogger } = await import("../log/index.ts");
      // One JSON line per request on stderr (pretty on a terminal); never bodies, headers or tokens.
      const logger = await createLogger({ traceId: randomBytes(16).toString("hex"), base: { name: "trainjob" } });
      const connected = await connect(opts);
      const server = createApiServer({
        submitter: connected.submitter,
        ...(c.apiToken === undefined ? {} : { authToken: c.apiToken }),
        normalize: normalizeOptionsFrom(c, namespaceOf(opts, c, connected)),
        onRequest: (e) => logger.info({ method: e.method, path: e.path, status: e.status, ms: e.ms }, "request"),
      });
      const url = await listen(server, opts.port === undefined ? c.port : Number(opts.port), opts.host ?? c.host);
      logger.info(
        { url, auth: c.apiToken === undefined ? "none (set TRAINJOB_API_TOKEN)" : "bearer" },
        "serving the TrainJob API",
      );
      await new Promise<void>((resolve) => {
        const close = (): void => {
          server.close(() => resolve());
          server.closeAllConnections();
        };
        process.once("SIGTERM", close);
        process.once("SIGINT", close);
      });
    });
}
