/**
 * Registers a job with the backend (CONTRACT section 5: `POST /v1/jobs` -> `201 {"id", "token", "state"}`) so the
 * submitter can hand the pod its callback JWT. The admin token, when set, is sent as a bearer and never printed.
 */
import { AgentError } from "../errors/index.ts";
import type { Secret } from "../config/index.ts";

export interface BackendClient {
  registerJob(job: { id: string; name: string }): Promise<{ id: string; token: string }>;
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
  return {
    async registerJob(job) {
      let response: Response;
      try {
        response = await doFetch(`${base}/v1/jobs`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(options.adminToken === undefined ? {} : { authorization: `Bearer ${options.adminToken.reveal()}` }),
          },
          body: JSON.stringify(job),
          signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
        });
      } catch (error) {
        throw new AgentError(
          "CALLBACK_FAILED",
          `backend ${base}: cannot register job ${job.id}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      const text = await response.text();
      if (response.status === 409) {
        throw new AgentError(
          "CALLBACK_REJECTED",
          `backend ${base}: job ${job.id} is already registered; pass its token in callback.token or use another job id`,
        );
      }
      if (!response.ok) {
        throw new AgentError("CALLBACK_REJECTED", `backend ${base}: POST /v1/jobs answered ${response.status}`, {
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
        throw new AgentError("CALLBACK_FAILED", `backend ${base}: POST /v1/jobs answered without a token`);
      }
      return { id: typeof body.id === "string" ? body.id : job.id, token: body.token };
    },
  };
}
