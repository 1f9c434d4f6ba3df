/** The admin token (`BACKEND_ADMIN_TOKEN`) that creating, queueing and cancelling jobs need when it is set. */
import type { IncomingMessage } from "node:http";
import { bearerCheck, HttpError } from "../../../src/http/index.ts";

export interface AdminCheck {
  /** Whether the request carries the admin token (always, when none is set). */
  ok(req: IncomingMessage): boolean;
  /** 401 with a Bearer challenge unless `ok`. */
  require(req: IncomingMessage): void;
}

export function createAdminCheck(adminToken: string | undefined): AdminCheck {
  const check = bearerCheck(adminToken);
  const ok = (req: IncomingMessage): boolean => check(req.headers.authorization);
  return {
    ok,
    require(req) {
      if (!ok(req)) {
        throw new HttpError(
          401,
          "admin_token_required",
          "this endpoint needs Authorization: Bearer <BACKEND_ADMIN_TOKEN>",
          { headers: { "www-authenticate": 'Bearer realm="backend-admin"' } },
        );
      }
    },
  };
}
