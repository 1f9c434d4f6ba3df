/** Shared helpers of the backend stub tests: a real stub on 127.0.0.1:0, plain fetch as the client. */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createBackendStub, type BackendStub, type BackendStubOptions } from "../../backend-stub/src/index.ts";

export const SECRET = "test-secret-0123456789abcdef0123456789";

export interface Running {
  stub: BackendStub;
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** `host`: 127.0.0.1 unless a test's own network (a bridge to its namespaces) must reach it. */
export async function startStub(options: Partial<BackendStubOptions> = {}, host = "127.0.0.1"): Promise<Running> {
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "backend-stub-")));
  const stub = createBackendStub({ secret: SECRET, dataDir, ...options });
  const { url } = await stub.listen(0, host);
  return {
    stub,
    url,
    dataDir,
    async stop() {
      await stub.close();
      if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function heartbeatBody(jobId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { job_id: jobId, trace_id: "trace-1", metrics: {}, timestamp: new Date().toISOString(), ...extra };
}

export function eventBody(jobId: string, type: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { job_id: jobId, trace_id: "trace-1", type, timestamp: new Date().toISOString(), ...extra };
}

export function doneBody(
  jobId: string,
  status = "succeeded",
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    job_id: jobId,
    trace_id: "trace-1",
    status,
    exit_code: status === "succeeded" ? 0 : 1,
    checkpoints: [],
    duration_seconds: 1.5,
    timestamp: new Date().toISOString(),
    ...extra,
  };
}

export interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

export async function call(
  url: string,
  method: string,
  pathname: string,
  options: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  const res = await fetch(`${url}${pathname}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed, headers: res.headers };
}
