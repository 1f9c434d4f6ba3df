/**
 * The spec flags shared by `render` and `submit`, and their translation into a request: a file (the seed API's
 * body, JSON or YAML) with flags on top, validated by normalizeJobRequest like any other request.
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import type { Command } from "commander";
import { Option } from "commander";
import { AgentError, isAgentError } from "../../errors/index.ts";
import { normalizeOptionsFrom, type SubmitterConfig } from "../../submitter/config.ts";
import { normalizeJobRequest, specInvalid, type Problem } from "../../submitter/request/index.ts";
import type { JobSpec } from "../../submitter/spec.ts";
import type { Submitter } from "../../submitter/submitter.ts";

export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin?: NodeJS.ReadableStream;
  readonly now?: () => Date;
  /** Replaces the Kubernetes-backed submitter (tests). */
  readonly submitter?: (opts: KubeOpts, config: SubmitterConfig) => Promise<Connected>;
}

export interface KubeOpts {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  runtimeCheck?: boolean;
}

export interface SpecOpts extends KubeOpts {
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
  nodeSelector: string[];
  code: string[];
  command?: string;
  runtime?: string;
  agent?: string;
  backendUrl?: string;
  jobId?: string;
  datasetId?: string;
  datasetUrl?: string;
  checkpointUri?: string;
  checkpointStore?: string;
  storageSecret?: string;
  s3Endpoint?: string;
  s3Bucket?: string;
  predict?: string;
  gitRepo?: string;
  gitRevision?: string;
  gitSubdir?: string;
  gitSecret?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function specOptions(cmd: Command): Command {
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
    .option("--node-selector <KEY=VALUE>", "schedule the pods on nodes with this label (repeatable)", collect, [])
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
    .option(
      "--dataset-url <url>",
      "the dataset as a presigned https GET URL (DATASET_URL, passed through the job's Secret), instead of --dataset-id",
    )
    .option("--checkpoint-uri <uri>", "CHECKPOINT_URI for the agent (s3://bucket/prefix/)")
    .addOption(
      new Option(
        "--checkpoint-store <store>",
        "bucket (the storage keys) or backend (URLs the backend presigns: with --dataset-url, no storage keys in the pod)",
      ).choices(["bucket", "backend"]),
    )
    .option("--storage-secret <name>", "existing Secret with keys access-key-id and secret-access-key for S3")
    .option("--s3-endpoint <url>", "S3 endpoint for the agent")
    .option("--s3-bucket <bucket>", "S3 bucket for the agent")
    .option(
      "--predict <JOB_ID|URI>",
      "a predict job over this model: a job id (its latest checkpoint, MODEL_JOB_ID) or s3://bucket/key (MODEL_URI); " +
        "runs predict.py of --code when no command is given",
    )
    .option("--git-repo <url>", "training code from this git repository, fetched by the agent before the command")
    .option("--git-revision <rev>", "branch, tag or commit of --git-repo (default: its default branch)")
    .option("--git-subdir <dir>", "folder of the repository the command runs in")
    .option("--git-secret <name>", "Secret with the git credentials: username (optional), password or token");
}

export function kubeOptions(cmd: Command): Command {
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

/** Request fields the flags set, with their flag: a problem in one of them names the flag the user typed. */
const FLAG_OF: ReadonlyArray<readonly [keyof SpecOpts, string, string]> = [
  ["name", "name", "--name"],
  ["userId", "user_id", "--user-id"],
  ["namespace", "namespace", "--namespace"],
  ["framework", "framework", "--framework"],
  ["image", "image", "--image"],
  ["nodes", "num_nodes", "--nodes"],
  ["procPerNode", "proc_per_node", "--proc-per-node"],
  ["cpu", "cpu_request", "--cpu"],
  ["cpuLimit", "cpu_limit", "--cpu-limit"],
  ["memory", "memory_request", "--memory"],
  ["memoryLimit", "memory_limit", "--memory-limit"],
  ["gpu", "gpu_count", "--gpu"],
  ["runtime", "runtime", "--runtime"],
  ["agent", "agent", "--agent"],
  ["datasetId", "dataset_id", "--dataset-id"],
  ["datasetUrl", "dataset_url", "--dataset-url"],
  ["checkpointUri", "checkpoint_uri", "--checkpoint-uri"],
  ["checkpointStore", "checkpoint_store", "--checkpoint-store"],
  ["nodeSelector", "node_selector", "--node-selector"],
  ["predict", "predict", "--predict"],
  ["gitRepo", "git.url", "--git-repo"],
  ["gitRevision", "git.revision", "--git-revision"],
  ["gitSubdir", "git.subdir", "--git-subdir"],
  ["gitSecret", "git.credentials_secret", "--git-secret"],
];

function withFlagNames(error: unknown, opts: SpecOpts): unknown {
  if (!isAgentError(error, "SPEC_INVALID") || !Array.isArray(error.details?.problems)) return error;
  const problems = (error.details.problems as Problem[]).map((p) => {
    for (const [opt, field, flag] of FLAG_OF) {
      const given = opts[opt];
      if (given === undefined || (Array.isArray(given) && given.length === 0)) continue;
      if (p.field === field || p.field.startsWith(`${field}[`) || p.field.startsWith(`${field}.`))
        return { field: flag + p.field.slice(field.length), message: p.message };
    }
    return p;
  });
  return specInvalid(problems);
}

export async function buildSpec(
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
  set("dataset_url", opts.datasetUrl);
  set("checkpoint_uri", opts.checkpointUri);
  set("checkpoint_store", opts.checkpointStore);
  set("predict", opts.predict);
  if (opts.nodeSelector.length > 0) {
    const selector: Record<string, string> = { ...((req.node_selector as object | undefined) ?? {}) };
    for (const item of opts.nodeSelector) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new AgentError("USAGE", `--node-selector ${JSON.stringify(item)}: expected KEY=VALUE`);
      selector[item.slice(0, eq)] = item.slice(eq + 1);
    }
    req.node_selector = selector;
  }
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
  addGitFlags(req, opts);
  try {
    return normalizeJobRequest(req, {
      ...normalizeOptionsFrom(config, namespace),
      ...(io.now === undefined ? {} : { now: io.now }),
    });
  } catch (error) {
    throw withFlagNames(error, opts);
  }
}

/** --git-*: on top of the file's `git` block (a string URL there becomes its url). */
function addGitFlags(req: Record<string, unknown>, opts: SpecOpts): void {
  const flags = {
    url: opts.gitRepo,
    revision: opts.gitRevision,
    subdir: opts.gitSubdir,
    credentials_secret: opts.gitSecret,
  };
  if (Object.values(flags).every((v) => v === undefined)) return;
  const base = typeof req.git === "string" ? { url: req.git } : ((req.git as object | undefined) ?? {});
  req.git = { ...base, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) };
}

/** A submitter and the kubeconfig context's namespace (the default, as for kubectl). */
export interface Connected {
  readonly submitter: Submitter;
  readonly currentNamespace: string;
}
