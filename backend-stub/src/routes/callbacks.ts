/**
 * The agent's side of the API (CONTRACT section 5): `POST /v1/jobs/{id}/heartbeat|event|done`, the batch of
 * several reports, and token renewal. Each report is checked against its job's callback token, its schema, its
 * Idempotency-Key and the state machine before it is committed.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  BatchPayload,
  CALLBACK_SCHEMAS,
  JobId,
  type BatchAnswer,
  type CallbackKind,
  type DonePayload,
} from "../../../src/contract/index.ts";
import { bearerToken, HttpError, sendJson } from "../../../src/http/index.ts";
import { readJson } from "../http/body.ts";
import { checkEventRoom } from "../http/limits.ts";
import { route, type RequestContext, type Route } from "../http/router.ts";
import { validateBody } from "../http/validate.ts";
import { applyBatch } from "../jobs/batch.ts";
import type { JournalRecord, ReportRecord } from "../jobs/records.ts";
import type { StubContext } from "./context.ts";

export interface CallbackSettings {
  /** A validly signed callback for an unknown job registers it. */
  autoCreateJobs: boolean;
  /** Events kept per job; one more is refused with 409. */
  maxEventsPerJob: number;
  /** How long after its expiry a callback token still renews itself, ms. */
  renewGraceMs: number;
}

/** 401 (with the reason as the error code: `token_expired`, `token_wrong_job`...) unless the token is valid. */
export function requireCallbackToken(
  ctx: Pick<StubContext, "tokens" | "now">,
  req: IncomingMessage,
  jobId: string,
): void {
  const check = ctx.tokens.verify(bearerToken(req.headers.authorization), jobId, ctx.now());
  if (!check.ok) {
    const challenge =
      check.reason === "missing" ? 'Bearer realm="callbacks"' : 'Bearer realm="callbacks", error="invalid_token"';
    throw new HttpError(401, `token_${check.reason}`, check.message, { headers: { "www-authenticate": challenge } });
  }
}

export function callbackRoutes(ctx: StubContext, settings: CallbackSettings): Route[] {
  const { store, jobs, metrics, tokens, now } = ctx;

  const verifyCallbackToken = (req: IncomingMessage, jobId: string): void => requireCallbackToken(ctx, req, jobId);

  /** The callback's latency and status go to /metrics once the answer is written. */
  function observe(res: ServerResponse, kind: string): void {
    const started = performance.now();
    res.once("finish", () => metrics.observeCallback(kind, res.statusCode, performance.now() - started));
  }

  const report =
    (kind: CallbackKind) =>
    async ({ req, res, params }: RequestContext): Promise<void> => {
      observe(res, kind);
      verifyCallbackToken(req, params.id!);
      const payload = await readJson(req, ctx.maxBodyBytes);
      const key = idempotencyKey(req);
      const answer = await acceptReport(params.id!, kind, payload, key);
      sendJson(res, answer.status, answer.body, answer.replayed ? { "idempotent-replayed": "true" } : {});
    };

  async function batch({ req, res, params }: RequestContext): Promise<void> {
    const jobId = params.id!;
    observe(res, "batch");
    verifyCallbackToken(req, jobId);
    const body = validateBody(BatchPayload, await readJson(req, ctx.maxBodyBytes), "batch");
    if (body.job_id !== jobId) {
      throw new HttpError(400, "invalid_body", "invalid batch body: job_id: must equal the job id in the path", {
        field: "job_id",
      });
    }
    const results = await applyBatch(body, (r) => acceptReport(jobId, r.kind, r.payload, r.idempotency_key));
    const job = store.get(jobId);
    sendJson(res, 200, { job_id: jobId, state: job?.state ?? "PENDING", results } satisfies BatchAnswer);
  }

  async function renewToken({ req, res, params }: RequestContext): Promise<void> {
    const jobId = params.id!;
    // An agent renews with its callback token (valid, or expired less than the grace ago); an operator with the
    // admin token.
    const presented = bearerToken(req.headers.authorization);
    const viaCallbackToken =
      tokens.verify(presented, jobId, now()).ok ||
      (settings.renewGraceMs > 0 && tokens.verify(presented, jobId, now() - settings.renewGraceMs).ok);
    if (!viaCallbackToken && !ctx.admin.ok(req)) {
      throw new HttpError(
        401,
        "token_required",
        "renewing needs a valid callback token for this job or the admin token",
        {
          headers: { "www-authenticate": 'Bearer realm="callbacks"' },
        },
      );
    }
    sendJson(res, 200, await jobs.issueToken(jobId));
  }

  /**
   * Validates one report, answers a repeated Idempotency-Key with the first answer, checks the state machine and
   * the attempts, and commits. Everything up to commit() runs before the first await, so the state checked is the
   * state the record is applied to, and a batch's reports are checked in order, each after the previous applied.
   */
  async function acceptReport(
    jobId: string,
    kind: CallbackKind,
    body: unknown,
    key: string | undefined,
  ): Promise<{ status: number; body: unknown; replayed: boolean }> {
    const payload = validateBody(CALLBACK_SCHEMAS[kind], body, kind);
    if (payload.job_id !== jobId) {
      throw new HttpError(400, "invalid_body", `invalid ${kind} body: job_id: must equal the job id in the path`, {
        field: "job_id",
      });
    }
    // The fingerprint leaves out `timestamp`: a sender may re-stamp a retry; any other difference is a reused key.
    const bodyHash = key === undefined ? undefined : fingerprint(kind, payload);
    const entry = key === undefined ? undefined : store.get(jobId)?.idempotency.get(key);
    if (entry !== undefined) {
      if (entry.bodyHash !== bodyHash) {
        throw new HttpError(422, "idempotency_key_reused", "Idempotency-Key was already used for a different report", {
          field: "Idempotency-Key",
        });
      }
      await entry.durable;
      return { status: entry.answer.status, body: entry.answer.body, replayed: true };
    }
    const at = jobs.isoNow();
    const records: JournalRecord[] = [];
    const job = store.get(jobId);
    if (kind === "done") {
      const bad = store.invalidNodeDone(job, payload as DonePayload);
      if (bad !== undefined) {
        throw new HttpError(400, "invalid_body", `invalid done body: ${bad.field}: ${bad.message}`, {
          field: bad.field,
        });
      }
    }
    if (job === undefined) {
      if (!settings.autoCreateJobs) throw new HttpError(404, "job_not_found", `no job ${JSON.stringify(jobId)}`);
      if (!JobId.safeParse(jobId).success)
        throw new HttpError(400, "invalid_job_id", `job id ${JSON.stringify(jobId)} is not a valid id`);
      records.push({ v: 1, type: "job_created", at, job_id: jobId, via: "callback" });
    } else {
      const conflict = store.conflictForReport(job, { kind, payload });
      if (conflict !== undefined) throw new HttpError(409, "invalid_transition", conflict);
      if (kind === "event") checkEventRoom(job.events.length, settings.maxEventsPerJob);
    }
    const record = { v: 1, type: "report", at, job_id: jobId, kind, payload } as ReportRecord;
    if (key !== undefined) {
      record.idempotency_key = key;
      record.body_hash = bodyHash!;
    }
    records.push(record);
    const applied = await jobs.commit(records);
    const answer = applied.at(-1)!.answer!;
    return { status: answer.status, body: answer.body, replayed: false };
  }

  return [
    route("POST", "/v1/jobs/:id/heartbeat", report("heartbeat")),
    route("POST", "/v1/jobs/:id/event", report("event")),
    route("POST", "/v1/jobs/:id/done", report("done")),
    route("POST", "/v1/jobs/:id/batch", batch),
    route("POST", "/v1/jobs/:id/token", renewToken),
  ];
}

function fingerprint(kind: CallbackKind, payload: { timestamp: string }): string {
  const { timestamp: _timestamp, ...rest } = payload;
  return createHash("sha256")
    .update(`${kind}\n${JSON.stringify(rest)}`)
    .digest("base64url");
}

function idempotencyKey(req: IncomingMessage): string | undefined {
  const value = req.headers["idempotency-key"];
  if (value === undefined) return undefined;
  const key = Array.isArray(value) ? value[0] : value;
  if (key === undefined || key.length === 0 || key.length > 255 || !/^[\x21-\x7e]+$/.test(key)) {
    throw new HttpError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters", {
      field: "Idempotency-Key",
    });
  }
  return key;
}
