/**
 * The dashboard: `/` and `/jobs/{id}` are its page (the latter with the job rendered in, see http/job-page.ts),
 * every other GET is one of its files (http/static.ts) or a 404.
 */
import type { ServerResponse } from "node:http";
import { HttpError } from "../../../src/http/index.ts";
import { jobPage } from "../http/job-page.ts";
import { page, type RequestContext, type Route } from "../http/router.ts";
import type { Asset } from "../http/static.ts";
import { summarize } from "../jobs/model.ts";
import type { StubContext } from "./context.ts";

const INDEX = "/assets/index.html";

export function dashboardRoutes(ctx: StubContext): Route[] {
  const assetAt = (assetPath: string, pathname: string): Asset => {
    const asset = ctx.assets().get(assetPath);
    if (asset === undefined) throw new HttpError(404, "not_found", `no such page ${pathname}`);
    return asset;
  };

  async function jobView({ res, method, pathname, params }: RequestContext): Promise<void> {
    const asset = assetAt(INDEX, pathname);
    await ctx.ready();
    let id: string | undefined;
    try {
      id = decodeURIComponent(params.id!);
    } catch {
      id = undefined; // malformed %-escape: no job has that id; the page says so once its script asks
    }
    const job = id === undefined ? undefined : ctx.store.jobs.get(id);
    send(res, method, INDEX, asset, jobPage(asset.body, job === undefined ? undefined : summarize(job)));
  }

  return [
    ...page("/", ({ res, method, pathname }) => {
      const asset = assetAt(INDEX, pathname);
      send(res, method, INDEX, asset, asset.body);
    }),
    ...page("/jobs/:id", jobView, { raw: true }),
    ...page("/*", ({ res, method, pathname }) => {
      const asset = assetAt(pathname, pathname);
      send(res, method, pathname, asset, asset.body);
    }),
  ];
}

function send(res: ServerResponse, method: string, assetPath: string, asset: Asset, body: Buffer): void {
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
