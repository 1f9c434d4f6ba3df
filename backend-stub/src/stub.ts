/**
 * The backend stub: the callback API (CONTRACT section 5) with JWT checks, the job state machine, an fsync'd
 * journal, job management, server-sent events and the dashboard, on plain `node:http`.
 *
 * `createBackendStub(options)` builds it without touching the environment or the network; `listen()` replays the
 * journal (when `dataDir` is set) and binds. `trainer-agent local` embeds it in-process; `npm run backend` runs
 * it through main.ts. The HTTP handlers live in routes/ by concern (callbacks, jobs, streams, metrics,
 * dashboard); this file builds the state they share and composes their route table.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { JobState, JobTokenResponse } from "../../src/contract/index.ts";
import { HttpError, listenOn } from "../../src/http/index.ts";
import { AgentError } from "../../src/errors/index.ts";
import { createAdminCheck } from "./auth/admin.ts";
import { createTokenVerifier } from "./auth/tokens.ts";
import { DEFAULT_MAX_BODY_BYTES } from "./http/body.ts";
import { MAX_EVENTS_PER_JOB } from "./http/limits.ts";
import { Metrics } from "./http/metrics.ts";
import { sendError, toHttpError } from "./http/respond.ts";
import { createRouter, route } from "./http/router.ts";
import { SseHub, type SseLimits } from "./http/sse.ts";
import { defaultPublicDir, loadAssets, type Asset } from "./http/static.ts";
import { summarize, viewOf, type JobSummary, type JobView } from "./jobs/model.ts";
import { createJobService, updateKindOf, type CreatedJob, type JobUpdate } from "./jobs/service.ts";
import { JobStore } from "./jobs/store.ts";
import { Journal } from "./journal/journal.ts";
import { silentLogger, type StubLogger } from "./logger.ts";
import { callbackRoutes } from "./routes/callbacks.ts";
import { checkpointUrlRoutes } from "./routes/checkpoint-urls.ts";
import { createCheckpointUrls, type CheckpointStorageOptions, type CheckpointUrls } from "./storage/checkpoint-urls.ts";
import type { StubContext } from "./routes/context.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { createStreamUpdates, streamRoutes } from "./routes/streams.ts";

export type { CreatedJob, JobUpdate } from "./jobs/service.ts";

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
  /**
   * The bucket `POST /v1/jobs/{id}/checkpoint-urls` presigns for (BACKEND_S3_*): agents then need no storage keys.
   * Without it that route answers 501.
   */
  checkpointStorage?: CheckpointStorageOptions;
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

export function createBackendStub(options: BackendStubOptions): BackendStub {
  if (typeof options.secret !== "string" || options.secret.length === 0) {
    throw new AgentError("CONFIG_INVALID", "backend stub: secret (CALLBACK_JWT_SECRET) must be a non-empty string");
  }
  const logger = options.logger ?? silentLogger;
  const now = options.now ?? Date.now;
  const tokenTtl = options.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  const maxEvents = options.maxEventsPerJob ?? MAX_EVENTS_PER_JOB;
  if (!Number.isInteger(maxEvents) || maxEvents < 1) {
    throw new AgentError(
      "CONFIG_INVALID",
      `backend stub: maxEventsPerJob must be a positive integer, got ${maxEvents}`,
    );
  }
  if (!Number.isInteger(tokenTtl) || tokenTtl < 1) {
    throw new AgentError("CONFIG_INVALID", `backend stub: tokenTtlSeconds must be a positive integer, got ${tokenTtl}`);
  }

  // State: the jobs, the journal that keeps them, the dashboard's files, who listens.
  const store = new JobStore();
  const sse = new SseHub(options.streamLimits);
  const streams = createStreamUpdates(sse);
  const listeners = new Set<(update: JobUpdate) => void>();
  let journal: Journal | undefined;
  let assets: ReadonlyMap<string, Asset> = new Map();

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

  const tokens = createTokenVerifier(options.secret);
  const jobs = createJobService({
    store,
    journal: () => journal,
    ready,
    signingKey: tokens.key,
    tokenTtlSeconds: tokenTtl,
    now,
    logger,
    onCommitted(record, applied) {
      if (listeners.size > 0) {
        const update: JobUpdate = {
          kind: updateKindOf(record),
          job: summarize(applied.job),
          transition: applied.transition,
        };
        for (const listener of listeners) {
          try {
            listener(update);
          } catch (error) {
            logger.warn({ err: error }, "update listener threw");
          }
        }
      }
      streams.publish(record, applied);
    },
  });

  // HTTP: one route table, read in order; the first pattern that matches a path decides.
  const ctx: StubContext = {
    store,
    jobs,
    sse,
    metrics: new Metrics(),
    tokens,
    admin: createAdminCheck(options.adminToken),
    now,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    journal: () => journal,
    assets: () => assets,
    ready,
  };
  // The S3 client loads on the first request for URLs, so a stub without a bucket never pays for the SDK.
  const checkpointStorage = options.checkpointStorage;
  let urls: Promise<CheckpointUrls> | undefined;
  const checkpointUrls =
    checkpointStorage === undefined ? undefined : () => (urls ??= createCheckpointUrls(checkpointStorage, now));
  const router = createRouter([
    ...callbackRoutes(ctx, {
      autoCreateJobs: options.autoCreateJobs ?? true,
      maxEventsPerJob: maxEvents,
      renewGraceMs: (options.renewGraceSeconds ?? Math.min(tokenTtl, 3600)) * 1000,
    }),
    ...jobRoutes(ctx),
    ...streamRoutes(ctx),
    ...checkpointUrlRoutes(ctx, checkpointUrls),
    // An API path no route above takes is the API's JSON 404 (any method), never a dashboard file lookup.
    route("*", "/v1/*", ({ method, pathname }) => {
      throw new HttpError(404, "not_found", `no route ${method} ${pathname}`);
    }),
    ...metricsRoutes(ctx),
    ...dashboardRoutes(ctx),
  ]);

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
    router(req, res)
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

  let server: Server | undefined;
  let url: string | undefined;
  let closed = false;
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
      streams.close();
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
      void urls?.then((u) => u.close()).catch(() => {});
    },
    createJob: jobs.createJob,
    async getJob(id: string) {
      await ready();
      const job = store.get(id);
      return job === undefined ? undefined : viewOf(job);
    },
    listJobs: jobs.listJobs,
    queueJob: jobs.queueJob,
    cancelJob: jobs.cancelJob,
    issueToken: jobs.issueToken,
    onUpdate(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export type { JobState, JobSummary, JobView };
