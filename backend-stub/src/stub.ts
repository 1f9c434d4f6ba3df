/**
 * The backend stub: the callback API (CONTRACT section 5) with JWT checks, the job state machine, an fsync'd
 * journal, job management, server-sent events and the dashboard, on plain `node:http`.
 *
 * `createBackendStub(options)` builds it without touching the environment or the network; `listen()` replays the
 * journal (when `dataDir` is set) and binds. `trainer-agent local` embeds it in-process; `npm run backend` runs
 * it through main.ts.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  BatchPayload,
  CALLBACK_SCHEMAS,
  CreateJobRequest,
  type BatchAnswer,
  JOB_STATES,
  JobId,
  isTerminal,
  type CallbackKind,
  type DonePayload,
  type JobState,
  type JobTokenResponse,
} from "../../src/contract/index.ts";
import { AgentError, isAgentError } from "../../src/errors/index.ts";
import { bearerToken, createTokenVerifier, signCallbackToken } from "./auth/tokens.ts";
import {
  summarize,
  viewOf,
  metricSeries,
  type Job,
  type JobSummary,
  type JobView,
  type Transition,
} from "./jobs/model.ts";
import type { JournalRecord, ReportRecord } from "./jobs/records.ts";
import { JobStore, type Applied } from "./jobs/store.ts";
import { applyBatch } from "./jobs/batch.ts";
import { Journal } from "./journal/journal.ts";
import { DEFAULT_MAX_BODY_BYTES, parseJson, readBody } from "./http/body.ts";
import { checkEventRoom, MAX_EVENTS_PER_JOB } from "./http/limits.ts";
import { HttpError, sendError, sendJson } from "./http/respond.ts";
import { Metrics } from "./http/metrics.ts";
import { SseHub, type SseLimits } from "./http/sse.ts";
import { defaultPublicDir, loadAssets, type Asset } from "./http/static.ts";
import { jobPage } from "./http/job-page.ts";
import { validateBody } from "./http/validate.ts";
import { silentLogger, type StubLogger } from "./logger.ts";
import { listenOn } from "../../src/http/listen.ts";

/** Default callback token lifetime: 24 h, as the seed plan issues them; `POST /v1/jobs/{id}/token` renews. */
export const DEFAULT_TOKEN_TTL_SECONDS = 24 * 60 * 60;

export interface BackendStubOptions {
  /** HS256 key for callback tokens (`CALLBACK_JWT_SECRET`). */
  secret: string;
  /** Directory of the journal; without it the stub keeps jobs in memory only. */
  dataDir?: string;
  /** When set, creating, queueing and cancelling jobs need `Authorization: Bearer <adminToken>`. */
  adminToken?: string;
  /** Lifetime of issued callback tokens, seconds (default 86400). */
  tokenTtlSeconds?: number;
  /**
   * How long after its expiry a callback token still renews itself at `POST /v1/jobs/{id}/token`, seconds (default
   * the token lifetime, at most 1 h): an agent whose renewal was late (a busy node, a backend outage at the wrong
   * moment) gets a 401, renews with the just-expired token and sends again, instead of losing the job's reports.
   */
  renewGraceSeconds?: number;
  /** Largest accepted request body, bytes (default 1 MiB); larger is 413. */
  maxBodyBytes?: number;
  /** Events kept per job (default MAX_EVENTS_PER_JOB, 10,000); one more is refused with 409. */
  maxEventsPerJob?: number;
  /** Caps on event streams (defaults: DEFAULT_SSE_LIMITS: 256 streams, 64 per job, 256 KiB unsent per stream). */
  streamLimits?: Partial<SseLimits>;
  /** A validly signed callback for a job the stub does not know registers it (default true). */
  autoCreateJobs?: boolean;
  /** Dashboard files (default `backend-stub/public/`). */
  publicDir?: string;
  logger?: StubLogger;
  /** Clock, ms since the epoch (default Date.now). */
  now?: () => number;
}

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

export interface BackendStub {
  /** Replays the journal (once) and listens; `port` 0 picks a free one. */
  listen(port?: number, host?: string): Promise<{ url: string; port: number }>;
  /** Base URL once listening (`http://127.0.0.1:8000`). */
  readonly url: string | undefined;
  /** Stops listening, ends event streams, waits for the journal. */
  close(): Promise<void>;
  createJob(input?: { id?: string; name?: string; max_restarts?: number }): Promise<CreatedJob>;
  getJob(id: string): Promise<JobView | undefined>;
  listJobs(): Promise<JobSummary[]>;
  queueJob(id: string): Promise<JobSummary>;
  cancelJob(id: string, reason?: string): Promise<JobSummary>;
  /** A fresh callback token for a job that has not ended. */
  issueToken(id: string): Promise<JobTokenResponse>;
  /** Called after every durable change; returns an unsubscribe function. */
  onUpdate(listener: (update: JobUpdate) => void): () => void;
  /** The request listener, for mounting the stub on a server of one's own. Call `ready()` first. */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Replays the journal (idempotent); `listen` calls it. */
  ready(): Promise<void>;
}

const LIST_UPDATE_MS = 200;

const MUTATING_ADMIN_ACTIONS = new Set(["queue", "cancel"]);

export function createBackendStub(options: BackendStubOptions): BackendStub {
  if (typeof options.secret !== "string" || options.secret.length === 0) {
    throw new AgentError("CONFIG_INVALID", "backend stub: secret (CALLBACK_JWT_SECRET) must be a non-empty string");
  }
  const tokens = createTokenVerifier(options.secret);
  const logger = options.logger ?? silentLogger;
  const now = options.now ?? Date.now;
  const tokenTtl = options.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const renewGraceMs = (options.renewGraceSeconds ?? Math.min(tokenTtl, 3600)) * 1000;
  const autoCreate = options.autoCreateJobs ?? true;
  const maxEvents = options.maxEventsPerJob ?? MAX_EVENTS_PER_JOB;
  const adminDigest =
    options.adminToken === undefined || options.adminToken === "" ? undefined : digest(options.adminToken);
  if (!Number.isInteger(maxEvents) || maxEvents < 1) {
    throw new AgentError(
      "CONFIG_INVALID",
      `backend stub: maxEventsPerJob must be a positive integer, got ${maxEvents}`,
    );
  }
  if (!Number.isInteger(tokenTtl) || tokenTtl < 1) {
    throw new AgentError("CONFIG_INVALID", `backend stub: tokenTtlSeconds must be a positive integer, got ${tokenTtl}`);
  }

  const store = new JobStore();
  const sse = new SseHub(options.streamLimits);
  const metrics = new Metrics();
  const listeners = new Set<(update: JobUpdate) => void>();
  let journal: Journal | undefined;
  let assets = new Map<string, Asset>();
  let server: Server | undefined;
  let url: string | undefined;
  let closed = false;

  let readyPromise: Promise<void> | undefined;
  const ready = (): Promise<void> => {
    readyPromise ??= (async () => {
      assets = await loadAssets(options.publicDir ?? defaultPublicDir());
      if (options.dataDir === undefined) return;
      const opened = await Journal.open(options.dataDir, logger);
      for (const record of opened.records) store.apply(record);
      journal = opened.journal;
      logger.info({ journal: journal.file, records: opened.records.length, jobs: store.jobs.size }, "journal replayed");
    })();
    return readyPromise;
  };

  const isoNow = (): string => new Date(now()).toISOString();

  /** Applies records in order, then waits until all are on disk and tells the listeners. */
  async function commit(records: JournalRecord[]): Promise<Applied[]> {
    if (journal?.failed === true)
      throw new AgentError("JOURNAL_FAILED", "the journal failed earlier; refusing changes");
    const applied = records.map((r) => store.apply(r));
    const durable =
      journal === undefined
        ? Promise.resolve()
        : Promise.all(records.map((r) => journal!.append(r))).then(() => undefined);
    records.forEach((r, i) => {
      const entry =
        r.type === "report" && r.idempotency_key !== undefined
          ? applied[i]!.job.idempotency.get(r.idempotency_key)
          : undefined;
      if (entry !== undefined) entry.durable = durable;
    });
    durable.catch(() => {}); // A retry waiting on the same report sees the failure through its own await.
    await durable;
    records.forEach((r, i) => publish(r, applied[i]!));
    return applied;
  }

  function publish(record: JournalRecord, applied: Applied): void {
    const kind: JobUpdate["kind"] =
      record.type === "report"
        ? record.kind
        : record.type === "job_created"
          ? "created"
          : record.type === "job_queued"
            ? "queued"
            : "cancelled";
    const job = applied.job;
    if (listeners.size > 0) {
      const summary = summarize(job);
      for (const listener of listeners) {
        try {
          listener({ kind, job: summary, transition: applied.transition });
        } catch (error) {
          logger.warn({ err: error }, "update listener threw");
        }
      }
    }
    if (sse.listeners("jobs") > 0) scheduleListUpdate(job);
    if (sse.listeners(`job:${job.id}`) > 0) {
      const update: Record<string, unknown> = {
        kind,
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
    }
  }

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

  function mustGet(id: string): Job {
    const job = store.get(id);
    if (job === undefined) throw new AgentError("JOB_NOT_FOUND", `no job ${JSON.stringify(id)}`);
    return job;
  }

  function tokenFor(job: Job): JobTokenResponse {
    const { token, exp } = signCallbackToken(tokens.key, job.id, tokenTtl, now());
    return { id: job.id, token, state: job.state, expires_at: new Date(exp * 1000).toISOString() };
  }

  async function createJob(input: { id?: string; name?: string; max_restarts?: number } = {}): Promise<CreatedJob> {
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
      throw new AgentError("JOB_CONFLICT", `job ${JSON.stringify(id)} already exists`, { details: { field: "id" } });
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
  }

  async function queueJob(id: string): Promise<JobSummary> {
    await ready();
    const job = mustGet(id);
    const conflict = store.conflictForQueue(job);
    if (conflict !== undefined) throw new AgentError("JOB_CONFLICT", conflict);
    await commit([{ v: 1, type: "job_queued", at: isoNow(), job_id: id }]);
    return summarize(job);
  }

  async function cancelJob(id: string, reason?: string): Promise<JobSummary> {
    await ready();
    const job = mustGet(id);
    const conflict = store.conflictForCancel(job);
    if (conflict !== undefined) throw new AgentError("JOB_CONFLICT", conflict);
    const record: JournalRecord = { v: 1, type: "job_cancelled", at: isoNow(), job_id: id };
    if (reason !== undefined) record.reason = reason;
    await commit([record]);
    return summarize(job);
  }

  async function issueToken(id: string): Promise<JobTokenResponse> {
    await ready();
    const job = mustGet(id);
    if (isTerminal(job.state))
      throw new AgentError("JOB_CONFLICT", `job ${id} already ended (${job.state}); no new token`);
    return tokenFor(job);
  }

  // ---- HTTP ----

  function adminOk(req: IncomingMessage): boolean {
    if (adminDigest === undefined) return true;
    const token = bearerToken(req.headers.authorization);
    return token !== undefined && token !== "" && timingSafeEqual(digest(token), adminDigest);
  }

  function requireAdmin(req: IncomingMessage): void {
    if (!adminOk(req)) {
      throw new HttpError(
        401,
        "admin_token_required",
        "this endpoint needs Authorization: Bearer <BACKEND_ADMIN_TOKEN>",
        {
          headers: { "www-authenticate": 'Bearer realm="backend-admin"' },
        },
      );
    }
  }

  /** 401 (with the reason as the error code: `token_expired`, `token_wrong_job`...) unless the token is valid. */
  function verifyCallbackToken(req: IncomingMessage, jobId: string): void {
    const check = tokens.verify(bearerToken(req.headers.authorization), jobId, now());
    if (!check.ok) {
      const challenge =
        check.reason === "missing" ? 'Bearer realm="callbacks"' : 'Bearer realm="callbacks", error="invalid_token"';
      throw new HttpError(401, `token_${check.reason}`, check.message, { headers: { "www-authenticate": challenge } });
    }
  }

  async function handleCallback(
    req: IncomingMessage,
    res: ServerResponse,
    jobId: string,
    kind: CallbackKind,
  ): Promise<void> {
    const started = performance.now();
    res.once("finish", () => metrics.observeCallback(kind, res.statusCode, performance.now() - started));
    verifyCallbackToken(req, jobId);
    const raw = await readBody(req, maxBody);
    const key = idempotencyKey(req);
    const answer = await acceptReport(jobId, kind, parseJson(req, raw), key);
    sendJson(res, answer.status, answer.body, answer.replayed ? { "idempotent-replayed": "true" } : {});
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
    const at = isoNow();
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
      if (!autoCreate) throw new HttpError(404, "job_not_found", `no job ${JSON.stringify(jobId)}`);
      if (!JobId.safeParse(jobId).success)
        throw new HttpError(400, "invalid_job_id", `job id ${JSON.stringify(jobId)} is not a valid id`);
      records.push({ v: 1, type: "job_created", at, job_id: jobId, via: "callback" });
    } else {
      const conflict = store.conflictForReport(job, { kind, payload });
      if (conflict !== undefined) throw new HttpError(409, "invalid_transition", conflict);
      if (kind === "event") checkEventRoom(job.events.length, maxEvents);
    }
    const report = { v: 1, type: "report", at, job_id: jobId, kind, payload } as ReportRecord;
    if (key !== undefined) {
      report.idempotency_key = key;
      report.body_hash = bodyHash!;
    }
    records.push(report);
    const applied = await commit(records);
    const answer = applied.at(-1)!.answer!;
    return { status: answer.status, body: answer.body, replayed: false };
  }

  async function handleBatch(req: IncomingMessage, res: ServerResponse, jobId: string): Promise<void> {
    const started = performance.now();
    res.once("finish", () => metrics.observeCallback("batch", res.statusCode, performance.now() - started));
    verifyCallbackToken(req, jobId);
    const raw = await readBody(req, maxBody);
    const batch = validateBody(BatchPayload, parseJson(req, raw), "batch");
    if (batch.job_id !== jobId) {
      throw new HttpError(400, "invalid_body", "invalid batch body: job_id: must equal the job id in the path", {
        field: "job_id",
      });
    }
    const results = await applyBatch(batch, (r) => acceptReport(jobId, r.kind, r.payload, r.idempotency_key));
    const job = store.get(jobId);
    sendJson(res, 200, { job_id: jobId, state: job?.state ?? "PENDING", results } satisfies BatchAnswer);
  }

  async function handleCreate(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requireAdmin(req);
    const raw = await readBody(req, maxBody);
    const body = validateBody(CreateJobRequest, parseJson(req, raw, true), "job");
    const created = await createJob(body);
    sendJson(res, 201, created, { location: `/v1/jobs/${encodeURIComponent(created.id)}` });
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse, jobId: string): Promise<void> {
    // An agent renews with its callback token (valid, or expired less than the grace ago); an operator with the
    // admin token.
    const presented = bearerToken(req.headers.authorization);
    const viaCallbackToken =
      tokens.verify(presented, jobId, now()).ok ||
      (renewGraceMs > 0 && tokens.verify(presented, jobId, now() - renewGraceMs).ok);
    if (!viaCallbackToken && !adminOk(req)) {
      throw new HttpError(
        401,
        "token_required",
        "renewing needs a valid callback token for this job or the admin token",
        {
          headers: { "www-authenticate": 'Bearer realm="callbacks"' },
        },
      );
    }
    sendJson(res, 200, await issueToken(jobId));
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const pathname = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const method = req.method ?? "GET";
    const parts = pathname.split("/").filter((p) => p !== "");

    if (parts[0] === "v1") {
      if (parts[1] === "jobs") {
        if (parts.length === 2) {
          if (method === "POST") return handleCreate(req, res);
          if (method === "GET") return sendJson(res, 200, { jobs: filterJobs(await listJobs(), rawUrl, q) });
          throw methodNotAllowed("GET, POST");
        }
        const id = decodeSegment(parts[2]!);
        const action = parts[3];
        if (parts.length === 3) {
          if (method !== "GET") throw methodNotAllowed("GET");
          const job = store.get(id);
          if (job === undefined) throw new HttpError(404, "job_not_found", `no job ${JSON.stringify(id)}`);
          return sendJson(res, 200, viewOf(job));
        }
        if (parts.length === 4 && action !== undefined) {
          if (action === "heartbeat" || action === "event" || action === "done") {
            if (method !== "POST") throw methodNotAllowed("POST");
            return handleCallback(req, res, id, action);
          }
          if (action === "batch") {
            if (method !== "POST") throw methodNotAllowed("POST");
            return handleBatch(req, res, id);
          }
          if (action === "stream") {
            if (method !== "GET") throw methodNotAllowed("GET");
            const job = store.get(id);
            if (job === undefined) throw new HttpError(404, "job_not_found", `no job ${JSON.stringify(id)}`);
            return sse.open(req, res, `job:${id}`, viewOf(job));
          }
          if (action === "token") {
            if (method !== "POST") throw methodNotAllowed("POST");
            return handleToken(req, res, id);
          }
          if (MUTATING_ADMIN_ACTIONS.has(action)) {
            if (method !== "POST") throw methodNotAllowed("POST");
            requireAdmin(req);
            let reason: string | undefined;
            if (action === "cancel") {
              const body = parseJson(req, await readBody(req, maxBody), true) as { reason?: unknown };
              reason = typeof body.reason === "string" ? body.reason.slice(0, 4096) : undefined;
            }
            const summary = action === "queue" ? await queueJob(id) : await cancelJob(id, reason);
            return sendJson(res, 200, summary);
          }
        }
      } else if (parts[1] === "stream" && parts.length === 2) {
        if (method !== "GET") throw methodNotAllowed("GET");
        return sse.open(req, res, "jobs", { jobs: await listJobs() });
      }
      throw new HttpError(404, "not_found", `no route ${method} ${pathname}`);
    }

    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed("GET");
    if (pathname === "/metrics") {
      const text = metrics.render({
        jobs: store.jobs.values(),
        journalSyncs: journal?.syncs ?? 0,
        journalFailed: journal?.failed === true,
        streams: sse.size,
        streamBufferedBytes: sse.bufferedBytes,
        streamsDropped: sse.dropped,
      });
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" });
      res.end(text);
      return;
    }
    if (pathname === "/healthz") {
      const ok = journal?.failed !== true;
      return sendJson(res, ok ? 200 : 503, {
        ok,
        jobs: store.jobs.size,
        journal: journal === undefined ? "off" : ok ? "ok" : "failed",
        journal_syncs: journal?.syncs ?? 0,
      });
    }
    const assetPath = pathname === "/" || (parts[0] === "jobs" && parts.length === 2) ? "/assets/index.html" : pathname;
    const asset = assets.get(assetPath);
    if (asset === undefined) throw new HttpError(404, "not_found", `no such page ${pathname}`);
    let body = asset.body;
    if (parts[0] === "jobs" && parts.length === 2) {
      await ready();
      let id: string | undefined;
      try {
        id = decodeURIComponent(parts[1]!);
      } catch {
        id = undefined; // malformed %-escape: no job has that id; the page says so once its script asks
      }
      const job = id === undefined ? undefined : store.jobs.get(id);
      body = jobPage(asset.body, job === undefined ? undefined : summarize(job));
    }
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": String(body.length),
      "cache-control": assetPath.endsWith(".html") ? "no-store" : "no-cache",
      "x-content-type-options": "nosniff",
      ...(asset.type.startsWith("text/html")
        ? { "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:" }
        : {}),
    });
    res.end(method === "HEAD" ? undefined : body);
  }

  async function listJobs(): Promise<JobSummary[]> {
    await ready();
    return [...store.jobs.values()]
      .map(summarize)
      .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
  }

  // Requests in progress, so close() can let them finish (and their reports reach the journal) before it drops
  // the keep-alive connections that clients would otherwise hold open.
  let inflight = 0;
  let drained: (() => void) | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now();
    inflight += 1;
    res.once("close", () => {
      inflight -= 1;
      if (inflight === 0) drained?.();
    });
    route(req, res)
      .catch((error: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        sendError(res, toHttpError(error, logger));
      })
      .finally(() => {
        logger.debug(
          {
            method: req.method,
            path: (req.url ?? "").split("?")[0],
            status: res.statusCode,
            ms: Math.round(performance.now() - started),
          },
          "request",
        );
      });
  };

  return {
    handler,
    ready,
    get url() {
      return url;
    },
    async listen(port = 0, host = "127.0.0.1") {
      if (closed) throw new AgentError("INTERNAL", "backend stub is closed");
      if (server !== undefined) throw new AgentError("INTERNAL", "backend stub is already listening");
      await ready();
      const s = createServer({ keepAliveTimeout: 65_000 }, handler);
      server = s;
      const address = await listenOn(s, port, host);
      const shownHost =
        host === "0.0.0.0" || host === "::"
          ? "127.0.0.1"
          : address.family === "IPv6"
            ? `[${address.address}]`
            : address.address;
      url = `http://${shownHost}:${address.port}`;
      logger.info({ url, host, port: address.port }, "backend stub listening");
      return { url, port: address.port };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(listTimer);
      sse.close();
      if (server !== undefined) {
        const s = server;
        const stopped = new Promise<void>((resolve) => s.close(() => resolve()));
        s.closeIdleConnections();
        if (inflight > 0) {
          await new Promise<void>((resolve) => {
            drained = resolve;
            setTimeout(resolve, 10_000).unref();
          });
        }
        s.closeAllConnections();
        await stopped;
      }
      await readyPromise?.catch(() => {});
      await journal?.close();
    },
    createJob,
    async getJob(id: string) {
      await ready();
      const job = store.get(id);
      return job === undefined ? undefined : viewOf(job);
    },
    listJobs,
    queueJob,
    cancelJob,
    issueToken,
    onUpdate(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

function fingerprint(kind: CallbackKind, payload: { timestamp: string }): string {
  const { timestamp: _timestamp, ...rest } = payload;
  return createHash("sha256")
    .update(`${kind}\n${JSON.stringify(rest)}`)
    .digest("base64url");
}

/** `GET /v1/jobs?state=RUNNING,QUEUED&limit=20`: state filter (any of a comma list) and a count limit. */
function filterJobs(jobs: JobSummary[], rawUrl: string, q: number): JobSummary[] {
  if (q === -1) return jobs;
  const params = new URLSearchParams(rawUrl.slice(q + 1));
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
        {
          field: "state",
        },
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

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
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

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, "invalid_path", "the job id in the path is not valid percent-encoding");
  }
}

function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, "method_not_allowed", `method not allowed; use ${allow}`, { headers: { allow } });
}

const STATUS_FOR_CODE: Partial<Record<string, number>> = {
  JOB_INVALID: 400,
  JOB_NOT_FOUND: 404,
  JOB_CONFLICT: 409,
  JOURNAL_FAILED: 503,
};

function toHttpError(error: unknown, logger: StubLogger): HttpError {
  if (error instanceof HttpError) return error;
  if (isAgentError(error)) {
    const status = STATUS_FOR_CODE[error.code];
    if (status !== undefined) {
      if (status >= 500) logger.error({ err: error }, "journal failure; refusing changes");
      const field = typeof error.details?.field === "string" ? error.details.field : undefined;
      return new HttpError(status, error.code.toLowerCase(), error.message, field === undefined ? {} : { field });
    }
  }
  logger.error({ err: error }, "unexpected error in the backend stub");
  return new HttpError(500, "internal", "internal error in the backend stub");
}

export type { JobState, JobSummary, JobView };
