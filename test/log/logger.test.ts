import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, resolveTrace } from "../../src/log/index.ts";
import { Secret } from "../../src/config/index.ts";

describe("createLogger", () => {
  it("writes JSON lines with trace_id, job_id, node_rank and redacts secrets", async () => {
    const stream = new PassThrough();
    let text = "";
    stream.on("data", (c: Buffer) => (text += c.toString()));
    const log = await createLogger({ traceId: "t-1", jobId: "job-9", nodeRank: 1, destination: stream });
    log.info(
      {
        headers: { authorization: "Bearer abc.def.ghi" },
        token: "tok-123",
        cfg: { secret: "s3cr3t" },
        key: new Secret("k-xyz"),
      },
      "hello",
    );
    const line = JSON.parse(text.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: "info", msg: "hello", trace_id: "t-1", job_id: "job-9", node_rank: 1 });
    for (const s of ["abc.def.ghi", "tok-123", "s3cr3t", "k-xyz"]) expect(text).not.toContain(s);
  });
});

describe("resolveTrace", () => {
  const rnd = (n: number) => Buffer.alloc(n, 0xab);

  it("generates a trace id and a W3C traceparent when none is given", () => {
    const t = resolveTrace({}, rnd);
    expect(t.traceId).toBe("ab".repeat(16));
    expect(t.traceparent).toBe(`00-${"ab".repeat(16)}-${"ab".repeat(8)}-01`);
  });

  it("continues a given TRACEPARENT: same trace id and flags, a new span id", () => {
    const t = resolveTrace({ traceparent: `00-${"1".repeat(32)}-${"2".repeat(16)}-00` }, rnd);
    expect(t).toEqual({ traceId: "1".repeat(32), traceparent: `00-${"1".repeat(32)}-${"ab".repeat(8)}-00` });
  });

  it("keeps a free-form TRACE_ID and derives a stable W3C trace id from it", () => {
    const a = resolveTrace({ traceId: "req-42" }, rnd);
    const b = resolveTrace({ traceId: "req-42" }, rnd);
    expect(a.traceId).toBe("req-42");
    expect(a.traceparent).toMatch(/^00-[\da-f]{32}-[\da-f]{16}-01$/);
    expect(a.traceparent).toBe(b.traceparent);
  });
});
