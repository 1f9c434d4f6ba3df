/**
 * The seed API's job state from a TrainJob: `Complete` / `Failed` / `Suspended` from its conditions, else
 * `Running` when a Job of the JobSet has active or ready pods, else `Pending`. Trainer v2.3 has no Running or
 * Created condition (kubeflow/trainer#2621, #2713), so "running" is read from `status.jobsStatus`. A TrainJob with
 * a deletion timestamp (finalizers pending) is `Terminating`, whatever its conditions say, as kubectl shows pods.
 * `progress` is the Trainer's own `status.trainerStatus` (v2.2+, TrainJobStatus feature gate) when present.
 */
export const JOB_STATES = ["Pending", "Running", "Suspended", "Complete", "Failed", "Terminating"] as const;
export type TrainJobState = (typeof JOB_STATES)[number];

export interface TrainJobStatus {
  readonly trainjob_name: string;
  readonly namespace: string;
  readonly state: TrainJobState;
  readonly message: string;
  readonly reason?: string;
  readonly created_at?: string;
  readonly completed_at?: string;
  /** From status.trainerStatus, as rank 0 last reported it. */
  readonly progress?: TrainerProgress;
  /** Pods per state summed over the JobSet's Jobs. */
  readonly pods: {
    readonly active: number;
    readonly ready: number;
    readonly succeeded: number;
    readonly failed: number;
  };
}

export interface TrainerProgress {
  readonly percentage?: number;
  readonly eta_seconds?: number;
  readonly metrics: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  readonly updated_at?: string;
}

/** status.trainerStatus, keeping only well-formed fields (it is written by the training pods). */
export function trainerProgress(status: unknown): TrainerProgress | undefined {
  const t = (status as { trainerStatus?: unknown } | undefined)?.trainerStatus;
  if (typeof t !== "object" || t === null) return undefined;
  const ts = t as Record<string, unknown>;
  const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const percentage = num(ts.progressPercentage);
  const eta = num(ts.estimatedRemainingSeconds);
  const metrics = Array.isArray(ts.metrics)
    ? ts.metrics
        .filter(
          (m): m is { name: string; value: string } =>
            typeof m === "object" && m !== null && typeof m.name === "string" && typeof m.value === "string",
        )
        .map((m) => ({ name: m.name, value: m.value }))
    : [];
  const updated = ts.lastUpdatedTime;
  return {
    ...(percentage === undefined ? {} : { percentage }),
    ...(eta === undefined ? {} : { eta_seconds: eta }),
    metrics,
    ...(typeof updated === "string"
      ? { updated_at: updated }
      : updated instanceof Date
        ? { updated_at: updated.toISOString() }
        : {}),
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
    metadata?: { name?: string; namespace?: string; creationTimestamp?: string; deletionTimestamp?: string | Date };
    spec?: { suspend?: boolean };
    status?: { conditions?: Condition[]; jobsStatus?: Array<Record<string, number | string | undefined>> };
  };
  const progress = trainerProgress(tj.status);
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
    ...(progress === undefined ? {} : { progress }),
    pods,
  };
  const deleting = tj.metadata?.deletionTimestamp;
  if (deleting !== undefined && deleting !== null) {
    const since = deleting instanceof Date ? deleting.toISOString() : String(deleting);
    return { ...base, state: "Terminating", message: `being deleted since ${since}`, reason: "Terminating" };
  }
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
