/**
 * The stub's route table over real HTTP: what no route takes is a 404, a method a path does not take is a 405
 * naming the ones it does, a malformed job id is a 400, and empty path segments do not matter.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { call, startStub, type Running } from "./helpers.ts";

let s: Running;
beforeAll(async () => {
  s = await startStub();
});
afterAll(async () => {
  await s.stop();
});

it.each([
  // method, path, status, error code (undefined: not a JSON error), Allow
  ["PUT", "/v1/jobs", 405, "method_not_allowed", "GET, POST"],
  ["DELETE", "/v1/jobs/abc", 405, "method_not_allowed", "GET"],
  ["GET", "/v1/jobs/abc/heartbeat", 405, "method_not_allowed", "POST"],
  ["GET", "/v1/jobs/abc/batch", 405, "method_not_allowed", "POST"],
  ["POST", "/v1/jobs/abc/stream", 405, "method_not_allowed", "GET"],
  ["POST", "/metrics", 405, "method_not_allowed", "GET, HEAD"],
  ["DELETE", "/", 405, "method_not_allowed", "GET, HEAD"],
  ["GET", "/v1/nope", 404, "not_found", null],
  ["GET", "/v1/jobs/abc/nope", 404, "not_found", null],
  ["POST", "/v1/jobs/abc/heartbeat/extra", 404, "not_found", null],
  ["GET", "/v1/jobs/abc", 404, "job_not_found", null],
  ["POST", "/v1/jobs/%ZZ/heartbeat", 400, "invalid_path", null],
  ["GET", "/no-such-file.txt", 404, "not_found", null],
  ["GET", "/v1/jobs/", 200, undefined, null],
  ["GET", "//v1//jobs", 200, undefined, null],
  ["HEAD", "/healthz", 200, undefined, null],
  ["GET", "/jobs/%ZZ", 200, undefined, null],
] as const)("%s %s -> %i %s", async (method, path, status, code, allow) => {
  const answer = await call(s.url, method, path);
  expect(answer.status).toBe(status);
  if (code !== undefined) expect(answer.body.error.code).toBe(code);
  expect(answer.headers.get("allow")).toBe(allow);
});
