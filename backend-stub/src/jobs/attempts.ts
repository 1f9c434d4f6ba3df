/**
 * Attempts (CONTRACT section 5, "Attempts"): a job runs as attempt 0, 1, ... (JobSet's restart attempt, carried
 * by every callback as `attempt`; `container_restart` counts kubelet restarts inside one pod). The job has a
 * restart budget (`max_restarts` at `POST /v1/jobs`, from the runtime's `failurePolicy.maxRestarts`):
 * a failed run with budget left does not end the job, the timeline says "attempt N failed: <reason>" and the next
 * run's reports are accepted. Reports of an attempt older than the newest one reported are refused (409).
 *
 * Pure functions over the job, called by the store's one reducer, so replaying the journal rebuilds the same
 * attempts.
 */
import type { DonePayload } from "../../../src/contract/index.ts";
import type { Job, Transition } from "./model.ts";

/** A run as the timeline and `GET /v1/jobs/{id}` show it. */
export interface AttemptView {
  attempt: number;
  container_restart: number;
  started_at: string;
  /** `failed` runs that left budget; the run that ended the job has the job's state. */
  status: "running" | "failed" | "succeeded" | "cancelled" | "superseded";
  ended_at?: string;
  reason?: string;
}

export interface AttemptState {
  maxRestarts: number;
  /** The newest attempt that reported; undefined before the first report. */
  current: number | undefined;
  /** Runs (`attempt/container_restart`) that failed and used one restart of the budget. */
  failedRuns: Set<string>;
  runs: AttemptView[];
}

export function newAttemptState(maxRestarts = 0): AttemptState {
  return { maxRestarts, current: undefined, failedRuns: new Set(), runs: [] };
}

interface RunFields {
  attempt?: number | undefined;
  container_restart?: number | undefined;
}

const runKey = (p: RunFields): string => `${p.attempt ?? 0}/${p.container_restart ?? 0}`;

/** Why a report of this run is refused (409): an older attempt than the newest one that reported. */
export function attemptConflict(job: Job, payload: RunFields): string | undefined {
  const current = job.attempts.current;
  const attempt = payload.attempt ?? 0;
  if (current !== undefined && attempt < current)
    return `attempt ${attempt} of job ${job.id} was superseded by attempt ${current}; its reports are not accepted`;
  return undefined;
}

/**
 * Notes a report's run: a new attempt, or a new container restart of the current one, opens a run on the timeline.
 * Returns the timeline entry it added, if any.
 */
export function enterRun(job: Job, payload: RunFields, at: string): Transition | undefined {
  const state = job.attempts;
  const attempt = payload.attempt ?? 0;
  const containerRestart = payload.container_restart ?? 0;
  const known = state.runs.some((r) => r.attempt === attempt && r.container_restart === containerRestart);
  if (known) return undefined;
  if (state.current !== undefined && attempt === state.current) {
    // A container restart of the current attempt supersedes that pod's earlier run.
    for (const r of state.runs)
      if (r.status === "running" && r.attempt === attempt && r.container_restart < containerRestart)
        Object.assign(r, { status: "superseded", ended_at: at });
  }
  if (state.current !== undefined && attempt > state.current) {
    // A new attempt: the previous attempt's nodes are gone; the new ones report their own done. A run that
    // never said done (its pod was killed) ends here.
    job.nodeDone.clear();
    job.nnodes = undefined;
    for (const r of state.runs) if (r.status === "running") Object.assign(r, { status: "superseded", ended_at: at });
  }
  state.current = Math.max(state.current ?? attempt, attempt);
  state.runs.push({ attempt, container_restart: containerRestart, started_at: at, status: "running" });
  if (state.runs.length === 1 && attempt === 0 && containerRestart === 0) return undefined;
  return note(job, at, `${describeRun(attempt, containerRestart)} started`);
}

/**
 * Whether a failed `done` leaves the job running: true when the run has budget left (the failure is noted on the
 * timeline and uses one restart), or when the run already failed before (another node of the same attempt).
 */
export function absorbFailure(job: Job, done: DonePayload, at: string): boolean {
  if (done.status !== "failed") return false;
  const state = job.attempts;
  const key = runKey(done);
  if (state.failedRuns.has(key)) return true;
  if (state.failedRuns.size >= state.maxRestarts) return false;
  state.failedRuns.add(key);
  const run = runOf(job, done);
  const reason = done.reason === undefined ? `exit code ${done.exit_code}` : done.reason.slice(0, 300);
  if (run !== undefined) Object.assign(run, { status: "failed", ended_at: at, reason });
  const left = state.maxRestarts - state.failedRuns.size;
  note(
    job,
    at,
    `${describeRun(done.attempt ?? 0, done.container_restart ?? 0)} failed: ${reason} (${left} restarts left)`,
  );
  return true;
}

/** Marks the run that ended the job. */
export function endRun(job: Job, done: DonePayload, at: string): void {
  const run = runOf(job, done);
  if (run === undefined) return;
  run.status = done.status;
  run.ended_at = at;
  if (done.reason !== undefined) run.reason = done.reason.slice(0, 300);
}

function runOf(job: Job, p: RunFields): AttemptView | undefined {
  const attempt = p.attempt ?? 0;
  const cr = p.container_restart ?? 0;
  return job.attempts.runs.find((r) => r.attempt === attempt && r.container_restart === cr);
}

function describeRun(attempt: number, containerRestart: number): string {
  return containerRestart === 0 ? `attempt ${attempt}` : `attempt ${attempt} (container restart ${containerRestart})`;
}

/** A timeline entry that does not change the state (the job keeps running across attempts). */
function note(job: Job, at: string, cause: string): Transition {
  const t: Transition = { from: job.state, to: job.state, at, cause };
  job.transitions.push(t);
  return t;
}
