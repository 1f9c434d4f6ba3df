/**
 * Kubernetes name rules the submitter checks before the API server (or, worse, the JobSet webhook after the
 * TrainJob was accepted) rejects them.
 */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** TrainJob names: the CRD's CEL rule `^[a-z]([-a-z0-9]*[a-z0-9])?$` (a DNS-1035 label). */
export const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
/** Container env names as the API server has validated them for years (C identifier plus `-` and `.`). */
export const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
/** Label values: at most 63, alphanumeric at both ends, `-`, `_`, `.` inside (empty is valid but not useful here). */
export const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
/** ConfigMap and Secret data keys. */
export const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

/** The trainer replicatedJob of every Trainer runtime, and the container in it. */
export const NODE_JOB = "node";
export const NODE_CONTAINER = "node";
/** The random suffix the Job controller appends to pod names: `-` and five characters. */
const POD_SUFFIX_LENGTH = 6;

/**
 * Longest TrainJob name whose pods all get valid names: JobSet names pods `<name>-node-0-<i>-<5 random>` and
 * rejects the JobSet when that is not a DNS-1035 label (63 characters); the hostname `<name>-node-0-<i>` then fits too.
 */
export function maxTrainJobNameLength(numNodes: number): number {
  const digits = String(Math.max(0, numNodes - 1)).length;
  return 63 - `-${NODE_JOB}-0-`.length - digits - POD_SUFFIX_LENGTH;
}
