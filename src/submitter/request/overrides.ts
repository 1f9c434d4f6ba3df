/** The seeds' retired override blocks and whole TrainJob documents, turned into the current request form. */
import { DNS1123_SUBDOMAIN, NODE_CONTAINER, NODE_JOB, labelKeyProblem, labelValueProblem } from "../names.ts";
import { CODE_VOLUME, type EnvVarSpec, type VolumeSpec } from "../spec.ts";
import { readEnv, type EnvSeen } from "./env.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Obj, Reader } from "./reader.ts";
import { readVolumes } from "./volumes.ts";

/**
 * The seeds' `podTemplateOverrides` (Trainer v2.1) and `podSpecOverrides` (v2.0): both were removed in v2.2.
 * Their node-container env joins trainer.env, volumes and mounts join the volume list, pod settings go to the
 * runtime patch; what has no place in v2.3 is dropped with a warning.
 */
export function readOverrides(
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
    const list = req[key] ?? (isRecord(req.spec) ? req.spec[key] : undefined);
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) {
      r.problem(key, `must be a list, got ${describe(list)}`);
      continue;
    }
    list.forEach((o, i) => {
      const f = `${key}[${i}]`;
      if (!isRecord(o)) return r.problem(f, "must be an object");
      const targets = Array.isArray(o.targetJobs) ? o.targetJobs.map((t) => (isRecord(t) ? t.name : t)) : [NODE_JOB];
      if (!targets.includes(NODE_JOB)) {
        r.warnings.push(`${f}: dropped: only the "${NODE_JOB}" job is patched (targetJobs ${JSON.stringify(targets)})`);
        return;
      }
      // v2.1 nests the pod spec under `spec`; v2.0 had the fields at the top level.
      const spec = isRecord(o.spec) ? o.spec : o;
      const mounts = new Map<string, { mountPath: string; readOnly: boolean; subPath?: string; field: string }>();
      if (Array.isArray(spec.containers)) {
        spec.containers.forEach((c, ci) => {
          if (!isRecord(c)) return;
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
              if (isRecord(m) && typeof m.name === "string" && typeof m.mountPath === "string") {
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
          if (!isRecord(v) || typeof v.name !== "string") return r.problem(vf, "must have a name");
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
      const meta = isRecord(o.metadata) ? o.metadata : {};
      if (isRecord(meta.labels)) pod.labels = { ...(pod.labels as object), ...meta.labels };
      if (isRecord(meta.annotations)) pod.annotations = { ...(pod.annotations as object), ...meta.annotations };
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
        pod.imagePullSecrets = spec.imagePullSecrets.map((s) => (isRecord(s) ? String(s.name) : String(s)));
      }
    });
  }
  for (const k of ["node_selector", "nodeSelector"]) {
    if (req[k] === undefined || req[k] === null) continue;
    if (!isRecord(req[k])) {
      r.problem(k, `must be an object of label key: value, got ${describe(req[k])}`);
      continue;
    }
    pod.nodeSelector = req[k];
  }
  if (isRecord(pod.nodeSelector)) checkLabels(r, pod.nodeSelector, "node_selector");
  if (isRecord(pod.labels)) checkLabels(r, pod.labels, "podTemplateOverrides.metadata.labels");
  if (Array.isArray(req.tolerations)) pod.tolerations = req.tolerations;
  const sa = r.string(req, ["service_account", "serviceAccountName"]);
  if (sa !== undefined) {
    if (!DNS1123_SUBDOMAIN.test(sa.value))
      r.problem(sa.field, `must be a DNS-1123 subdomain, got ${describe(sa.value)}`);
    pod.serviceAccountName = sa.value;
  }
}

/** Node selector or pod label keys and values as the API server validates them (every pod would be refused). */
function checkLabels(r: Reader, labels: Obj, field: string): void {
  for (const [key, value] of Object.entries(labels)) {
    const f = `${field}[${JSON.stringify(key)}]`;
    const keyProblem = labelKeyProblem(key);
    if (keyProblem !== undefined) r.problem(f, `key ${describe(key)} ${keyProblem}`);
    else if (typeof value !== "string") r.problem(f, `must be a string, got ${describe(value)}`);
    else {
      const valueProblem = labelValueProblem(value);
      if (valueProblem !== undefined) r.problem(f, `value ${describe(value)} ${valueProblem}`);
    }
  }
}

/**
 * A TrainJob document of the seeds (v2.0/v2.1 form: `bash -c` with hand-written `export RANK=...` or
 * `source .../tf_config.env` lines, podTemplateOverrides) as a request, so `trainjob render -f old.yaml` migrates
 * it. The env-setup lines are dropped (the agent sets RANK/WORLD_SIZE/MASTER_* and TF_CONFIG); a script that
 * then holds exactly one command becomes its argv, anything else stays `bash -c` as the user wrote it.
 */
export function fromTrainJobDocument(doc: Obj, r: Reader): Obj {
  const meta = isRecord(doc.metadata) ? doc.metadata : {};
  const spec = isRecord(doc.spec) ? doc.spec : {};
  const trainer = isRecord(spec.trainer) ? spec.trainer : {};
  const runtime =
    isRecord(spec.runtimeRef) && typeof spec.runtimeRef.name === "string" ? spec.runtimeRef.name : undefined;
  const resources = isRecord(trainer.resourcesPerNode) ? trainer.resourcesPerNode : {};
  const requests = isRecord(resources.requests) ? resources.requests : {};
  const limits = isRecord(resources.limits) ? resources.limits : {};
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
