/** The admin token (`BACKEND_ADMIN_TOKEN`) that creating, queueing and cancelling jobs need when it is set. */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { HttpError } from "../../../src/http/index.ts";
import { bearerToken } from "./tokens.ts";

export interface AdminCheck {
  /** Whether the request carries the admin token (always, when none is set). */
  ok(req: IncomingMessage): boolean;
  /** 401 with a Bearer challenge unless `ok`. */
  require(req: IncomingMessage): void;
}

export function createAdminCheck(adminToken: string | undefined): AdminCheck {
  // Digests compare in constant time whatever the lengths.
  const expected = adminToken === undefined || adminToken === "" ? undefined : digest(adminToken);
  const ok = (req: IncomingMessage): boolean => {
    if (expected === undefined) return true;
    const token = bearerToken(req.headers.authorization);
    return token !== undefined && token !== "" && timingSafeEqual(digest(token), expected);
  };
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

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
