/**
 * The stub's jobs behind the HTTP surface: every change goes through `commit` (apply in order, wait for the
 * journal, then tell the listeners), and the job operations the API and `BackendStub` share (create, queue,
 * cancel, a fresh token, the list) live here once.
 */
import { randomBytes } from "node:crypto";
import { CreateJobRequest, isTerminal, type CallbackKind, type JobTokenResponse } from "../../../src/contract/index.ts";
import { AgentError } from "../../../src/errors/index.ts";
import { signCallbackToken } from "../auth/tokens.ts";
import type { Journal } from "../journal/journal.ts";
import type { StubLogger } from "../logger.ts";
import { summarize, type Job, type JobSummary, type Transition } from "./model.ts";
import type { JournalRecord } from "./records.ts";
import type { Applied, JobStore } from "./store.ts";

export interface CreatedJob {
  id: string;
  token: string;
  state: "PENDING";
  expires_at: string;
}

export interface JobUpdate {
  kind: "created" | "queued" | "cancelled" | CallbackKind;
  job: JobSummary;
  transition: Transition | undefined;
}

/** What a committed record did, as listeners and streams name it. */
export function updateKindOf(record: JournalRecord): JobUpdate["kind"] {
  if (record.type === "report") return record.kind;
  return record.type === "job_created" ? "created" : record.type === "job_queued" ? "queued" : "cancelled";
}

export interface JobService {
  /** Applies records in order, then waits until all are on disk and tells `onCommitted`. */
  commit(records: JournalRecord[]): Promise<Applied[]>;
  /** The job, or JOB_NOT_FOUND. */
  mustGet(id: string): Job;
  createJob(input?: { id?: string; name?: string; max_restarts?: number }): Promise<CreatedJob>;
  queueJob(id: string): Promise<JobSummary>;
  cancelJob(id: string, reason?: string): Promise<JobSummary>;
  /** A fresh callback token for a job that has not ended. */
  issueToken(id: string): Promise<JobTokenResponse>;
  /** Every job, newest first. */
  listJobs(): Promise<JobSummary[]>;
  isoNow(): string;
}

export function createJobService(deps: {
  store: JobStore;
  /** The journal once replayed; undefined when the stub keeps jobs in memory only. */
  journal: () => Journal | undefined;
  /** Replays the journal (idempotent); every operation waits for it. */
  ready: () => Promise<void>;
  signingKey: Parameters<typeof signCallbackToken>[0];
  tokenTtlSeconds: number;
  now: () => number;
  logger: StubLogger;
  onCommitted: (record: JournalRecord, applied: Applied) => void;
}): JobService {
  const { store, ready, now, logger } = deps;
  const isoNow = (): string => new Date(now()).toISOString();

  async function commit(records: JournalRecord[]): Promise<Applied[]> {
    const journal = deps.journal();
    if (journal?.failed === true)
      throw new AgentError("JOURNAL_FAILED", "the journal failed earlier; refusing changes");
    const applied = records.map((r) => store.apply(r));
    const durable =
      journal === undefined
        ? Promise.resolve()
        : Promise.all(records.map((r) => journal.append(r))).then(() => undefined);
    records.forEach((r, i) => {
      const entry =
        r.type === "report" && r.idempotency_key !== undefined
          ? applied[i]!.job.idempotency.get(r.idempotency_key)
          : undefined;
      if (entry !== undefined) entry.durable = durable;
    });
    durable.catch(() => {}); // A retry waiting on the same report sees the failure through its own await.
    await durable;
    records.forEach((r, i) => deps.onCommitted(r, applied[i]!));
    return applied;
  }

  function mustGet(id: string): Job {
    const job = store.get(id);
    if (job === undefined) throw new AgentError("JOB_NOT_FOUND", `no job ${JSON.stringify(id)}`);
    return job;
  }

  function tokenFor(job: Job): JobTokenResponse {
    const { token, exp } = signCallbackToken(deps.signingKey, job.id, deps.tokenTtlSeconds, now());
    return { id: job.id, token, state: job.state, expires_at: new Date(exp * 1000).toISOString() };
  }

  return {
    commit,
    mustGet,
    isoNow,
    async createJob(input = {}) {
      await ready();
      const parsed = CreateJobRequest.safeParse(input);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const field = issue?.path.map(String).join(".") ?? "(body)";
        throw new AgentError("JOB_INVALID", `invalid job: ${field}: ${issue?.message ?? "invalid"}`, {
          details: { field },
        });
      }
      let id = parsed.data.id;
      if (id !== undefined && store.get(id) !== undefined) {
        throw new AgentError("JOB_CONFLICT", `job ${JSON.stringify(id)} already exists`, {
          details: { field: "id" },
        });
      }
      while (id === undefined || store.get(id) !== undefined) id = randomBytes(6).toString("hex");
      const record: JournalRecord = { v: 1, type: "job_created", at: isoNow(), job_id: id, via: "api" };
      if (parsed.data.name !== undefined) record.name = parsed.data.name;
      if (parsed.data.max_restarts !== undefined && parsed.data.max_restarts > 0)
        record.max_restarts = parsed.data.max_restarts;
      const [applied] = await commit([record]);
      const { token, expires_at } = tokenFor(applied!.job);
      logger.info({ job_id: id }, "job created");
      return { id, token, state: "PENDING", expires_at };
    },
    async queueJob(id) {
      await ready();
      const job = mustGet(id);
      const conflict = store.conflictForQueue(job);
      if (conflict !== undefined) throw new AgentError("JOB_CONFLICT", conflict);
      await commit([{ v: 1, type: "job_queued", at: isoNow(), job_id: id }]);
      return summarize(job);
    },
    async cancelJob(id, reason) {
      await ready();
      const job = mustGet(id);
      const conflict = store.conflictForCancel(job);
      if (conflict !== undefined) throw new AgentError("JOB_CONFLICT", conflict);
      const record: JournalRecord = { v: 1, type: "job_cancelled", at: isoNow(), job_id: id };
      if (reason !== undefined) record.reason = reason;
      await commit([record]);
      return summarize(job);
    },
    async issueToken(id) {
      await ready();
      const job = mustGet(id);
      if (isTerminal(job.state))
        throw new AgentError("JOB_CONFLICT", `job ${id} already ended (${job.state}); no new token`);
      return tokenFor(job);
    },
    async listJobs() {
      await ready();
      return [...store.jobs.values()]
        .map(summarize)
        .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    },
  };
}
