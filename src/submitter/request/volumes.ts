/** Volumes: one source each, DNS names, absolute unique mount paths clear of the runtime's own. */
import { DNS1123_LABEL, DNS1123_SUBDOMAIN } from "../names.ts";
import { QUANTITY_PATTERN } from "../quantity.ts";
import {
  AGENT_DIR,
  AGENT_VOLUME,
  CODE_MOUNT_PATH,
  CODE_VOLUME,
  type AgentMode,
  type VolumeSource,
  type VolumeSpec,
} from "../spec.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Reader } from "./reader.ts";

export function readVolumes(r: Reader, raw: unknown, field: string): VolumeSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    r.problem(field, `must be a list, got ${describe(raw)}`);
    return [];
  }
  const out: VolumeSpec[] = [];
  raw.forEach((item, i) => {
    const f = `${field}[${i}]`;
    if (!isRecord(item)) {
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
      (isRecord(item.persistentVolumeClaim)
        ? r.string(item.persistentVolumeClaim, ["claimName"], `${f}.persistentVolumeClaim.`)
        : undefined);
    const cm =
      typeof item.configMap === "string"
        ? { field: `${f}.configMap`, value: item.configMap }
        : isRecord(item.configMap)
          ? r.string(item.configMap, ["name"], `${f}.configMap.`)
          : undefined;
    const secret =
      typeof item.secret === "string"
        ? { field: `${f}.secret`, value: item.secret }
        : isRecord(item.secret)
          ? r.string(item.secret, ["secretName", "name"], `${f}.secret.`)
          : undefined;
    const host =
      typeof item.hostPath === "string"
        ? { field: `${f}.hostPath`, value: item.hostPath }
        : isRecord(item.hostPath)
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
      const e = isRecord(item.emptyDir) ? item.emptyDir : {};
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

export function checkVolumes(r: Reader, volumes: readonly VolumeSpec[], hasCode: boolean, agent: AgentMode): void {
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
