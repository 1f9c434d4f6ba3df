/**
 * Registers a job with the backend (CONTRACT section 5: `POST /v1/jobs` -> `201 {"id", "token", "state"}`) so the
 * submitter can hand the pod its callback JWT. A job registered before (409) gets a fresh token from
 * `POST /v1/jobs/{id}/token`. The admin token, when set, is sent as a bearer and never printed.
 */
import { AgentError } from "../errors/index.ts";
import type { Secret } from "../config/index.ts";

export interface BackendClient {
  /**
   * Registers the job (POST /v1/jobs) with its restart budget (the runtime's failurePolicy.maxRestarts); when it
   * exists already (409), returns a fresh token for it instead.
   */
  registerJob(job: { id: string; name: string; max_restarts?: number }): Promise<{ id: string; token: string }>;
  /** Moves the job to QUEUED (POST /v1/jobs/{id}/queue) once its TrainJob exists; false when it is past that. */
  queueJob(id: string): Promise<boolean>;
  /** Cancels the job (POST /v1/jobs/{id}/cancel) when its TrainJob is deleted; false when it had ended or is unknown. */
  cancelJob(id: string, reason: string): Promise<boolean>;
  /** A fresh callback token for an existing job (POST /v1/jobs/{id}/token). */
  issueToken(id: string): Promise<{ id: string; token: string }>;
}

export interface BackendClientOptions {
  /** Base URL the submitter reaches the backend at (may differ from the URL pods use). */
  readonly url: string;
  readonly adminToken?: Secret;
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
}

export function createBackendClient(options: BackendClientOptions): BackendClient {
  const doFetch = options.fetch ?? fetch;
  const base = options.url.replace(/\/+$/, "");

  const post = async (path: string, body: unknown, id: string): Promise<{ response: Response; text: string }> => {
    try {
      const response = await doFetch(`${base}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(options.adminToken === undefined ? {} : { authorization: `Bearer ${options.adminToken.reveal()}` }),
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
      return { response, text: await response.text() };
    } catch (error) {
      throw new AgentError(
        "CALLBACK_FAILED",
        `backend ${base}: POST ${path} for job ${id}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  };

  const tokenFrom = (response: Response, text: string, what: string, id: string): { id: string; token: string } => {
    if (!response.ok) {
      const hint = response.status === 401 || response.status === 403 ? " (check BACKEND_ADMIN_TOKEN)" : "";
      throw new AgentError("CALLBACK_REJECTED", `backend ${base}: ${what} answered ${response.status}${hint}`, {
        details: { status: response.status },
      });
    }
    let body: { id?: unknown; token?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      body = {};
    }
    if (typeof body.token !== "string" || body.token === "") {
      throw new AgentError("CALLBACK_FAILED", `backend ${base}: ${what} answered without a token`);
    }
    return { id: typeof body.id === "string" ? body.id : id, token: body.token };
  };

  /** A state change that may already have happened: 409 (already queued, running or ended) and 404 are no error. */
  const transition = async (id: string, action: "queue" | "cancel", body: unknown): Promise<boolean> => {
    const path = `/v1/jobs/${encodeURIComponent(id)}/${action}`;
    const { response } = await post(path, body, id);
    if (response.ok) return true;
    if (response.status === 409 || response.status === 404) return false;
    const hint = response.status === 401 || response.status === 403 ? " (check BACKEND_ADMIN_TOKEN)" : "";
    throw new AgentError("CALLBACK_REJECTED", `backend ${base}: POST ${path} answered ${response.status}${hint}`, {
      details: { status: response.status },
    });
  };

  const client: BackendClient = {
    async registerJob(job) {
      const { response, text } = await post("/v1/jobs", job, job.id);
      // Registered before (a re-submit after delete, or a retry): a fresh token for the same job.
      if (response.status === 409) return client.issueToken(job.id);
      return tokenFrom(response, text, "POST /v1/jobs", job.id);
    },
    queueJob: (id) => transition(id, "queue", {}),
    cancelJob: (id, reason) => transition(id, "cancel", { reason }),
    async issueToken(id) {
      const path = `/v1/jobs/${encodeURIComponent(id)}/token`;
      const { response, text } = await post(path, {}, id);
      if (response.status === 409) {
        throw new AgentError(
          "CALLBACK_REJECTED",
          `backend ${base}: job ${id} already ended (its TrainJob was deleted, or it finished); submit it under another job id (callback.job_id or another name)`,
          { details: { status: 409, field: "callback.job_id" } },
        );
      }
      return tokenFrom(response, text, `POST ${path}`, id);
    },
  };
  return client;
}
