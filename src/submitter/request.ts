/**
 * Turns a job request into a validated JobSpec. Accepts the seed backend's JSON unchanged (snake_case fields:
 * `user_id`, `num_nodes`, `cpu_request`, `env_vars`, `volumes[{name,pvc,mountPath,readOnly}]`, the `config{}`
 * form of the integration guide, and the retired `podTemplateOverrides` / `podSpecOverrides` blocks), and the
 * camelCase names of the library. Every problem is collected and reported at once, each naming its field.
 */
import { AgentError } from "../errors/index.ts";
import { hasShellSyntax, splitCommand } from "./argv.ts";
import {
  CONFIG_KEY,
  DNS1035_LABEL,
  DNS1123_LABEL,
  DNS1123_SUBDOMAIN,
  ENV_NAME,
  NODE_CONTAINER,
  NODE_JOB,
  maxTrainJobNameLength,
} from "./names.ts";
import { QUANTITY_PATTERN, parseQuantity } from "./quantity.ts";
import {
  AGENT_DIR,
  AGENT_VOLUME,
  CODE_MOUNT_PATH,
  CODE_VOLUME,
  DEFAULT_RUNTIMES,
  type AgentMode,
  type CallbackSpec,
  type EnvVarSpec,
  type Framework,
  type JobSpec,
  type PodPatchSpec,
  type StorageSpec,
  type VolumeSource,
  type VolumeSpec,
} from "./spec.ts";

/** Env names Kubeflow Trainer's torch plugin sets itself and rejects in `trainer.env` ("must not have reserved envs"). */
export const RESERVED_ENV = ["PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"];
/** Env names that look like credentials: their literal values go into the job's Secret, never into the spec. */
const SECRET_ENV = /(TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_KEY|_KEY_ID|API_KEY|PRIVATE_KEY|CREDENTIALS?)$/i;
/** ConfigMaps hold at most 1 MiB. */
const MAX_CODE_BYTES = 1024 * 1024;

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

export interface Problem {
  readonly field: string;
  readonly message: string;
}

/** The SPEC_INVALID error for a list of problems: one line per problem in the message, all in `details`. */
export function specInvalid(problems: readonly Problem[]): AgentError {
  const lines = problems.map((p) => `${p.field}: ${p.message}`);
  const message = problems.length === 1 ? lines[0]! : `invalid job spec:\n  ${lines.join("\n  ")}`;
  return new AgentError("SPEC_INVALID", message, { details: { problems, field: problems[0]?.field } });
}

type Obj = Record<string, unknown>;

class Reader {
  readonly problems: Problem[] = [];
  readonly warnings: string[] = [];

  problem(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  /** The first of several spellings present in `obj`, with the spelling used (for error messages). */
  pick(obj: Obj, names: readonly string[], prefix = ""): { field: string; value: unknown } | undefined {
    for (const name of names) {
      if (obj[name] !== undefined && obj[name] !== null) return { field: prefix + name, value: obj[name] };
    }
    return undefined;
  }

  string(obj: Obj, names: readonly string[], prefix = ""): { field: string; value: string } | undefined {
    const got = this.pick(obj, names, prefix);
    if (got === undefined) return undefined;
    if (typeof got.value === "number" && Number.isFinite(got.value))
      return { field: got.field, value: String(got.value) };
    if (typeof got.value !== "string") {
      // Never echo what was given for a credential field, whatever its type.
      const shown = /token|secret|password|key/i.test(got.field) ? "a value of another type" : describe(got.value);
      this.problem(got.field, `must be a string, got ${shown}`);
      return undefined;
    }
    if (got.value.trim() === "") return undefined;
    return { field: got.field, value: got.value.trim() };
  }

  int(obj: Obj, names: readonly string[], min: number, prefix = ""): { field: string; value: number } | undefined {
    const got = this.pick(obj, names, prefix);
    if (got === undefined) return undefined;
    const n = typeof got.value === "string" && /^\s*[+-]?\d+\s*$/.test(got.value) ? Number(got.value) : got.value;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min) {
      this.problem(got.field, `must be an integer >= ${min}, got ${describe(got.value)}`);
      return undefined;
    }
    return { field: got.field, value: n };
  }

  bool(obj: Obj, names: readonly string[], prefix = ""): boolean | undefined {
    const got = this.pick(obj, names, prefix);
    if (got === undefined) return undefined;
    if (typeof got.value === "boolean") return got.value;
    if (got.value === "true" || got.value === "false") return got.value === "true";
    this.problem(got.field, `must be true or false, got ${describe(got.value)}`);
    return undefined;
  }
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? value.slice(0, 77) + "..." : value);
  if (Array.isArray(value)) return "a list";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return String(value);
}

function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
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
  if (!isObj(input))
    throw specInvalid([{ field: "(request)", message: `must be a JSON object, got ${describe(input)}` }]);
  const req = input.kind === "TrainJob" ? fromTrainJobDocument(input, r) : input;
  const config = isObj(req.config) ? req.config : {};
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
    r.int(req, ["num_nodes", "numNodes", "nodes"], 1) ?? r.int(config, ["num_nodes", "numNodes"], 1, "config.");
  const numNodes = nodes?.value ?? 1; // like the runtimes' mlPolicy.numNodes
  const proc = r.int(req, ["proc_per_node", "procPerNode", "nproc_per_node", "numProcPerNode"], 1);

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

  // training code
  const code = readCode(r, req);

  // command
  let command: string[] = [];
  const cmd = r.pick(req, ["command", "argv", "args"]);
  if (cmd === undefined || (typeof cmd.value === "string" && cmd.value.trim() === "")) {
    if (code !== undefined) {
      const main = Object.keys(code).includes("train.py") ? "train.py" : Object.keys(code)[0]!;
      command = ["python3", `${CODE_MOUNT_PATH}/${main}`];
    } else r.problem("command", "is required when no training_code is given");
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
  const storage = readStorage(r, req.storage, defaults.storage);
  const datasetId = r.string(req, ["dataset_id", "datasetId"])?.value;
  const datasetUri = r.string(req, ["dataset_uri", "datasetUri"])?.value;
  const checkpointUri = r.string(req, ["checkpoint_uri", "checkpointUri"])?.value;
  for (const [field, uri] of [
    ["dataset_uri", datasetUri],
    ["checkpoint_uri", checkpointUri],
  ] as const) {
    if (uri !== undefined && !/^(s3|file):\/\/.+/.test(uri))
      r.problem(field, `must be an s3:// (or file://) URI, got ${describe(uri)}`);
  }
  const deadline = r.int(req, ["active_deadline_seconds", "activeDeadlineSeconds"], 1);

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
    ...(callback === undefined ? {} : { callback }),
    ...(storage === undefined ? {} : { storage }),
    ...(datasetId === undefined ? {} : { datasetId }),
    ...(datasetUri === undefined ? {} : { datasetUri }),
    ...(checkpointUri === undefined ? {} : { checkpointUri }),
    ...(deadline === undefined ? {} : { activeDeadlineSeconds: deadline.value }),
    pod,
    warnings: r.warnings,
  };
}

function readResources(r: Reader, req: Obj, config: Obj): JobSpec["resources"] {
  const quantity = (
    obj: Obj,
    names: readonly string[],
    prefix: string,
    what: string,
  ): { field: string; value: string } | undefined => {
    const got = r.string(obj, names, prefix);
    if (got === undefined) return undefined;
    const n = parseQuantity(got.value);
    if (n === undefined) {
      r.problem(
        got.field,
        `must be a Kubernetes quantity for ${what} (e.g. ${what === "CPU" ? '"2", "500m"' : '"8Gi", "512Mi"'}), got ${describe(got.value)}`,
      );
      return undefined;
    }
    if (n <= 0) {
      r.problem(got.field, `must be greater than zero, got ${describe(got.value)}`);
      return undefined;
    }
    return got;
  };
  const res = isObj(req.resources) ? req.resources : {};
  const perNodeCpu = quantity(config, ["cpu_per_node", "cpuPerNode"], "config.", "CPU");
  const perNodeMem = quantity(config, ["memory_per_node", "memoryPerNode"], "config.", "memory");
  const cpuRequest =
    quantity(req, ["cpu_request", "cpuRequest", "cpu"], "", "CPU") ??
    quantity(res, ["cpuRequest", "cpu"], "resources.", "CPU") ??
    perNodeCpu;
  const cpuLimit =
    quantity(req, ["cpu_limit", "cpuLimit"], "", "CPU") ??
    quantity(res, ["cpuLimit"], "resources.", "CPU") ??
    perNodeCpu;
  const memoryRequest =
    quantity(req, ["memory_request", "memoryRequest", "memory"], "", "memory") ??
    quantity(res, ["memoryRequest", "memory"], "resources.", "memory") ??
    perNodeMem;
  const memoryLimit =
    quantity(req, ["memory_limit", "memoryLimit"], "", "memory") ??
    quantity(res, ["memoryLimit"], "resources.", "memory") ??
    perNodeMem;
  for (const [req_, lim] of [
    [cpuRequest, cpuLimit],
    [memoryRequest, memoryLimit],
  ] as const) {
    if (req_ !== undefined && lim !== undefined && parseQuantity(req_.value)! > parseQuantity(lim.value)!) {
      r.problem(
        req_.field,
        `request ${describe(req_.value)} must not exceed the limit ${lim.field}=${describe(lim.value)}`,
      );
    }
  }
  const gpuGot =
    r.int(req, ["gpu_count", "gpuCount", "gpu", "gpus"], 0) ??
    r.int(config, ["gpu_per_node", "gpuPerNode"], 0, "config.") ??
    r.int(res, ["gpu"], 0, "resources.");
  const gpuResource = r.string(req, ["gpu_resource", "gpuResource"])?.value ?? "nvidia.com/gpu";
  if (!/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/.test(gpuResource)) {
    r.problem(
      "gpu_resource",
      `must be an extended resource name such as "nvidia.com/gpu", got ${describe(gpuResource)}`,
    );
  }
  return {
    ...(cpuRequest === undefined ? {} : { cpuRequest: cpuRequest.value }),
    ...(cpuLimit === undefined ? {} : { cpuLimit: cpuLimit.value }),
    ...(memoryRequest === undefined ? {} : { memoryRequest: memoryRequest.value }),
    ...(memoryLimit === undefined ? {} : { memoryLimit: memoryLimit.value }),
    gpu: gpuGot?.value ?? 0,
    gpuResource,
  };
}

function readCode(r: Reader, req: Obj): Readonly<Record<string, string>> | undefined {
  const got = r.pick(req, ["training_code", "trainingCode", "code"]);
  if (got === undefined) return undefined;
  let files: Record<string, string>;
  if (typeof got.value === "string") {
    if (got.value.trim() === "") return undefined;
    files = { "train.py": got.value };
  } else if (isObj(got.value) && Object.values(got.value).every((v) => typeof v === "string")) {
    files = got.value as Record<string, string>;
    for (const key of Object.keys(files)) {
      if (!CONFIG_KEY.test(key) || key.length > 253)
        r.problem(`${got.field}.${key}`, "file name must use only letters, digits, '-', '_' and '.'");
    }
    if (Object.keys(files).length === 0) return undefined;
  } else {
    r.problem(
      got.field,
      `must be the code of train.py as a string, or an object of file name to content, got ${describe(got.value)}`,
    );
    return undefined;
  }
  const bytes = Object.entries(files).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  if (bytes > MAX_CODE_BYTES) {
    r.problem(
      got.field,
      `is ${bytes} bytes; a ConfigMap holds at most 1 MiB: put larger code in the image or on a volume`,
    );
  }
  return files;
}

/** Env names already read, with the field that set them: a name set twice (in any list) is a problem. */
type EnvSeen = Map<string, string>;

function readEnv(r: Reader, raw: unknown, field: string, numNodes: number, seen: EnvSeen): EnvVarSpec[] {
  if (raw === undefined || raw === null) return [];
  const out: EnvVarSpec[] = [];
  const entries: Array<{ f: string; item: Obj }> = [];
  if (Array.isArray(raw)) {
    raw.forEach((item, i) => {
      if (!isObj(item)) r.problem(`${field}[${i}]`, `must be an object {"name", "value"}, got ${describe(item)}`);
      else entries.push({ f: `${field}[${i}]`, item });
    });
  } else if (isObj(raw)) {
    for (const [k, v] of Object.entries(raw)) entries.push({ f: `${field}.${k}`, item: { name: k, value: v } });
  } else {
    r.problem(field, `must be a list of {"name", "value"} or an object of name to value, got ${describe(raw)}`);
    return [];
  }
  for (const { f, item } of entries) {
    const nameRaw = item.name;
    if (typeof nameRaw !== "string" || !ENV_NAME.test(nameRaw)) {
      r.problem(
        `${f}.name`,
        `must be a valid environment variable name (letters, digits, "_", "-", "."; not starting with a digit), got ${describe(nameRaw)}`,
      );
      continue;
    }
    const name = nameRaw;
    const valueRaw = item.value;
    const first = seen.get(name);
    if (first !== undefined) {
      r.problem(`${f}.name`, `${name} is already set by ${first}`);
      continue;
    }
    seen.set(name, f);
    if (RESERVED_ENV.includes(name)) {
      if (name === "PET_NNODES" && String(valueRaw) === String(numNodes)) {
        r.warnings.push(
          `${f}: PET_NNODES dropped: Kubeflow Trainer sets it from numNodes and rejects TrainJobs that set it`,
        );
      } else {
        r.problem(
          `${f}.name`,
          `${name} is reserved: Kubeflow Trainer sets it and rejects a TrainJob whose trainer.env has it (use num_nodes / proc_per_node)`,
        );
      }
      continue;
    }
    const ref = item.valueFrom;
    if (isObj(ref)) {
      const keyRef = (o: unknown, what: string): { name: string; key: string } | undefined => {
        if (!isObj(o) || typeof o.name !== "string" || typeof o.key !== "string" || !DNS1123_SUBDOMAIN.test(o.name)) {
          r.problem(`${f}.valueFrom.${what}`, "must have a valid name and key");
          return undefined;
        }
        return { name: o.name, key: o.key };
      };
      if (ref.secretKeyRef !== undefined) {
        const k = keyRef(ref.secretKeyRef, "secretKeyRef");
        if (k) out.push({ name, secretKeyRef: k });
      } else if (ref.configMapKeyRef !== undefined) {
        const k = keyRef(ref.configMapKeyRef, "configMapKeyRef");
        if (k) out.push({ name, configMapKeyRef: k });
      } else if (isObj(ref.fieldRef) && typeof ref.fieldRef.fieldPath === "string") {
        out.push({ name, fieldPath: ref.fieldRef.fieldPath });
      } else r.problem(`${f}.valueFrom`, "must be a secretKeyRef, configMapKeyRef or fieldRef");
      continue;
    }
    if (
      valueRaw !== undefined &&
      valueRaw !== null &&
      typeof valueRaw !== "string" &&
      typeof valueRaw !== "number" &&
      typeof valueRaw !== "boolean"
    ) {
      r.problem(`${f}.value`, `must be a string, got ${describe(valueRaw)}`);
      continue;
    }
    out.push({ name, value: valueRaw === undefined || valueRaw === null ? "" : String(valueRaw) });
  }
  return out;
}

/** Whether a literal env value should travel in the job's Secret instead of the spec. */
export function isSecretEnvName(name: string): boolean {
  return SECRET_ENV.test(name);
}

function readVolumes(r: Reader, raw: unknown, field: string): VolumeSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    r.problem(field, `must be a list, got ${describe(raw)}`);
    return [];
  }
  const out: VolumeSpec[] = [];
  raw.forEach((item, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(item)) {
      r.problem(f, `must be an object, got ${describe(item)}`);
      return;
    }
    const name = r.string(item, ["name"], `${f}.`);
    const mountPath = r.string(item, ["mountPath", "mount_path", "path"], `${f}.`);
    if (name === undefined) r.problem(`${f}.name`, "is required");
    if (mountPath === undefined) r.problem(`${f}.mountPath`, "is required");
    const readOnly = r.bool(item, ["readOnly", "read_only"], `${f}.`) ?? false;
    const subPath = r.string(item, ["subPath", "sub_path"], `${f}.`)?.value;
    let source: VolumeSource | undefined;
    const pvc =
      r.string(item, ["pvc", "claimName", "claim_name"], `${f}.`) ??
      (isObj(item.persistentVolumeClaim)
        ? r.string(item.persistentVolumeClaim, ["claimName"], `${f}.persistentVolumeClaim.`)
        : undefined);
    const cm =
      typeof item.configMap === "string"
        ? { field: `${f}.configMap`, value: item.configMap }
        : isObj(item.configMap)
          ? r.string(item.configMap, ["name"], `${f}.configMap.`)
          : undefined;
    const secret =
      typeof item.secret === "string"
        ? { field: `${f}.secret`, value: item.secret }
        : isObj(item.secret)
          ? r.string(item.secret, ["secretName", "name"], `${f}.secret.`)
          : undefined;
    const host =
      typeof item.hostPath === "string"
        ? { field: `${f}.hostPath`, value: item.hostPath }
        : isObj(item.hostPath)
          ? r.string(item.hostPath, ["path"], `${f}.hostPath.`)
          : undefined;
    const kinds = [pvc, cm, secret, host, item.emptyDir].filter(
      (x) => x !== undefined && x !== null && x !== false,
    ).length;
    if (kinds !== 1) {
      r.problem(f, "must have exactly one source: pvc, configMap, secret, emptyDir or hostPath");
    } else if (pvc !== undefined) {
      if (!DNS1123_SUBDOMAIN.test(pvc.value))
        r.problem(pvc.field, `must be a PVC name (DNS-1123 subdomain), got ${describe(pvc.value)}`);
      source = { kind: "pvc", claimName: pvc.value };
    } else if (cm !== undefined || secret !== undefined) {
      const ref = (cm ?? secret)!;
      if (!DNS1123_SUBDOMAIN.test(ref.value))
        r.problem(ref.field, `must be a DNS-1123 subdomain, got ${describe(ref.value)}`);
      source = cm !== undefined ? { kind: "configMap", name: ref.value } : { kind: "secret", name: ref.value };
    } else if (host !== undefined) {
      if (!host.value.startsWith("/")) r.problem(host.field, `must be an absolute path, got ${describe(host.value)}`);
      source = { kind: "hostPath", path: host.value };
    } else {
      const e = isObj(item.emptyDir) ? item.emptyDir : {};
      const sizeLimit = r.string(e, ["sizeLimit"], `${f}.emptyDir.`);
      if (sizeLimit !== undefined && !QUANTITY_PATTERN.test(sizeLimit.value))
        r.problem(sizeLimit.field, `must be a quantity, got ${describe(sizeLimit.value)}`);
      source = {
        kind: "emptyDir",
        ...(e.medium === "Memory" ? { medium: "Memory" as const } : {}),
        ...(sizeLimit ? { sizeLimit: sizeLimit.value } : {}),
      };
    }
    if (name !== undefined && mountPath !== undefined && source !== undefined) {
      out.push({
        name: name.value,
        mountPath: mountPath.value,
        readOnly,
        ...(subPath === undefined ? {} : { subPath }),
        source,
      });
    }
  });
  return out;
}

function checkVolumes(r: Reader, volumes: readonly VolumeSpec[], hasCode: boolean, agent: AgentMode): void {
  const names = new Map<string, string>([["dshm", "the runtime's shared-memory volume"]]);
  const paths = new Map<string, string>([["/dev/shm", "the runtime's shared-memory volume"]]);
  if (hasCode) {
    names.set(CODE_VOLUME, "the training code volume");
    paths.set(CODE_MOUNT_PATH, "the training code");
  }
  if (agent === "init") {
    names.set(AGENT_VOLUME, "the agent volume of the runtime");
    paths.set(AGENT_DIR, "the agent volume of the runtime");
  }
  volumes.forEach((v, i) => {
    const f = `volumes[${i}]`;
    if (!DNS1123_LABEL.test(v.name) || v.name.length > 63) {
      r.problem(
        `${f}.name`,
        `must be a DNS-1123 label (lower-case letters, digits, "-"; at most 63), got ${describe(v.name)}`,
      );
    } else if (names.has(v.name)) r.problem(`${f}.name`, `${describe(v.name)} is already used by ${names.get(v.name)}`);
    names.set(v.name, `volumes[${i}]`);
    const path = v.mountPath.length > 1 ? v.mountPath.replace(/\/+$/, "") : v.mountPath;
    if (!path.startsWith("/")) r.problem(`${f}.mountPath`, `must be an absolute path, got ${describe(v.mountPath)}`);
    else if (path.split("/").includes(".."))
      r.problem(`${f}.mountPath`, `must not contain "..", got ${describe(v.mountPath)}`);
    else if (path === "/") r.problem(`${f}.mountPath`, "must not be the root directory");
    else if (paths.has(path))
      r.problem(`${f}.mountPath`, `${describe(v.mountPath)} is already mounted by ${paths.get(path)}`);
    paths.set(path, `volumes[${i}]`);
    if (v.subPath !== undefined && (v.subPath.startsWith("/") || v.subPath.split("/").includes(".."))) {
      r.problem(`${f}.subPath`, `must be a relative path without "..", got ${describe(v.subPath)}`);
    }
  });
}

/**
 * The seeds' `podTemplateOverrides` (Trainer v2.1) and `podSpecOverrides` (v2.0): both were removed in v2.2.
 * Their node-container env joins trainer.env, volumes and mounts join the volume list, pod settings go to the
 * runtime patch; what has no place in v2.3 is dropped with a warning.
 */
function readOverrides(
  r: Reader,
  req: Obj,
  env: EnvVarSpec[],
  volumes: VolumeSpec[],
  pod: Record<string, unknown>,
  numNodes: number,
  hasCode: boolean,
  envSeen: EnvSeen,
): void {
  for (const key of ["podTemplateOverrides", "podSpecOverrides", "pod_template_overrides"]) {
    const list = req[key] ?? (isObj(req.spec) ? req.spec[key] : undefined);
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) {
      r.problem(key, `must be a list, got ${describe(list)}`);
      continue;
    }
    list.forEach((o, i) => {
      const f = `${key}[${i}]`;
      if (!isObj(o)) return r.problem(f, "must be an object");
      const targets = Array.isArray(o.targetJobs) ? o.targetJobs.map((t) => (isObj(t) ? t.name : t)) : [NODE_JOB];
      if (!targets.includes(NODE_JOB)) {
        r.warnings.push(`${f}: dropped: only the "${NODE_JOB}" job is patched (targetJobs ${JSON.stringify(targets)})`);
        return;
      }
      // v2.1 nests the pod spec under `spec`; v2.0 had the fields at the top level.
      const spec = isObj(o.spec) ? o.spec : o;
      const mounts = new Map<string, { mountPath: string; readOnly: boolean; subPath?: string; field: string }>();
      if (Array.isArray(spec.containers)) {
        spec.containers.forEach((c, ci) => {
          if (!isObj(c)) return;
          const cf = `${f}.spec.containers[${ci}]`;
          if (c.name !== NODE_CONTAINER) {
            r.warnings.push(
              `${cf}: dropped: container ${describe(c.name)} is not the trainer's "${NODE_CONTAINER}" container`,
            );
            return;
          }
          env.push(...readEnv(r, c.env, `${cf}.env`, numNodes, envSeen));
          if (Array.isArray(c.volumeMounts)) {
            c.volumeMounts.forEach((m, mi) => {
              if (isObj(m) && typeof m.name === "string" && typeof m.mountPath === "string") {
                mounts.set(m.name, {
                  mountPath: m.mountPath,
                  readOnly: m.readOnly === true,
                  ...(typeof m.subPath === "string" ? { subPath: m.subPath } : {}),
                  field: `${cf}.volumeMounts[${mi}]`,
                });
              } else r.problem(`${cf}.volumeMounts[${mi}]`, "must have a name and a mountPath");
            });
          }
          if (c.securityContext !== undefined) pod.containerSecurityContext = c.securityContext;
        });
      }
      if (Array.isArray(spec.volumes)) {
        spec.volumes.forEach((v, vi) => {
          const vf = `${f}.spec.volumes[${vi}]`;
          if (!isObj(v) || typeof v.name !== "string") return r.problem(vf, "must have a name");
          if (v.name === CODE_VOLUME && hasCode) {
            r.warnings.push(`${vf}: "${CODE_VOLUME}" is made by the submitter from training_code; dropped`);
            mounts.delete(v.name);
            return;
          }
          const m = mounts.get(v.name);
          if (m === undefined) {
            r.warnings.push(`${vf}: volume ${describe(v.name)} is mounted by no container of the node; dropped`);
            return;
          }
          mounts.delete(v.name);
          volumes.push(
            ...readVolumes(
              r,
              [{ ...v, mountPath: m.mountPath, readOnly: m.readOnly, ...(m.subPath ? { subPath: m.subPath } : {}) }],
              vf,
            ),
          );
        });
      }
      for (const [name, m] of mounts) {
        if (name !== CODE_VOLUME || !hasCode)
          r.problem(m.field, `mounts volume ${describe(name)}, which the override does not define`);
      }
      if (Array.isArray(spec.initContainers) && spec.initContainers.length > 0) {
        r.warnings.push(
          `${f}.spec.initContainers: dropped: the agent builds TF_CONFIG and the distributed env itself; no tf-config-generator is needed`,
        );
      }
      const meta = isObj(o.metadata) ? o.metadata : {};
      if (isObj(meta.labels)) pod.labels = { ...(pod.labels as object), ...meta.labels };
      if (isObj(meta.annotations)) pod.annotations = { ...(pod.annotations as object), ...meta.annotations };
      for (const k of [
        "nodeSelector",
        "tolerations",
        "affinity",
        "serviceAccountName",
        "securityContext",
        "terminationGracePeriodSeconds",
      ]) {
        if (spec[k] !== undefined) pod[k] = spec[k];
      }
      if (Array.isArray(spec.imagePullSecrets)) {
        pod.imagePullSecrets = spec.imagePullSecrets.map((s) => (isObj(s) ? String(s.name) : String(s)));
      }
    });
  }
  for (const k of ["node_selector", "nodeSelector"]) if (isObj(req[k])) pod.nodeSelector = req[k];
  if (Array.isArray(req.tolerations)) pod.tolerations = req.tolerations;
  const sa = r.string(req, ["service_account", "serviceAccountName"]);
  if (sa !== undefined) {
    if (!DNS1123_SUBDOMAIN.test(sa.value))
      r.problem(sa.field, `must be a DNS-1123 subdomain, got ${describe(sa.value)}`);
    pod.serviceAccountName = sa.value;
  }
}

function readCallback(
  r: Reader,
  req: Obj,
  name: string | undefined,
  fallback: CallbackSpec | undefined,
): CallbackSpec | undefined {
  const cb = isObj(req.callback) ? req.callback : {};
  const baseUrl =
    r.string(cb, ["base_url", "baseUrl"], "callback.") ?? r.string(req, ["backend_base_url", "backendBaseUrl"]);
  const jobId = r.string(cb, ["job_id", "jobId"], "callback.") ?? r.string(req, ["job_id", "jobId"]);
  const token = r.string(cb, ["token"], "callback.");
  const url = baseUrl?.value ?? fallback?.baseUrl;
  if (url === undefined) return undefined;
  if (!/^https?:\/\/[^\s]+$/.test(url))
    r.problem(baseUrl?.field ?? "callback.base_url", `must be an http(s) URL, got ${describe(url)}`);
  const id = jobId?.value ?? name ?? "";
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id))
    r.problem(jobId?.field ?? "callback.job_id", `must be 1-128 letters, digits, ".", "_" or "-", got ${describe(id)}`);
  const tok = token?.value ?? (jobId === undefined ? undefined : fallback?.token);
  return { baseUrl: url, jobId: id, ...(tok === undefined ? {} : { token: tok }) };
}

function readStorage(r: Reader, raw: unknown, fallback: StorageSpec | undefined): StorageSpec | undefined {
  if (raw === undefined || raw === null) return fallback;
  if (!isObj(raw)) {
    r.problem("storage", `must be an object, got ${describe(raw)}`);
    return undefined;
  }
  const f = "storage.";
  const type = r.string(raw, ["type"], f)?.value;
  if (type !== undefined && !["minio", "r2", "s3", "file"].includes(type))
    r.problem("storage.type", `must be minio, r2, s3 or file, got ${describe(type)}`);
  const endpoint = r.string(raw, ["endpoint"], f)?.value;
  if (endpoint !== undefined && !/^https?:\/\/\S+$/.test(endpoint))
    r.problem("storage.endpoint", `must be an http(s) URL, got ${describe(endpoint)}`);
  const bucket = r.string(raw, ["bucket"], f)?.value;
  const region = r.string(raw, ["region"], f)?.value;
  const secretName = r.string(raw, ["credentials_secret", "credentialsSecret", "secret"], f);
  const accessKeyId = r.string(raw, ["access_key_id", "accessKeyId"], f)?.value;
  const secretAccessKey = r.string(raw, ["secret_access_key", "secretAccessKey"], f)?.value;
  if (secretName !== undefined && (accessKeyId !== undefined || secretAccessKey !== undefined)) {
    r.problem(secretName.field, "give either an existing Secret or literal keys, not both");
  }
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined))
    r.problem("storage.secret_access_key", "access_key_id and secret_access_key go together");
  if (secretName !== undefined && !DNS1123_SUBDOMAIN.test(secretName.value))
    r.problem(secretName.field, `must be a Secret name, got ${describe(secretName.value)}`);
  return {
    ...(type === undefined ? {} : { type: type as StorageSpec["type"] & string }),
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(bucket === undefined ? {} : { bucket }),
    ...(region === undefined ? {} : { region }),
    ...(secretName === undefined
      ? {}
      : {
          credentialsSecret: {
            name: secretName.value,
            accessKeyIdKey: r.string(raw, ["access_key_id_key", "accessKeyIdKey"], f)?.value ?? "access-key-id",
            secretAccessKeyKey:
              r.string(raw, ["secret_access_key_key", "secretAccessKeyKey"], f)?.value ?? "secret-access-key",
          },
        }),
    ...(accessKeyId === undefined ? {} : { accessKeyId }),
    ...(secretAccessKey === undefined ? {} : { secretAccessKey }),
  };
}

/**
 * A TrainJob document of the seeds (v2.0/v2.1 form: `bash -c` with hand-written `export RANK=...` or
 * `source .../tf_config.env` lines, podTemplateOverrides) as a request, so `trainjob render -f old.yaml` migrates
 * it. The env-setup lines are dropped (the agent sets RANK/WORLD_SIZE/MASTER_* and TF_CONFIG); a script that
 * then holds exactly one command becomes its argv, anything else stays `bash -c` as the user wrote it.
 */
function fromTrainJobDocument(doc: Obj, r: Reader): Obj {
  const meta = isObj(doc.metadata) ? doc.metadata : {};
  const spec = isObj(doc.spec) ? doc.spec : {};
  const trainer = isObj(spec.trainer) ? spec.trainer : {};
  const runtime = isObj(spec.runtimeRef) && typeof spec.runtimeRef.name === "string" ? spec.runtimeRef.name : undefined;
  const resources = isObj(trainer.resourcesPerNode) ? trainer.resourcesPerNode : {};
  const requests = isObj(resources.requests) ? resources.requests : {};
  const limits = isObj(resources.limits) ? resources.limits : {};
  const gpu = limits["nvidia.com/gpu"] ?? requests["nvidia.com/gpu"];
  const req: Obj = {
    name: meta.name,
    namespace: meta.namespace,
    framework: runtime !== undefined && /tensorflow|(^|-)tf(-|$)/.test(runtime) ? "tensorflow" : "pytorch",
    ...(runtime === undefined ? {} : { runtime }),
    image: trainer.image,
    num_nodes: trainer.numNodes,
    cpu_request: requests.cpu,
    cpu_limit: limits.cpu,
    memory_request: requests.memory,
    memory_limit: limits.memory,
    ...(gpu === undefined ? {} : { gpu_count: gpu }),
    ...(trainer.numProcPerNode === undefined || typeof trainer.numProcPerNode === "string"
      ? {}
      : { proc_per_node: trainer.numProcPerNode }),
    env_vars: trainer.env,
    podTemplateOverrides: spec.podTemplateOverrides,
    podSpecOverrides: spec.podSpecOverrides,
  };
  const argv = [
    ...(Array.isArray(trainer.command) ? trainer.command : []),
    ...(Array.isArray(trainer.args) ? trainer.args : []),
  ].map(String);
  if (argv.length >= 3 && /^(\/bin\/|\/usr\/bin\/)?(ba)?sh$/.test(argv[0]!) && argv[1] === "-c") {
    const kept = argv[2]!
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"))
      .filter(
        (line) =>
          !/^(export\s+(RANK|LOCAL_RANK|WORLD_SIZE|MASTER_ADDR|MASTER_PORT|TF_CONFIG)=|source\s|\.\s|echo\s)/.test(
            line,
          ),
      );
    if (kept.length === 1 && argv.length === 3) {
      req.command = kept[0];
      r.warnings.push(
        "command: the bash -c env-setup lines were dropped; trainer-agent sets RANK, WORLD_SIZE, MASTER_* and TF_CONFIG",
      );
    } else {
      req.command = argv;
      r.warnings.push(
        "command: kept as bash -c as written; trainer-agent already sets RANK, WORLD_SIZE, MASTER_* and TF_CONFIG",
      );
    }
  } else if (argv.length > 0) req.command = argv;
  for (const key of Object.keys(req)) if (req[key] === undefined) delete req[key];
  return req;
}
