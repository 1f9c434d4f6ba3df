/** The report queue and the batch body and answer: no I/O, so no server. */
import { PassThrough } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import {
  batchBody,
  MAX_BATCH_BYTES,
  readBatchAnswer,
  ReportQueue,
  type NewReport,
  type ReportKind,
} from "../../src/callbacks/queue.ts";

function queue(maxPending = 100) {
  const stream = new PassThrough();
  let logs = "";
  stream.on("data", (c: Buffer) => (logs += c.toString()));
  return { q: new ReportQueue({ maxPending, log: pino({ level: "debug" }, stream) }), logs: () => logs };
}

let n = 0;
const report = (kind: ReportKind, body: Record<string, unknown> = {}, liveness?: true): NewReport => ({
  kind,
  body,
  key: `key-${++n}`,
  ...(liveness && { liveness }),
});

describe("report queue", () => {
  it("hands out the head in the order reports were queued, up to the batch size", () => {
    const { q } = queue();
    const reports = [1, 2, 3, 4, 5].map((epoch) => report("heartbeat", { epoch }));
    for (const r of reports) expect(q.push(r)).toBe(true);
    const keys = (rs: readonly { key: string }[]) => rs.map((r) => r.key);
    expect(keys(q.head(3))).toEqual(keys(reports.slice(0, 3)));
    q.settle(3);
    expect(keys(q.head(3))).toEqual(keys(reports.slice(3)));
    expect(q.head(1)).toEqual([{ kind: "heartbeat", key: reports[3]!.key, json: '{"epoch":4}' }]);
  });

  it("skips a liveness heartbeat while reports wait, and never counts one", () => {
    const { q } = queue();
    const alive = report("heartbeat", {}, true);
    expect(q.push(alive)).toBe(true); // nothing waits: it goes
    expect(q.push(report("heartbeat", {}, true))).toBe(false); // one waits: skipped
    q.delivered(alive);
    q.settle(1);
    const epoch = report("heartbeat", { epoch: 1 });
    q.push(epoch);
    expect(q.push(report("heartbeat", {}, true))).toBe(false);
    expect(q.head(10).map((r) => r.key)).toEqual([epoch.key]);
    expect(q.counts()).toEqual({
      queued: { heartbeat: 1, event: 0 },
      delivered: { heartbeat: 0, event: 0 },
      dropped: { heartbeat: 0, event: 0 },
    });
  });

  it("drops and counts reports beyond its bound, warning once", () => {
    const { q, logs } = queue(2);
    expect(q.push(report("event"))).toBe(true);
    expect(q.push(report("event"))).toBe(true);
    expect(q.push(report("event"))).toBe(false);
    expect(q.push(report("heartbeat"))).toBe(false);
    expect(q.length).toBe(2);
    expect(q.counts().queued).toEqual({ heartbeat: 1, event: 3 });
    expect(q.droppedReports()).toEqual({ heartbeat: 1, event: 1 });
    expect(logs().match(/callback queue full/g)).toHaveLength(1);
  });

  it("counts what is left at the deadline as dropped; nothing dropped gives no dropped_reports", () => {
    const { q } = queue();
    expect(q.droppedReports()).toBeUndefined();
    q.push(report("event"));
    q.push(report("heartbeat", {}, true)); // skipped: one waits
    q.push(report("heartbeat"));
    expect(q.dropAll("done deadline")).toBe(2);
    expect(q.length).toBe(0);
    expect(q.droppedReports()).toEqual({ heartbeat: 1, event: 1 });
  });

  it("serialises a report once, when queued: not again per head, never when skipped or dropped", () => {
    let calls = 0;
    const counted = () => ({
      toJSON: () => {
        calls += 1;
        return "v";
      },
    });
    const { q } = queue(2);
    q.push(report("event", { data: counted() }));
    q.push(report("heartbeat", { probe: counted() }, true)); // skipped: one waits
    q.push(report("event", { data: counted() }));
    q.push(report("event", { data: counted() })); // dropped: the queue holds 2
    expect(calls).toBe(2);
    for (let i = 0; i < 3; i++) batchBody("job-1", q.head(200));
    expect(q.head(1)[0]!.json).toBe('{"data":"v"}');
    expect(calls).toBe(2);
  });

  it("keeps a batch's body under MAX_BATCH_BYTES, and gives at least one report however large", () => {
    const { q } = queue();
    const big = "x".repeat(16_000);
    for (let i = 0; i < 40; i++) q.push(report("event", { type: `e${i}`, message: big }));
    const head = q.head(200);
    expect(head.length).toBeGreaterThan(1);
    expect(head.length).toBeLessThan(40);
    expect(batchBody("job-1", head).length).toBeLessThan(MAX_BATCH_BYTES);

    const { q: one } = queue();
    one.push(report("event", { message: "y".repeat(MAX_BATCH_BYTES) }));
    expect(one.head(200)).toHaveLength(1);
  });
});

describe("batch body and answer", () => {
  const made = [report("heartbeat", { epoch: 1 }), report("event", { type: "a" }), report("event", { type: "b" })];
  const { q } = queue();
  for (const r of made) q.push(r);
  const reports = q.head(10);

  it("carries each report with its own Idempotency-Key, in order", () => {
    expect(JSON.parse(batchBody("job-1", reports))).toEqual({
      job_id: "job-1",
      reports: made.map((r) => ({ kind: r.kind, idempotency_key: r.key, payload: r.body })),
    });
  });

  it("is the same text as serialising the whole batch in one pass, escapes included", () => {
    const odd = [
      report("event", {
        type: 'quote " and \\ backslash',
        message: "line\nbreak \u2028 \u00e9 \ud83d\ude00",
        data: { n: null },
      }),
      report("heartbeat", { epoch: 2, metrics: { loss: 1e-7 }, skipped: undefined }),
    ];
    const { q: oddQ } = queue();
    for (const r of odd) oddQ.push(r);
    const jobId = 'job "7" \\ é';
    expect(batchBody(jobId, oddQ.head(10))).toBe(
      JSON.stringify({
        job_id: jobId,
        reports: odd.map((r) => ({ kind: r.kind, idempotency_key: r.key, payload: r.body })),
      }),
    );
  });

  it.each([
    ["no per-report results: all accepted", { ok: true }, 3, 0, undefined],
    ["not JSON", undefined, 3, 0, undefined],
    [
      "one refused",
      {
        results: [{ status: 200 }, { status: 422, error: { code: "invalid_payload", message: "m" } }, { status: 201 }],
      },
      2,
      1,
      { status: 422, code: "invalid_payload" },
    ],
    ["results shorter than the batch", { results: [{ status: 200 }] }, 1, 2, { status: 0 }],
  ])("%s", (_, answer, accepted, refused, first) => {
    const read = readBatchAnswer(reports, answer);
    expect(read.accepted).toHaveLength(accepted);
    expect(read.refused).toHaveLength(refused);
    expect(read.firstRefusal).toEqual(first);
  });
});
