/**
 * The seed API's job state from a TrainJob: `Complete` / `Failed` / `Suspended` from its conditions, else
 * `Running` when a Job of the JobSet has active or ready pods, else `Pending`. Trainer v2.3 has no Running or
 * Created condition (kubeflow/trainer#2621, #2713), so "running" is read from `status.jobsStatus`.
 */
export const JOB_STATES = ["Pending", "Running", "Suspended", "Complete", "Failed"] as const;
export type TrainJobState = (typeof JOB_STATES)[number];

export interface TrainJobStatus {
  readonly trainjob_name: string;
  readonly namespace: string;
  readonly state: TrainJobState;
  readonly message: string;
  readonly reason?: string;
  readonly created_at?: string;
  readonly completed_at?: string;
  /** Pods per state summed over the JobSet's Jobs. */
  readonly pods: {
    readonly active: number;
    readonly ready: number;
    readonly succeeded: number;
    readonly failed: number;
  };
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

function isTrue(conditions: readonly Condition[], type: string): Condition | undefined {
  return conditions.find((c) => c.type === type && c.status === "True");
}

export function trainJobStatus(trainJob: unknown): TrainJobStatus {
  const tj = (trainJob ?? {}) as {
    metadata?: { name?: string; namespace?: string; creationTimestamp?: string };
    spec?: { suspend?: boolean };
    status?: { conditions?: Condition[]; jobsStatus?: Array<Record<string, number | string | undefined>> };
  };
  const conditions = tj.status?.conditions ?? [];
  const pods = { active: 0, ready: 0, succeeded: 0, failed: 0 };
  for (const j of tj.status?.jobsStatus ?? []) {
    for (const k of ["active", "ready", "succeeded", "failed"] as const) {
      const n = j[k];
      if (typeof n === "number") pods[k] += n;
    }
  }
  const base = {
    trainjob_name: tj.metadata?.name ?? "",
    namespace: tj.metadata?.namespace ?? "",
    ...(tj.metadata?.creationTimestamp === undefined ? {} : { created_at: tj.metadata.creationTimestamp }),
    pods,
  };
  const failed = isTrue(conditions, "Failed");
  const complete = isTrue(conditions, "Complete");
  const terminal = failed ?? complete;
  if (terminal !== undefined) {
    return {
      ...base,
      state: failed !== undefined ? "Failed" : "Complete",
      message: terminal.message ?? "",
      ...(terminal.reason === undefined ? {} : { reason: terminal.reason }),
      ...(terminal.lastTransitionTime === undefined ? {} : { completed_at: terminal.lastTransitionTime }),
    };
  }
  const suspended = isTrue(conditions, "Suspended");
  if (suspended !== undefined || tj.spec?.suspend === true) {
    return {
      ...base,
      state: "Suspended",
      message: suspended?.message ?? "TrainJob is suspended",
      ...(suspended?.reason === undefined ? {} : { reason: suspended.reason }),
    };
  }
  if (pods.active > 0 || pods.ready > 0) {
    return { ...base, state: "Running", message: `${pods.ready} of ${pods.active} active pod(s) ready` };
  }
  return { ...base, state: "Pending", message: "waiting for the JobSet's pods to start" };
}
