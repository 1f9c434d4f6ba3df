/** `GET /metrics` (Prometheus text, see http/metrics.ts) and `GET /healthz` (503 once the journal failed). */
import { sendJson } from "../../../src/http/index.ts";
import { page, type Route } from "../http/router.ts";
import type { StubContext } from "./context.ts";

export function metricsRoutes(ctx: StubContext): Route[] {
  const { store, sse } = ctx;
  return [
    ...page("/metrics", ({ res }) => {
      const journal = ctx.journal();
      const text = ctx.metrics.render({
        jobs: store.jobs.values(),
        journalSyncs: journal?.syncs ?? 0,
        journalFailed: journal?.failed === true,
        streams: sse.size,
        streamBufferedBytes: sse.bufferedBytes,
        streamsDropped: sse.dropped,
      });
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" });
      res.end(text);
    }),
    ...page("/healthz", ({ res }) => {
      const journal = ctx.journal();
      const ok = journal?.failed !== true;
      sendJson(res, ok ? 200 : 503, {
        ok,
        jobs: store.jobs.size,
        journal: journal === undefined ? "off" : ok ? "ok" : "failed",
        journal_syncs: journal?.syncs ?? 0,
      });
    }),
  ];
}
