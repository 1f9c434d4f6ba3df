/** Job states and the one state machine the backend stub enforces (CONTRACT section 5). */
export const JOB_STATES = ["PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

const ALLOWED: Readonly<Record<JobState, readonly JobState[]>> = {
  PENDING: ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
  QUEUED: ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
  RUNNING: ["SUCCEEDED", "FAILED", "CANCELLED"],
  SUCCEEDED: [],
  FAILED: [],
  CANCELLED: [],
};

export function canTransition(from: JobState, to: JobState): boolean {
  return ALLOWED[from].includes(to);
}

/** Whether a job in `state` has ended; a string, since a configured backend's answer is read unchecked. */
export function isTerminal(state: string): boolean {
  return (TERMINAL_STATES as ReadonlySet<string>).has(state);
}

/** State a `done` status ends the job in. */
export function stateForDone(status: "succeeded" | "failed" | "cancelled"): JobState {
  return status === "succeeded" ? "SUCCEEDED" : status === "failed" ? "FAILED" : "CANCELLED";
}
