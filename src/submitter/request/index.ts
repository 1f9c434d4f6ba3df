/**
 * Turns a job request into a validated JobSpec. Accepts the seed backend's JSON unchanged (snake_case fields:
 * `user_id`, `num_nodes`, `cpu_request`, `env_vars`, `volumes[{name,pvc,mountPath,readOnly}]`, the `config{}`
 * form of the integration guide, and the retired `podTemplateOverrides` / `podSpecOverrides` blocks), and the
 * camelCase names of the library. Every problem is collected and reported at once, each naming its field.
 */
import { jsonShapeProblem } from "../../http/json-shape.ts";
import { hasShellSyntax, splitCommand } from "../argv.ts";
import {
  DNS1035_LABEL,
  DNS1123_LABEL,
  DNS1123_SUBDOMAIN,
  INT32_MAX,
  LABEL_VALUE,
  labelValueProblem,
  maxTrainJobNameLength,
} from "../names.ts";
import { defaultScript, readCode } from "./code.ts";
import { readPredict } from "./predict.ts";
import { readCallback, readKeyless, readStorage } from "./connections.ts";
import { readEnv, type EnvSeen } from "./env.ts";
import { readGit } from "./git.ts";
import { fromTrainJobDocument, readOverrides } from "./overrides.ts";
import { describe, isRecord } from "../../internal/values.ts";
import { Reader, specInvalid } from "./reader.ts";
import { readResources } from "./resources.ts";
import { checkVolumes, readVolumes } from "./volumes.ts";
import {
  CODE_MOUNT_PATH,
  DEFAULT_RUNTIMES,
  type AgentMode,
  type Framework,
  type JobSpec,
  type PodPatchSpec,
} from "../spec.ts";

export { specInvalid, type Problem } from "./reader.ts";

/** Deepest nesting a job request may have: a pod affinity inside podTemplateOverrides needs about 15. */
export const MAX_REQUEST_DEPTH = 64;
export { RESERVED_ENV } from "./env.ts";

export interface NormalizeOptions {
  /** Namespace when the request names none. */
  readonly defaultNamespace?: string;
  /** Clock for generated names (`<user_id>-job-<YYYYMMDDHHmmss>`). */
  readonly now?: () => Date;
  /** Defaults applied when the request is silent (from the server's or CLI's configuration). */
  readonly defaults?: Partial<Pick<JobSpec, "callback" | "storage" | "agent" | "image">> & {
    readonly runtimes?: Partial<Record<Framework, string>>;
  };
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** `YYYYMMDDHHmmss` in UTC, the suffix of the seed's generated names (`user123-job-20251105130000`). */
export function timestampSuffix(date: Date): string {
  return (
    `${date.getUTCFullYear()}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}` +
    `${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}`
  );
}

/** Validates a request (seed JSON or camelCase) into a JobSpec; throws SPEC_INVALID listing every problem. */
export function normalizeJobRequest(input: unknown, options: NormalizeOptions = {}): JobSpec {
  const r = new Reader();
  if (!isRecord(input))
    throw specInvalid([{ field: "(request)", message: `must be a JSON object, got ${describe(input)}` }]);
  // Before anything reads it: rendering and hashing recurse through what the request gives (affinity, labels...).
  const shape = jsonShapeProblem(input, MAX_REQUEST_DEPTH);
  if (shape !== undefined) throw specInvalid([{ field: shape.field, message: shape.message }]);
  // A TrainJob document with request fields beside it (the CLI's flags on `submit -f tj.yaml`): those win.
  const req =
    input.kind === "TrainJob"
      ? {
          ...fromTrainJobDocument(input, r),
          ...Object.fromEntries(
            Object.entries(input).filter(([k]) => !["apiVersion", "kind", "metadata", "spec", "status"].includes(k)),
          ),
        }
      : input;
  const config = isRecord(req.config) ? req.config : {};
  const defaults = options.defaults ?? {};

  // framework
  let framework: Framework = "pytorch";
  const fw = r.string(req, ["framework"]);
  if (fw === undefined) {
    if (req.framework === undefined) r.problem("framework", 'is required: "pytorch" or "tensorflow"');
  } else {
    const lower = fw.value.toLowerCase();
    if (lower === "pytorch" || lower === "torch") framework = "pytorch";
    else if (lower === "tensorflow" || lower === "tf") framework = "tensorflow";
    else r.problem(fw.field, `must be "pytorch" or "tensorflow", got ${describe(fw.value)}`);
  }

  // nodes and processes
  const nodes =
    r.int(req, ["num_nodes", "numNodes", "nodes"], 1, "", INT32_MAX) ??
    r.int(config, ["num_nodes", "numNodes"], 1, "config.", INT32_MAX);
  const numNodes = nodes?.value ?? 1; // like the runtimes' mlPolicy.numNodes
  const proc = r.int(req, ["proc_per_node", "procPerNode", "nproc_per_node", "numProcPerNode"], 1, "", INT32_MAX);

  // resources
  const resources = readResources(r, req, config);
  const procPerNode = framework === "tensorflow" ? 1 : (proc?.value ?? Math.max(1, resources.gpu));
  if (framework === "tensorflow" && proc !== undefined && proc.value !== 1) {
    r.problem(proc.field, "must be 1 for tensorflow (one TensorFlow worker per pod)");
  }

  // names
  const namespace = r.string(req, ["namespace"])?.value ?? options.defaultNamespace ?? "default";
  if (!DNS1123_LABEL.test(namespace) || namespace.length > 63) {
    r.problem(
      "namespace",
      `must be a DNS-1123 label (lower-case letters, digits, "-"; at most 63), got ${describe(namespace)}`,
    );
  }
  const userId = r.string(req, ["user_id", "userId"]);
  // It becomes the trainer.astrago.io/user-id label of every object: refused rather than dropped or altered.
  if (userId !== undefined && !LABEL_VALUE.test(userId.value)) {
    r.problem(
      userId.field,
      `must be a Kubernetes label value (1-63 letters, digits, "-", "_", "."; starting and ending with a letter or digit), got ${describe(userId.value)}`,
    );
  }
  const explicitName = r.string(req, ["name", "trainjob_name", "trainjobName"]);
  let name = explicitName?.value;
  let nameField = explicitName?.field ?? "name";
  if (name === undefined) {
    if (userId === undefined)
      r.problem("name", "is required (or user_id, from which the seed's <user_id>-job-<timestamp> is made)");
    else {
      name = `${userId.value}-job-${timestampSuffix((options.now ?? (() => new Date()))())}`;
      nameField = userId.field;
    }
  }
  if (name !== undefined) {
    const max = maxTrainJobNameLength(numNodes);
    if (!DNS1035_LABEL.test(name)) {
      r.problem(
        nameField,
        `TrainJob name ${describe(name)} must be a DNS-1035 label: lower-case letters, digits and "-", starting with a letter, ending with a letter or digit`,
      );
    } else if (name.length > max) {
      r.problem(
        nameField,
        `TrainJob name ${describe(name)} is ${name.length} characters; with ${numNodes} node(s) at most ${max} keep every pod name "<name>-node-0-<index>-<suffix>" within 63`,
      );
    }
  }

  // image, runtime, agent
  const image = r.string(req, ["image"])?.value ?? defaults.image;
  if (image !== undefined && /\s/.test(image))
    r.problem("image", `must not contain whitespace, got ${describe(image)}`);
  const runtime =
    r.string(req, ["runtime", "runtime_name", "runtimeRef"])?.value ??
    defaults.runtimes?.[framework] ??
    DEFAULT_RUNTIMES[framework];
  if (!DNS1123_SUBDOMAIN.test(runtime)) r.problem("runtime", `must be a DNS-1123 subdomain, got ${describe(runtime)}`);
  const agentIn = r.string(req, ["agent", "agent_mode", "agentMode"]);
  let agent: AgentMode =
    defaults.agent ??
    (image !== undefined && /(^|\/)astrago\/trainer-(pytorch|tensorflow)(:|@|$)/.test(image) ? "baked" : "init");
  if (agentIn !== undefined) {
    if (agentIn.value === "init" || agentIn.value === "baked") agent = agentIn.value;
    else
      r.problem(
        agentIn.field,
        `must be "init" (agent copied by the runtime's init container) or "baked" (image has trainer-agent), got ${describe(agentIn.value)}`,
      );
  }

  // training code: files in a ConfigMap, or a git repository the agent fetches
  const code = readCode(r, req);
  const predict = readPredict(r, req);
  const git = readGit(r, req.git);
  if (code !== undefined && git !== undefined)
    r.problem("git", "give the training code either as training_code or as a git repository, not both");

  // command
  let command: string[] = [];
  const cmd = r.pick(req, ["command", "argv", "args"]);
  if (cmd === undefined || (typeof cmd.value === "string" && cmd.value.trim() === "")) {
    if (code !== undefined) {
      const main = defaultScript(Object.keys(code), predict !== undefined);
      if (predict !== undefined && main !== "predict.py")
        r.warnings.push(`predict: the code has no predict.py; the predict job runs ${main}`);
      command = ["python3", `${CODE_MOUNT_PATH}/${main}`];
    } else if (git !== undefined) {
      command = ["python3", predict === undefined ? "train.py" : "predict.py"]; // run in the checkout (its subdir)
    } else r.problem("command", "is required when no training_code or git repository is given");
  } else if (typeof cmd.value === "string") {
    try {
      command = splitCommand(cmd.value, cmd.field);
      if (hasShellSyntax(cmd.value)) {
        r.warnings.push(
          `${cmd.field}: shell syntax (;, &&, |, >, $VAR, $(...), backticks) is passed to the program literally, not run by a shell; put shell logic in a script`,
        );
      }
    } catch (error) {
      r.problem(cmd.field, (error as Error).message.replace(`${cmd.field}: `, ""));
    }
  } else if (Array.isArray(cmd.value) && cmd.value.every((a) => typeof a === "string")) {
    command = [...(cmd.value as string[])];
    if (command.length === 0) r.problem(cmd.field, "must not be an empty list");
  } else
    r.problem(
      cmd.field,
      `must be a string (split with shell quoting rules) or a list of strings, got ${describe(cmd.value)}`,
    );
  if (command.length > 0 && command[0]!.trim() === "")
    r.problem(cmd?.field ?? "command", "program name must not be empty");

  // env, volumes, seed overrides
  const pod: { -readonly [K in keyof PodPatchSpec]: PodPatchSpec[K] } = {};
  const envSeen: EnvSeen = new Map();
  const env = readEnv(
    r,
    req.env_vars ?? req.env ?? req.envVars,
    req.env_vars !== undefined ? "env_vars" : req.env !== undefined ? "env" : "envVars",
    numNodes,
    envSeen,
  );
  const volumes = readVolumes(r, req.volumes, "volumes");
  readOverrides(r, req, env, volumes, pod, numNodes, code !== undefined, envSeen);
  checkVolumes(r, volumes, code !== undefined, agent);

  // callback, storage, dataset
  const callback = readCallback(r, req, name, defaults.callback);
  let storage = readStorage(r, req.storage, defaults.storage);
  const datasetId = r.string(req, ["dataset_id", "datasetId"]);
  const datasetUri = r.string(req, ["dataset_uri", "datasetUri"]);
  const checkpointUri = r.string(req, ["checkpoint_uri", "checkpointUri"]);
  for (const got of [datasetUri, checkpointUri]) {
    if (got !== undefined && !/^(s3|file):\/\/.+/.test(got.value))
      r.problem(got.field, `must be an s3:// (or file://) URI, got ${describe(got.value)}`);
  }
  const { datasetUrl, checkpointStore } = readKeyless(r, req);
  const bucketDataset = datasetUri ?? datasetId;
  if (datasetUrl !== undefined && bucketDataset !== undefined)
    r.problem(
      datasetUrl.field,
      `give the dataset either as ${datasetUrl.field} or as ${bucketDataset.field}, not both`,
    );
  if (checkpointStore?.value === "backend") {
    if (checkpointUri !== undefined)
      r.problem(
        checkpointUri.field,
        `does not apply with ${checkpointStore.field} "backend": the backend stores the job's checkpoints under checkpoints/job-{JOB_ID}/`,
      );
    if (callback === undefined)
      r.problem(
        checkpointStore.field,
        '"backend" needs the callback API (callback.base_url or BACKEND_BASE_URL): the backend presigns the checkpoint URLs',
      );
    // Nothing in the pod reads the bucket any more: no storage settings and, above all, no keys are rendered.
    if (bucketDataset === undefined && predict === undefined) {
      if (req.storage !== undefined && req.storage !== null)
        r.warnings.push(
          `storage: not rendered: with ${checkpointStore.field} "backend" and no dataset_id or dataset_uri nothing in the pod reads the bucket`,
        );
      storage = undefined;
    }
  }
  const deadline = r.int(req, ["active_deadline_seconds", "activeDeadlineSeconds"], 1);
  const trace = r.string(req, ["trace_id", "traceId"]);
  // A label value: it goes on the pods as trainer.astrago.io/trace-id.
  if (trace !== undefined && labelValueProblem(trace.value) !== undefined)
    r.problem(trace.field, `${labelValueProblem(trace.value)!} (it becomes a pod label), got ${describe(trace.value)}`);

  if (r.problems.length > 0) throw specInvalid(r.problems);
  return {
    name: name!,
    namespace,
    ...(userId === undefined ? {} : { userId: userId.value }),
    framework,
    runtime,
    agent,
    ...(image === undefined ? {} : { image }),
    numNodes,
    procPerNode,
    resources,
    command,
    env,
    volumes,
    ...(code === undefined ? {} : { code }),
    ...(git === undefined ? {} : { git }),
    ...(callback === undefined ? {} : { callback }),
    ...(storage === undefined ? {} : { storage }),
    ...(datasetId === undefined ? {} : { datasetId: datasetId.value }),
    ...(datasetUri === undefined ? {} : { datasetUri: datasetUri.value }),
    ...(datasetUrl === undefined ? {} : { datasetUrl: datasetUrl.value }),
    ...(checkpointUri === undefined ? {} : { checkpointUri: checkpointUri.value }),
    ...(checkpointStore === undefined ? {} : { checkpointStore: checkpointStore.value }),
    ...(deadline === undefined ? {} : { activeDeadlineSeconds: deadline.value }),
    ...(predict === undefined ? {} : { predict }),
    ...(trace === undefined ? {} : { traceId: trace.value }),
    pod,
    warnings: r.warnings,
  };
}
