/** User env vars: names, reserved PET_* names, references, duplicates. */
import { DNS1123_SUBDOMAIN, ENV_NAME } from "../names.ts";
import type { EnvVarSpec } from "../spec.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Obj, Reader } from "./reader.ts";

/** Env names Kubeflow Trainer's torch plugin sets itself and rejects in `trainer.env` ("must not have reserved envs"). */
export const RESERVED_ENV = ["PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"];
/** Env names already read, with the field that set them: a name set twice (in any list) is a problem. */
export type EnvSeen = Map<string, string>;

export function readEnv(r: Reader, raw: unknown, field: string, numNodes: number, seen: EnvSeen): EnvVarSpec[] {
  if (raw === undefined || raw === null) return [];
  const out: EnvVarSpec[] = [];
  const entries: Array<{ f: string; item: Obj }> = [];
  if (Array.isArray(raw)) {
    raw.forEach((item, i) => {
      if (!isRecord(item)) r.problem(`${field}[${i}]`, `must be an object {"name", "value"}, got ${describe(item)}`);
      else entries.push({ f: `${field}[${i}]`, item });
    });
  } else if (isRecord(raw)) {
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
    if (isRecord(ref)) {
      const keyRef = (o: unknown, what: string): { name: string; key: string } | undefined => {
        if (
          !isRecord(o) ||
          typeof o.name !== "string" ||
          typeof o.key !== "string" ||
          !DNS1123_SUBDOMAIN.test(o.name)
        ) {
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
      } else if (isRecord(ref.fieldRef) && typeof ref.fieldRef.fieldPath === "string") {
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
