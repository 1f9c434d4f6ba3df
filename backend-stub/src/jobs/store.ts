/**
 * The jobs and the one reducer that changes them. Live requests are checked here first (`conflictFor*`: the state
 * machine), then turned into a record, applied with `apply` and journaled; replay at start-up calls `apply` alone.
 */
import {
  canTransition,
  isTerminal,
  stateForDone,
  type DonePayload,
  type JobState,
} from "../../../src/contract/index.ts";
import { AgentError } from "../../../src/errors/index.ts";
import {
  newJob,
  type CallbackAnswer,
  type Job,
  type StoredDone,
  type StoredEvent,
  type StoredHeartbeat,
  type Transition,
} from "./model.ts";
import type { JournalRecord, ReportRecord } from "./records.ts";
import { absorbFailure, attemptConflict, endRun, enterRun } from "./attempts.ts";

/** Idempotency keys remembered per job (oldest forgotten first): retries come within minutes, not 10,000 reports. */
export const IDEMPOTENCY_KEYS_PER_JOB = 10_000;

const settled: Promise<void> = Promise.resolve();

export interface Applied {
  job: Job;
  transition: Transition | undefined;
  /** Every timeline entry the record added: the state change and notes on attempts. */
  transitions?: Transition[];
  /** For a report record: the answer the sender gets (and gets again for a retry with the same key). */
  answer: CallbackAnswer | undefined;
  /** For a report record: what was stored (the job's arrays move on before listeners hear of this one). */
  item?: StoredHeartbeat | StoredEvent | StoredDone;
}

export class JobStore {
  readonly jobs = new Map<string, Job>();

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Why a report is refused in the job's state (409), or undefined when it is allowed. */
  conflictForReport(job: Job, report: Pick<ReportRecord, "kind" | "payload">): string | undefined {
    if (isTerminal(job.state)) {
      return `job ${job.id} already ended (${job.state}); no ${report.kind} is accepted after the end`;
    }
    const superseded = attemptConflict(job, report.payload);
    if (superseded !== undefined) return superseded;
    if (report.kind === "done") {
      const done = report.payload as DonePayload;
      const rank = multiNodeRank(done);
      // A newer attempt's nodes start afresh (its first report clears the older attempt's node dones).
      const sameAttempt = (done.attempt ?? 0) === (job.attempts.current ?? 0);
      if (rank !== undefined && sameAttempt && job.nodeDone.has(rank))
        return `node ${rank} of job ${job.id} already reported done`;
    }
    return undefined;
  }

  /** Why a multi-node `done` is malformed (400: field and message), or undefined. */
  invalidNodeDone(job: Job | undefined, done: DonePayload): { field: string; message: string } | undefined {
    if (done.node_rank === undefined && done.nnodes === undefined) return undefined;
    if (done.nnodes === undefined) return { field: "nnodes", message: "is required with node_rank" };
    if (done.node_rank === undefined) return { field: "node_rank", message: "is required with nnodes" };
    if (done.node_rank >= done.nnodes) {
      return { field: "node_rank", message: `must be below nnodes (${done.nnodes}), got ${done.node_rank}` };
    }
    if (job?.nnodes !== undefined && job.nnodes !== done.nnodes) {
      return { field: "nnodes", message: `must match the ${job.nnodes} the job's other nodes reported` };
    }
    return undefined;
  }

  conflictForQueue(job: Job): string | undefined {
    if (canTransition(job.state, "QUEUED")) return undefined;
    if (isTerminal(job.state)) return `job ${job.id} already ended (${job.state})`;
    return `job ${job.id} is ${job.state}; only a PENDING job can be queued`;
  }

  conflictForCancel(job: Job): string | undefined {
    return canTransition(job.state, "CANCELLED") ? undefined : `job ${job.id} already ended (${job.state})`;
  }

  /** Applies one record. Records are checked before they are written, so a failure here means a damaged journal. */
  apply(record: JournalRecord): Applied {
    if (record.type === "job_created") {
      if (this.jobs.has(record.job_id)) throw inconsistent(record, "the job already exists");
      const job = newJob(record.job_id, record.name, record.at, record.via, record.max_restarts ?? 0);
      this.jobs.set(job.id, job);
      return { job, transition: job.transitions[0], answer: undefined };
    }
    const job = this.jobs.get(record.job_id);
    if (job === undefined) throw inconsistent(record, "the job does not exist");
    job.updatedAt = record.at;
    switch (record.type) {
      case "job_queued":
        return { job, transition: move(job, "QUEUED", record.at, "queued"), answer: undefined };
      case "job_cancelled":
        return { job, transition: move(job, "CANCELLED", record.at, "cancelled"), answer: undefined };
      case "report":
        return this.#applyReport(job, record);
    }
  }

  #applyReport(job: Job, record: ReportRecord): Applied {
    if (isTerminal(job.state)) throw inconsistent(record, `the job already ended (${job.state})`);
    const timelineBefore = job.transitions.length;
    enterRun(job, record.payload, record.at);
    let transition: Transition | undefined;
    let item: StoredHeartbeat | StoredEvent | StoredDone;
    const wake = (cause: string): void => {
      if (job.state === "PENDING" || job.state === "QUEUED") transition = move(job, "RUNNING", record.at, cause);
    };
    switch (record.kind) {
      case "heartbeat":
        item = { ...record.payload, received_at: record.at };
        job.heartbeats.push(item);
        job.lastHeartbeatAt = record.at;
        wake("heartbeat");
        break;
      case "event":
        item = { ...record.payload, received_at: record.at };
        job.events.push(item);
        if (record.payload.type === "started") wake("event:started");
        break;
      case "done": {
        const done: StoredDone = { ...record.payload, received_at: record.at };
        item = done;
        if (absorbFailure(job, done, record.at)) {
          // The run failed with restarts left: the job goes on with the next attempt.
          wake("done:failed attempt");
          break;
        }
        const rank = multiNodeRank(done);
        if (rank !== undefined) {
          // One node of several: the job ends at the first failure, or when every node has succeeded.
          job.nodeDone.set(rank, done);
          job.nnodes = done.nnodes;
          const succeeded = [...job.nodeDone.values()].filter((d) => d.status === "succeeded").length;
          if (done.status === "succeeded" && succeeded < done.nnodes!) {
            wake(`done:node ${rank}`);
            break;
          }
          job.done = done.status === "succeeded" ? (job.nodeDone.get(0) ?? done) : done;
        } else {
          job.done = done;
        }
        transition = move(job, stateForDone(done.status), record.at, `done:${done.status}`);
        endRun(job, done, record.at);
        break;
      }
    }
    job.traceId ??= record.payload.trace_id;
    const answer: CallbackAnswer = { status: 200, body: { accepted: record.kind, job_id: job.id, state: job.state } };
    if (record.idempotency_key !== undefined) {
      job.idempotency.set(record.idempotency_key, { bodyHash: record.body_hash ?? "", answer, durable: settled });
      if (job.idempotency.size > IDEMPOTENCY_KEYS_PER_JOB) {
        const oldest = job.idempotency.keys().next();
        if (oldest.done !== true) job.idempotency.delete(oldest.value);
      }
    }
    return { job, transition, transitions: job.transitions.slice(timelineBefore), answer, item };
  }
}

/** The node rank of a `done` from one node of a multi-node job, or undefined for a whole-job `done`. */
function multiNodeRank(done: DonePayload): number | undefined {
  return done.nnodes !== undefined && done.nnodes > 1 && done.node_rank !== undefined ? done.node_rank : undefined;
}

function move(job: Job, to: JobState, at: string, cause: string): Transition {
  if (!canTransition(job.state, to)) {
    throw new AgentError(
      "JOURNAL_FAILED",
      `journal record moves job ${job.id} from ${job.state} to ${to}, which is not allowed`,
    );
  }
  const transition: Transition = { from: job.state, to, at, cause };
  job.state = to;
  job.transitions.push(transition);
  return transition;
}

function inconsistent(record: JournalRecord, why: string): AgentError {
  return new AgentError(
    "JOURNAL_FAILED",
    `journal record ${record.type} for job ${record.job_id} cannot apply: ${why}`,
  );
}
