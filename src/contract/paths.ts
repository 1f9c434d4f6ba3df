/**
 * Callback URL paths, in a module without zod so the agent can build URLs without loading the schemas
 * (its start-up and memory stay lean). Re-exported by ./callbacks.ts.
 */
export const CALLBACK_KINDS = ["heartbeat", "event", "done"] as const;
export type CallbackKind = (typeof CALLBACK_KINDS)[number];

/** Path of a callback for a job: `/v1/jobs/{id}/{kind}`. */
export function callbackPath(jobId: string, kind: CallbackKind): string {
  return `/v1/jobs/${encodeURIComponent(jobId)}/${kind}`;
}

/** Path of a batch of reports for a job: `/v1/jobs/{id}/batch`. */
export function batchPath(jobId: string): string {
  return `/v1/jobs/${encodeURIComponent(jobId)}/batch`;
}

/** Path of a job's callback token renewal: `/v1/jobs/{id}/token`. */
export function tokenPath(jobId: string): string {
  return `/v1/jobs/${encodeURIComponent(jobId)}/token`;
}

/** Path where a job's agent asks for presigned checkpoint URLs: `/v1/jobs/{id}/checkpoint-urls`. */
export function checkpointUrlsPath(jobId: string): string {
  return `/v1/jobs/${encodeURIComponent(jobId)}/checkpoint-urls`;
}

/** The key prefix a job's checkpoints live under, in the backend's bucket and in the agent's default layout. */
export function jobCheckpointPrefix(jobId: string): string {
  return `checkpoints/job-${jobId}/`;
}
