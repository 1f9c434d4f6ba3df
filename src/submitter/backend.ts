/**
 * Registers a job with the backend (CONTRACT section 5: `POST /v1/jobs` -> `201 {"id", "token", "state"}`) so the
 * submitter can hand the pod its callback JWT. A job registered before (409) gets a fresh token from
 * `POST /v1/jobs/{id}/token`. The admin token, when set, is sent as a bearer and never printed.
 */
import { AgentError } from "../errors/index.ts";
import type { Secret } from "../config/index.ts";

export interface BackendClient {
  /** Registers the job (POST /v1/jobs); when it exists already (409), returns a fresh token for it instead. */
  registerJob(job: { id: string; name: string }): Promise<{ id: string; token: string }>;
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

  const client: BackendClient = {
    async registerJob(job) {
      const { response, text } = await post("/v1/jobs", job, job.id);
      // Registered before (a re-submit after delete, or a retry): a fresh token for the same job.
      if (response.status === 409) return client.issueToken(job.id);
      return tokenFrom(response, text, "POST /v1/jobs", job.id);
    },
    async issueToken(id) {
      const path = `/v1/jobs/${encodeURIComponent(id)}/token`;
      const { response, text } = await post(path, {}, id);
      return tokenFrom(response, text, `POST ${path}`, id);
    },
  };
  return client;
}
