/**
 * `POST /v1/jobs/{id}/checkpoint-urls`: presigned URLs and the few bucket operations a URL cannot carry, for an
 * agent that holds no storage keys (CHECKPOINT_STORE=backend). The job's callback token authenticates it; every
 * key must lie below the job's prefix (storage/checkpoint-urls.ts). 501 when the stub has no bucket configured.
 * The token (signed by this stub for this job) is the authority: like a callback, it needs no job record first.
 */
import { CheckpointUrlRequest } from "../../../src/contract/index.ts";
import { HttpError, sendJson } from "../../../src/http/index.ts";
import { readJson } from "../http/body.ts";
import { route, type RequestContext, type Route } from "../http/router.ts";
import { validateBody } from "../http/validate.ts";
import type { CheckpointUrls } from "../storage/checkpoint-urls.ts";
import { requireCallbackToken } from "./callbacks.ts";
import type { StubContext } from "./context.ts";

export function checkpointUrlRoutes(ctx: StubContext, urls: (() => Promise<CheckpointUrls>) | undefined): Route[] {
  async function handle({ req, res, params }: RequestContext): Promise<void> {
    const jobId = params.id!;
    requireCallbackToken(ctx, req, jobId);
    if (urls === undefined)
      throw new HttpError(
        501,
        "checkpoint_urls_off",
        "this backend has no bucket for checkpoints (set BACKEND_S3_BUCKET and its keys on the backend)",
      );
    const body = validateBody(CheckpointUrlRequest, await readJson(req, ctx.maxBodyBytes), "checkpoint-urls");
    sendJson(res, 200, await (await urls()).handle(jobId, body));
  }
  return [route("POST", "/v1/jobs/:id/checkpoint-urls", handle)];
}
