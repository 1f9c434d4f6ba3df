/** cpu, memory and GPU per node: quantities, request <= limit, the config{} per-node form. */
import { parseQuantity } from "../quantity.ts";
import type { JobSpec } from "../spec.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Obj, Reader } from "./reader.ts";

export function readResources(r: Reader, req: Obj, config: Obj): JobSpec["resources"] {
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
  const res = isRecord(req.resources) ? req.resources : {};
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
