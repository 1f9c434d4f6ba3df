/** What the route handlers share: built once by createBackendStub, handed to each group of routes. */
import type { AdminCheck } from "../auth/admin.ts";
import type { createTokenVerifier } from "../auth/tokens.ts";
import type { Asset } from "../http/static.ts";
import type { Metrics } from "../http/metrics.ts";
import type { SseHub } from "../http/sse.ts";
import type { JobService } from "../jobs/service.ts";
import type { JobStore } from "../jobs/store.ts";
import type { Journal } from "../journal/journal.ts";

export interface StubContext {
  store: JobStore;
  jobs: JobService;
  sse: SseHub;
  metrics: Metrics;
  tokens: ReturnType<typeof createTokenVerifier>;
  admin: AdminCheck;
  now: () => number;
  /** Largest accepted request body, bytes. */
  maxBodyBytes: number;
  /** The journal once replayed; undefined when jobs live in memory only. */
  journal: () => Journal | undefined;
  /** The dashboard's files, loaded by ready(). */
  assets: () => ReadonlyMap<string, Asset>;
  ready: () => Promise<void>;
}
