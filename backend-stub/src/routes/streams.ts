/**
 * Server-sent events (see http/sse.ts for their bounds): `GET /v1/stream` carries every job's summary as it
 * changes, `GET /v1/jobs/{id}/stream` one job's changes. `createStreamUpdates` turns each committed record into
 * those events, building nothing when nobody listens.
 */
import { isTerminal } from "../../../src/contract/index.ts";
import { HttpError } from "../../../src/http/index.ts";
import { route, type RequestContext, type Route } from "../http/router.ts";
import type { SseHub } from "../http/sse.ts";
import { metricSeries, summarize, viewOf, type Job } from "../jobs/model.ts";
import type { JournalRecord } from "../jobs/records.ts";
import { updateKindOf } from "../jobs/service.ts";
import type { Applied } from "../jobs/store.ts";
import type { StubContext } from "./context.ts";

const LIST_UPDATE_MS = 200;

export function streamRoutes(ctx: StubContext): Route[] {
  const { sse } = ctx;
  return [
    route("GET", "/v1/stream", async ({ req, res }: RequestContext) => {
      sse.open(req, res, "jobs", { jobs: await ctx.jobs.listJobs() });
    }),
    route("GET", "/v1/jobs/:id/stream", ({ req, res, params }: RequestContext) => {
      const id = params.id!;
      const job = ctx.store.get(id);
      if (job === undefined) throw new HttpError(404, "job_not_found", `no job ${JSON.stringify(id)}`);
      sse.open(req, res, `job:${id}`, viewOf(job));
    }),
  ];
}

export interface StreamUpdates {
  publish(record: JournalRecord, applied: Applied): void;
  /** Drops a pending list update (on close). */
  close(): void;
}

export function createStreamUpdates(sse: SseHub): StreamUpdates {
  // The job list stream gets at most one summary per job per LIST_UPDATE_MS: 100 jobs reporting thousands of
  // times a second must not turn into thousands of list events per second per open dashboard.
  const pendingList = new Map<string, Job>();
  let listTimer: NodeJS.Timeout | undefined;
  function scheduleListUpdate(job: Job): void {
    pendingList.set(job.id, job);
    listTimer ??= setTimeout(() => {
      listTimer = undefined;
      for (const j of pendingList.values()) sse.publish("jobs", "job", summarize(j));
      pendingList.clear();
    }, LIST_UPDATE_MS).unref();
  }

  return {
    publish(record, applied) {
      const job = applied.job;
      if (sse.listeners("jobs") > 0) scheduleListUpdate(job);
      if (sse.listeners(`job:${job.id}`) === 0) return;
      const update: Record<string, unknown> = {
        kind: updateKindOf(record),
        job: summarize(job),
        transition: applied.transition ?? null,
        transitions: applied.transitions ?? (applied.transition === undefined ? [] : [applied.transition]),
      };
      if (record.type === "report") {
        if (record.kind !== "done") update[record.kind] = applied.item;
        else {
          // One node's done of a multi-node job is `node_done`; the done that ends the job (for several nodes:
          // rank 0's when all succeeded) is `done`.
          if (record.payload.node_rank !== undefined && (record.payload.nnodes ?? 1) > 1)
            update.node_done = applied.item;
          if (applied.transition !== undefined && isTerminal(applied.transition.to)) update.done = job.done;
        }
        if (record.kind === "heartbeat" && Object.keys(record.payload.metrics).length > 0) {
          update.metric_series = metricSeries(job.heartbeats);
        }
      }
      sse.publish(`job:${job.id}`, "update", update);
    },
    close() {
      clearTimeout(listTimer);
    },
  };
}
