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

/** Largest value of an int32 field (TrainJob numNodes, numProcPerNode; the API server refuses more). */
export const INT32_MAX = 2_147_483_647;

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * What is wrong with a label (or node selector) key, as apimachinery's IsQualifiedName checks it: an optional
 * DNS-1123 subdomain prefix (at most 253) and `/`, then a name of at most 63 alphanumerics, `-`, `_` and `.`
 * that starts and ends alphanumeric. undefined when it is fine.
 */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)))
    return "its prefix (before /) must be a DNS-1123 subdomain of at most 253 characters";
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name))
    return "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (optionally after a DNS subdomain prefix and /)";
  return undefined;
}

/** What is wrong with a label value (empty, or at most 63 characters like a label name); undefined when fine. */
export function labelValueProblem(value: string): string | undefined {
  if (value === "" || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return "must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
}
