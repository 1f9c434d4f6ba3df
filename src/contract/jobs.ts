/**
 * The backend's job-management payloads (CONTRACT section 5, "The backend stub also serves"): shared by the
 * backend stub (which validates them) and its clients (`trainer-agent local`, the submitter, tests).
 */
import { z } from "zod";
import { JOB_STATES } from "./job-state.ts";

/** A job id: safe in a URL path segment, an S3 key (`checkpoints/job-{id}/`) and a Kubernetes label value. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

export const JobId = z.string().regex(JOB_ID_PATTERN, {
  message: "must be 1-63 letters, digits, '.', '_' or '-', starting and ending alphanumeric",
});

/** `POST /v1/jobs` body (optional). */
export const CreateJobRequest = z.object({
  id: JobId.optional(),
  name: z.string().min(1).max(256).optional(),
  /** Failed runs the job may still recover from (the runtime's `failurePolicy.maxRestarts`); default 0. */
  max_restarts: z.number().int().min(0).max(1000).optional(),
});
export type CreateJobRequest = z.infer<typeof CreateJobRequest>;

/** `POST /v1/jobs` answer (201) and `POST /v1/jobs/{id}/token` answer (200, with the job's current state). */
export const JobTokenResponse = z.object({
  id: z.string(),
  token: z.string(),
  state: z.enum(JOB_STATES),
  /** When the token expires, ISO-8601. */
  expires_at: z.string(),
});
export type JobTokenResponse = z.infer<typeof JobTokenResponse>;
