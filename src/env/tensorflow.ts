/**
 * TF_CONFIG for MultiWorkerMirroredStrategy, built from the PET_* variables (Kubeflow Trainer v2 has no
 * TensorFlow plugin and sets no TF_CONFIG; a TensorFlow runtime uses `mlPolicy.torch` to get PET_*).
 *
 * Worker hosts are derived as the TrainJob's JobSet names its pods (see docs/env.md):
 * - PET_MASTER_ADDR `<trainjob>-node-0-0.<subdomain>[.more]` -> worker i is `<trainjob>-node-0-<i>.<subdomain>[.more]`
 *   (Trainer writes the master as `<trainjob>-<rjob>-<jobIdx>-<podIdx>.<subdomain>`, with pod index 0);
 * - else the pod's HOSTNAME `<trainjob>-node-<jobIdx>-<k>` (Indexed Job pods are named `$(job-name)-$(index)`) ->
 *   worker i is `<trainjob>-node-<jobIdx>-<i>.<trainjob>` (the JobSet's headless Service is named after it);
 * - PET_MASTER_ADDR an IP address or `localhost` (local runs, the default) -> every worker on that host, worker i
 *   on port TF_PORT + i.
 * Every worker in a cluster listens on TF_PORT. An existing TF_CONFIG is left untouched.
 */
import { isIP } from "node:net";
import { AgentError } from "../errors/index.ts";

export interface TfInput {
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  /** Whether PET_MASTER_ADDR was set (the default `localhost` means a local run, unless HOSTNAME says otherwise). */
  masterAddrExplicit: boolean;
  hostname: string | undefined;
  tfPort: number;
  /** An existing TF_CONFIG: returned unchanged. */
  tfConfig: string | undefined;
}

export interface TfConfig {
  cluster: { worker: string[] };
  task: { type: "worker"; index: number };
}

/** `<trainjob>-<rjob>-<jobIdx>-0` as the first label of PET_MASTER_ADDR. */
const MASTER_FIRST_LABEL = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?-\d+)-0$/;
/** An Indexed Job pod's hostname under Kubeflow Trainer: `<trainjob>-node-<jobIdx>-<podIdx>`. */
const POD_HOSTNAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)-node-(\d+)-(\d+)$/;
const LOCAL_NAMES = new Set(["localhost", "localhost.localdomain", "ip6-localhost"]);

/** The TF_CONFIG variable for this pod; `{}` when TF_CONFIG is already set or there is a single worker. */
export function tensorflowEnv(input: TfInput): Record<string, string> {
  if (input.tfConfig !== undefined) return {};
  // Like training-operator v1 (issue #1078): a one-worker job gets no TF_CONFIG, TensorFlow then runs locally.
  if (input.nnodes === 1) return {};
  return { TF_CONFIG: JSON.stringify(buildTfConfig(input)) };
}

/** The TF_CONFIG object for `nnodes` workers; throws ENV_INVALID when the worker hosts cannot be derived. */
export function buildTfConfig(input: TfInput): TfConfig {
  const { nnodes, nodeRank, tfPort } = input;
  if (!Number.isSafeInteger(nnodes) || nnodes < 1)
    throw new AgentError("ENV_INVALID", `PET_NNODES must be a positive integer, got "${nnodes}"`);
  if (!Number.isSafeInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes)
    throw new AgentError("ENV_INVALID", `PET_NODE_RANK must be from 0 to ${nnodes - 1}, got "${nodeRank}"`);
  if (!Number.isSafeInteger(tfPort) || tfPort < 1 || tfPort > 65535)
    throw new AgentError("ENV_INVALID", `TF_PORT must be a port from 1 to 65535, got "${tfPort}"`);
  return { cluster: { worker: workerHosts(input) }, task: { type: "worker", index: nodeRank } };
}

/** `host:port` of every worker, in node-rank order. */
export function workerHosts(input: TfInput): string[] {
  const { nnodes, tfPort } = input;
  const addr = input.masterAddr.trim();
  const indices = Array.from({ length: nnodes }, (_, i) => i);

  if (input.masterAddrExplicit) {
    const dot = addr.indexOf(".");
    const first = dot === -1 ? addr : addr.slice(0, dot);
    const m = MASTER_FIRST_LABEL.exec(first);
    if (m && dot !== -1 && isIP(addr) === 0) {
      const rest = addr.slice(dot);
      return indices.map((i) => `${m[1]}-${i}${rest}:${tfPort}`);
    }
  }
  if (!input.masterAddrExplicit || !isLocalAddress(addr)) {
    const pod = input.hostname === undefined ? null : POD_HOSTNAME.exec(input.hostname.trim());
    if (pod) {
      const [, trainjob, , jobIdx] = pod;
      return indices.map((i) => `${trainjob}-node-${jobIdx}-${i}.${trainjob}:${tfPort}`);
    }
  }
  if (isLocalAddress(addr)) {
    if (tfPort + nnodes - 1 > 65535)
      throw new AgentError(
        "ENV_INVALID",
        `TF_PORT must leave room for ${nnodes} local workers (TF_PORT + ${nnodes - 1} <= 65535), got "${tfPort}"`,
      );
    const host = isIP(addr) === 6 ? `[${addr}]` : addr;
    return indices.map((i) => `${host}:${tfPort + i}`);
  }
  throw new AgentError(
    "ENV_INVALID",
    `PET_MASTER_ADDR must be <trainjob>-node-0-0.<trainjob> (a TrainJob pod), an IP address or localhost to derive ` +
      `TensorFlow worker hosts, got ${JSON.stringify(addr)}; set TF_CONFIG yourself for other layouts`,
  );
}

function isLocalAddress(addr: string): boolean {
  return isIP(addr) !== 0 || LOCAL_NAMES.has(addr.toLowerCase());
}
