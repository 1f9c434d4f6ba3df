/**
 * The job a local run reports to: the backend stub started in-process (a job created, its callback token minted)
 * when no backend is configured, or the configured one (BACKEND_BASE_URL) with the given JOB_ID and token, or a
 * job created there through `POST /v1/jobs`.
 */
import { randomBytes } from "node:crypto";
import { AgentError } from "../errors/index.ts";
import { packagePath } from "../packaging/package-root.ts";
import type { CheckpointStorageOptions } from "../../backend-stub/src/storage/checkpoint-urls.ts";

/** What the summary needs to know about the job, whichever backend holds it. */
export interface JobSnapshot {
  state: string;
  epoch: number | null;
  totalEpochs: number | null;
  metrics: Record<string, number>;
  reason: string | null;
  heartbeats: number;
  events: Array<{ type: string; message?: string | undefined }>;
}

export interface LocalBackend {
  baseUrl: string;
  jobId: string;
  /** The callback JWT: handed to the agents through their environment only, never printed. */
  token: string;
  dashboardUrl: string;
  embedded: boolean;
  snapshot(): Promise<JobSnapshot | undefined>;
  /**
   * Ends a job the nodes left open (every agent died before its `done`, e.g. a bad command line) with a `done`
   * callback of the runner's own. A backend that already has the job ended answers 409, which is fine.
   */
  endJob(input: { status: "failed" | "cancelled"; exitCode: number; reason: string; traceId: string }): Promise<void>;
  /** A new job on the same backend (the demo's predict job after its training); closing it leaves the backend up. */
  anotherJob(name: string): Promise<LocalBackend>;
  close(): Promise<void>;
}

async function postDone(
  doFetch: typeof fetch,
  base: string,
  jobId: string,
  token: string,
  input: { status: "failed" | "cancelled"; exitCode: number; reason: string; traceId: string },
): Promise<void> {
  const { randomUUID } = await import("node:crypto");
  await doFetch(`${base}/v1/jobs/${encodeURIComponent(jobId)}/done`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "idempotency-key": randomUUID() },
    body: JSON.stringify({
      job_id: jobId,
      trace_id: input.traceId,
      status: input.status,
      exit_code: input.exitCode,
      reason: input.reason.slice(0, 4096),
      checkpoints: [],
      duration_seconds: 0,
      timestamp: new Date().toISOString(),
    }),
    signal: AbortSignal.timeout(10_000),
  }).catch(() => undefined);
}

interface JobViewLike {
  state: string;
  epoch: number | null;
  total_epochs: number | null;
  latest_metrics: Record<string, number>;
  heartbeat_count?: number;
  heartbeats?: unknown[];
  events?: Array<{ type: string; message?: string }>;
  done?: { reason?: string; final_metrics?: Record<string, number> } | null;
}

function toSnapshot(view: JobViewLike): JobSnapshot {
  return {
    state: view.state,
    epoch: view.epoch ?? null,
    totalEpochs: view.total_epochs ?? null,
    metrics: { ...(view.latest_metrics ?? {}), ...(view.done?.final_metrics ?? {}) },
    reason: view.done?.reason ?? null,
    heartbeats: view.heartbeat_count ?? view.heartbeats?.length ?? 0,
    events: (view.events ?? []).map((e) => ({ type: e.type, message: e.message })),
  };
}

export async function startEmbeddedBackend(
  name: string,
  checkpointStorage?: CheckpointStorageOptions,
): Promise<LocalBackend> {
  const { createBackendStub } = await import("../../backend-stub/src/index.ts");
  // Found from the package root: the stub's own default is relative to its sources, which dist/lib bundles away.
  const publicDir = packagePath("backend-stub", "public");
  const stub = createBackendStub({
    secret: randomBytes(32).toString("base64url"),
    ...(publicDir === undefined ? {} : { publicDir }),
    ...(checkpointStorage === undefined ? {} : { checkpointStorage }),
  });
  const { url } = await stub.listen(0, "127.0.0.1");
  const jobOn = async (jobName: string, close: () => Promise<void>): Promise<LocalBackend> => {
    const job = await stub.createJob({ name: jobName });
    return {
      baseUrl: url,
      jobId: job.id,
      token: job.token,
      dashboardUrl: `${url}/jobs/${encodeURIComponent(job.id)}`,
      embedded: true,
      async snapshot() {
        const view = await stub.getJob(job.id);
        return view === undefined ? undefined : toSnapshot(view as unknown as JobViewLike);
      },
      endJob: (input) => postDone(fetch, url, job.id, job.token, input),
      // The stub closes with the run's first job; the others share it.
      anotherJob: (next) => jobOn(next, async () => undefined),
      close,
    };
  };
  return jobOn(name, () => stub.close());
}

export interface ExternalBackendInput {
  baseUrl: string;
  jobId: string | undefined;
  token: string | undefined;
  adminToken: string | undefined;
  name: string;
  fetch?: typeof fetch;
}

export async function useExternalBackend(input: ExternalBackendInput): Promise<LocalBackend> {
  const doFetch = input.fetch ?? fetch;
  const base = input.baseUrl.replace(/\/+$/, "");
  const admin: Record<string, string> =
    input.adminToken === undefined ? {} : { authorization: `Bearer ${input.adminToken}` };
  let jobId = input.jobId;
  let token = input.token;
  if (jobId === undefined || token === undefined) {
    if (jobId !== undefined || token !== undefined)
      throw new AgentError(
        "CONFIG_INVALID",
        "JOB_ID and CALLBACK_TOKEN must be set together (or neither, to create a job on BACKEND_BASE_URL)",
      );
    let res: Response;
    try {
      res = await doFetch(`${base}/v1/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json", ...admin },
        body: JSON.stringify({ name: input.name }),
      });
    } catch (error) {
      throw new AgentError(
        "CALLBACK_FAILED",
        `BACKEND_BASE_URL ${base}: cannot create a job (${(error as Error).message})`,
        {
          cause: error,
        },
      );
    }
    if (res.status !== 201 && res.status !== 200)
      throw new AgentError(
        res.status === 401 || res.status === 403 ? "CALLBACK_REJECTED" : "CALLBACK_FAILED",
        `BACKEND_BASE_URL ${base}: POST /v1/jobs answered ${res.status}` +
          (res.status === 401 ? " (set BACKEND_ADMIN_TOKEN)" : ""),
      );
    const body = (await res.json()) as { id?: unknown; token?: unknown };
    if (typeof body.id !== "string" || typeof body.token !== "string")
      throw new AgentError("CALLBACK_FAILED", `BACKEND_BASE_URL ${base}: POST /v1/jobs answered without id and token`);
    jobId = body.id;
    token = body.token;
  }
  const id = jobId;
  return {
    baseUrl: base,
    jobId: id,
    token,
    dashboardUrl: `${base}/jobs/${encodeURIComponent(id)}`,
    embedded: false,
    async snapshot() {
      try {
        const res = await doFetch(`${base}/v1/jobs/${encodeURIComponent(id)}`, { headers: admin });
        if (!res.ok) return undefined;
        return toSnapshot((await res.json()) as JobViewLike);
      } catch {
        return undefined;
      }
    },
    endJob: (input) => postDone(doFetch, base, id, token, input),
    anotherJob: (next) => useExternalBackend({ ...input, jobId: undefined, token: undefined, name: next }),
    close: async () => undefined,
  };
}
