/**
 * The jobs and the one reducer that changes them. Live requests are checked here first (`conflictFor*`: the state
 * machine), then turned into a record, applied with `apply` and journaled; replay at start-up calls `apply` alone.
 */
import { canTransition, isTerminal, stateForDone, type JobState } from "../../../src/contract/index.ts";
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

/** Idempotency keys remembered per job (oldest forgotten first): retries come within minutes, not 10,000 reports. */
export const IDEMPOTENCY_KEYS_PER_JOB = 10_000;

const settled: Promise<void> = Promise.resolve();

export interface Applied {
  job: Job;
  transition: Transition | undefined;
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

  /** Why a report of `kind` is refused in the job's state (409), or undefined when it is allowed. */
  conflictForReport(job: Job, kind: ReportRecord["kind"]): string | undefined {
    if (isTerminal(job.state)) {
      return `job ${job.id} already ended (${job.state}); no ${kind} is accepted after the end`;
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
      const job = newJob(record.job_id, record.name, record.at, record.via);
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
      case "done":
        item = job.done = { ...record.payload, received_at: record.at };
        transition = move(job, stateForDone(record.payload.status), record.at, `done:${record.payload.status}`);
        break;
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
    return { job, transition, answer, item };
  }
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
