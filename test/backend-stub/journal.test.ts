/**
 * The journal on its own terms, in process: replay rebuilds jobs, a torn last line (a crash mid-write) is cut off
 * without losing what came before, and a damaged line in the middle stops the start with its line number.
 */
import { appendFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createBackendStub } from "../../backend-stub/src/index.ts";
import { callbackPath } from "../../src/contract/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { SECRET, call, eventBody, heartbeatBody, startStub } from "./helpers.ts";

let dataDir: string;
beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "backend-journal-"));
});
afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function seed(): Promise<{ id: string; token: string }> {
  const s = await startStub({ dataDir });
  const job = await s.stub.createJob({ id: "j1", name: "seeded" });
  await s.stub.queueJob("j1");
  for (let epoch = 1; epoch <= 3; epoch++) {
    const res = await call(s.url, "POST", callbackPath("j1", "heartbeat"), {
      token: job.token,
      body: heartbeatBody("j1", { epoch, metrics: { loss: 1 / epoch } }),
      headers: { "idempotency-key": `k${epoch}` },
    });
    expect(res.status).toBe(200);
  }
  await call(s.url, "POST", callbackPath("j1", "event"), {
    token: job.token,
    body: eventBody("j1", "warning", { message: "hot" }),
  });
  await s.stop();
  return job;
}

describe("journal", () => {
  it("replay rebuilds state, series, transitions and idempotency keys", async () => {
    const job = await seed();
    const lines = (await readFile(path.join(dataDir, "journal.jsonl"), "utf8")).trim().split("\n");
    expect(lines.map((l) => JSON.parse(l).type)).toEqual([
      "job_created",
      "job_queued",
      "report",
      "report",
      "report",
      "report",
    ]);
    const s = await startStub({ dataDir });
    try {
      const view = await s.stub.getJob("j1");
      expect(view).toMatchObject({ id: "j1", name: "seeded", state: "RUNNING", heartbeat_count: 3, event_count: 1 });
      expect(view?.metric_series.series.loss).toEqual([1, 0.5, 1 / 3]);
      expect(view?.transitions.map((t) => t.to)).toEqual(["PENDING", "QUEUED", "RUNNING"]);
      const retry = await call(s.url, "POST", callbackPath("j1", "heartbeat"), {
        token: job.token,
        body: heartbeatBody("j1", { epoch: 2, metrics: { loss: 0.5 } }),
        headers: { "idempotency-key": "k2" },
      });
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
      expect((await s.stub.getJob("j1"))?.heartbeat_count).toBe(3);
    } finally {
      await s.stop();
    }
  });

  it("replay keeps a multi-node job waiting for its other nodes", async () => {
    const first = await startStub({ dataDir });
    const job = await first.stub.createJob({ id: "mn" });
    const body = (rank: number) => ({
      ...heartbeatBody("mn"),
      status: "succeeded",
      exit_code: 0,
      checkpoints: [],
      duration_seconds: 1,
      node_rank: rank,
      nnodes: 2,
    });
    expect(
      (await call(first.url, "POST", callbackPath("mn", "done"), { token: job.token, body: body(1) })).body.state,
    ).toBe("RUNNING");
    await first.stop();
    const second = await startStub({ dataDir });
    try {
      expect(
        (await call(second.url, "POST", callbackPath("mn", "done"), { token: job.token, body: body(1) })).status,
      ).toBe(409);
      expect(
        (await call(second.url, "POST", callbackPath("mn", "done"), { token: job.token, body: body(0) })).body.state,
      ).toBe("SUCCEEDED");
    } finally {
      await second.stop();
    }
  });

  it("a torn last line is dropped and the journal stays appendable", async () => {
    const job = await seed();
    const file = path.join(dataDir, "journal.jsonl");
    await appendFile(file, '{"v":1,"type":"report","at":"2026-');
    const s = await startStub({ dataDir });
    try {
      expect((await s.stub.getJob("j1"))?.heartbeat_count).toBe(3);
      const res = await call(s.url, "POST", callbackPath("j1", "heartbeat"), {
        token: job.token,
        body: heartbeatBody("j1"),
      });
      expect(res.status).toBe(200);
    } finally {
      await s.stop();
    }
    for (const line of (await readFile(file, "utf8")).trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
    const again = await startStub({ dataDir });
    expect((await again.stub.getJob("j1"))?.heartbeat_count).toBe(4);
    await again.stop();
  });

  it("a damaged line before the end stops the start, naming the file and line", async () => {
    await seed();
    const file = path.join(dataDir, "journal.jsonl");
    const lines = (await readFile(file, "utf8")).split("\n");
    lines[2] = "{ this is not json";
    await writeFile(file, lines.join("\n"));
    const stub = createBackendStub({ secret: SECRET, dataDir });
    const error = await stub.listen(0).then(
      () => undefined,
      (e: unknown) => e,
    );
    await stub.close();
    expect(isAgentError(error, "JOURNAL_FAILED")).toBe(true);
    expect((error as Error).message).toContain(`${file} line 3`);
  });

  it("a record the state machine cannot apply stops the start", async () => {
    await seed();
    const file = path.join(dataDir, "journal.jsonl");
    await appendFile(
      file,
      `${JSON.stringify({ v: 1, type: "job_queued", at: new Date().toISOString(), job_id: "j1" })}\n`,
    );
    const stub = createBackendStub({ secret: SECRET, dataDir });
    await expect(stub.listen(0)).rejects.toThrow(/RUNNING to QUEUED/);
    await stub.close();
  });
});

describe("token lifetime", () => {
  it("a job outlives its token: renewing before expiry keeps it reporting", async () => {
    let clock = Date.parse("2026-01-01T00:00:00Z");
    const s = await startStub({ tokenTtlSeconds: 3600, now: () => clock });
    try {
      const job = await s.stub.createJob();
      clock += 50 * 60 * 1000; // 50 min: still valid, renew
      const renewed = await call(s.url, "POST", `/v1/jobs/${job.id}/token`, { token: job.token });
      expect(renewed.status).toBe(200);
      expect(Date.parse(renewed.body.expires_at)).toBe(clock + 3600 * 1000);
      clock += 20 * 60 * 1000; // 70 min: the first token has expired, the renewed one has not
      const old = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
        token: job.token,
        body: heartbeatBody(job.id),
      });
      expect(old.status).toBe(401);
      expect(old.body.error.code).toBe("token_expired");
      const fresh = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
        token: renewed.body.token,
        body: heartbeatBody(job.id),
      });
      expect(fresh.status).toBe(200);
      // A token that verified before and has expired since is refused too (the verified-token memory checks exp).
      clock += 3600 * 1000;
      const late = await call(s.url, "POST", callbackPath(job.id, "heartbeat"), {
        token: renewed.body.token,
        body: heartbeatBody(job.id),
      });
      expect(late.status).toBe(401);
    } finally {
      await s.stop();
    }
  });
});

describe("journal write failure", () => {
  it("rejects the report whose write failed and every later one, and says so", async () => {
    const { Journal } = await import("../../backend-stub/src/journal/journal.ts");
    let writes = 0;
    // A fake append handle: the one fault (ENOSPC on the 2nd write) a real file system cannot be made to give here.
    const { journal } = await Journal.open(dataDir, { debug() {}, info() {}, warn() {}, error() {} }, async () => ({
      write: (buffer: Buffer) => {
        writes += 1;
        if (writes === 2) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
        expect(buffer.length).toBeGreaterThan(0);
      },
      datasync: async () => {},
      close: async () => {},
    }));
    const record = {
      v: 1 as const,
      type: "job_created" as const,
      at: new Date().toISOString(),
      job_id: "x",
      via: "api" as const,
    };
    await expect(journal.append(record)).resolves.toBeUndefined();
    const failed = await journal.append({ ...record, job_id: "y" }).catch((e: unknown) => e);
    expect(isAgentError(failed, "JOURNAL_FAILED")).toBe(true);
    expect(journal.failed).toBe(true);
    await expect(journal.append({ ...record, job_id: "z" })).rejects.toThrow(/cannot write the journal/);
    expect(writes).toBe(2);
    await journal.close();
  });
});
