/**
 * Job management: create (`POST /v1/jobs`), list and read (open to all), queue and cancel. Creating, queueing
 * and cancelling need the admin token when one is set.
 */
import { CreateJobRequest, JOB_STATES } from "../../../src/contract/index.ts";
import { HttpError, sendJson } from "../../../src/http/index.ts";
import { readJson } from "../http/body.ts";
import { route, type RequestContext, type Route } from "../http/router.ts";
import { validateBody } from "../http/validate.ts";
import { viewOf, type JobSummary } from "../jobs/model.ts";
import type { StubContext } from "./context.ts";

/** Longest cancel reason kept, characters. */
const MAX_REASON_CHARS = 4096;

export function jobRoutes(ctx: StubContext): Route[] {
  const { jobs, admin } = ctx;

  async function create({ req, res }: RequestContext): Promise<void> {
    admin.require(req);
    const body = validateBody(CreateJobRequest, await readJson(req, ctx.maxBodyBytes, true), "job");
    const created = await jobs.createJob(body);
    sendJson(res, 201, created, { location: `/v1/jobs/${encodeURIComponent(created.id)}` });
  }

  async function list({ res, query }: RequestContext): Promise<void> {
    sendJson(res, 200, { jobs: filterJobs(await jobs.listJobs(), query) });
  }

  function read({ res, params }: RequestContext): void {
    const job = ctx.store.get(params.id!);
    if (job === undefined) throw new HttpError(404, "job_not_found", `no job ${JSON.stringify(params.id)}`);
    sendJson(res, 200, viewOf(job));
  }

  async function queue({ req, res, params }: RequestContext): Promise<void> {
    admin.require(req);
    sendJson(res, 200, await jobs.queueJob(params.id!));
  }

  async function cancel({ req, res, params }: RequestContext): Promise<void> {
    admin.require(req);
    const body = (await readJson(req, ctx.maxBodyBytes, true)) as { reason?: unknown };
    const reason = typeof body.reason === "string" ? body.reason.slice(0, MAX_REASON_CHARS) : undefined;
    sendJson(res, 200, await jobs.cancelJob(params.id!, reason));
  }

  return [
    route("GET", "/v1/jobs", list),
    route("POST", "/v1/jobs", create),
    route("GET", "/v1/jobs/:id", read),
    route("POST", "/v1/jobs/:id/queue", queue),
    route("POST", "/v1/jobs/:id/cancel", cancel),
  ];
}

/** `GET /v1/jobs?state=RUNNING,QUEUED&limit=20`: state filter (any of a comma list) and a count limit. */
function filterJobs(jobs: JobSummary[], query: string | undefined): JobSummary[] {
  if (query === undefined) return jobs;
  const params = new URLSearchParams(query);
  const states = params.get("state");
  let out = jobs;
  if (states !== null && states !== "") {
    const wanted = states.split(",").map((st) => st.trim().toUpperCase());
    const unknown = wanted.filter((st) => !(JOB_STATES as readonly string[]).includes(st));
    if (unknown.length > 0) {
      throw new HttpError(
        400,
        "invalid_query",
        `state must be any of ${JOB_STATES.join(", ")}, got ${unknown.join(", ")}`,
        { field: "state" },
      );
    }
    out = out.filter((j) => wanted.includes(j.state));
  }
  const limit = params.get("limit");
  if (limit !== null) {
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 1) {
      throw new HttpError(400, "invalid_query", `limit must be a positive integer, got ${JSON.stringify(limit)}`, {
        field: "limit",
      });
    }
    out = out.slice(0, n);
  }
  return out;
}
