import { describe, expect, it } from "vitest";
import { ReportRelay, MAX_REPORT_BYTES, MAX_PARSED_LINE_BYTES } from "../../src/process/relay.ts";
import type { Report } from "../../src/contract/report.ts";

function run(chunks: (string | Buffer)[], withLines = false) {
  const out: Buffer[] = [];
  const reports: Report[] = [];
  const malformed: string[] = [];
  const lines: string[] = [];
  const relay = new ReportRelay({
    write: (c) => {
      out.push(Buffer.from(c));
      return true;
    },
    onReport: (r) => reports.push(r),
    onMalformed: (p) => malformed.push(p),
    onLine: withLines ? (l) => lines.push(l) : undefined,
  });
  for (const c of chunks) relay.push(typeof c === "string" ? Buffer.from(c) : c);
  relay.end();
  return { out: Buffer.concat(out), text: Buffer.concat(out).toString("latin1"), reports, malformed, lines };
}

/** Every way of cutting `s` in two, plus byte-by-byte. */
function splits(s: string): string[][] {
  const all: string[][] = [[s], s.split("")];
  for (let i = 1; i < s.length; i++) all.push([s.slice(0, i), s.slice(i)]);
  return all;
}

describe("ReportRelay", () => {
  it("passes bytes through unchanged: invalid UTF-8, no final newline, a 3 MiB line", () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
    const weird = Buffer.from([0xff, 0xfe, 0x0a, 0xc3, 0x28, 0x0d, 0x0a, 0x00, 0x3a, 0x3a]);
    const input = Buffer.concat([weird, big, Buffer.from("\npartial")]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < input.length; i += 65_536) chunks.push(input.subarray(i, i + 65_536));
    const { out, reports } = run(chunks);
    expect(out.equals(input)).toBe(true);
    expect(reports).toEqual([]);
  });

  it.each(splits('a\n::trainer::{"epoch":3,"total_epochs":10,"metrics":{"loss":0.5}}\nb\n'))(
    "consumes a whole report line wherever the chunks are cut (%#)",
    (...chunks) => {
      const r = run(chunks);
      expect(r.text).toBe("a\nb\n");
      expect(r.reports).toEqual([{ kind: "epoch", epoch: 3, totalEpochs: 10, metrics: { loss: 0.5 } }]);
    },
  );

  it.each(splits('[w1] step 5::trainer::{"checkpoint":"/c/e1.pt","rank":0}[w2] step 6\n'))(
    "finds a report glued between two workers' text and relays the text (%#)",
    (...chunks) => {
      const r = run(chunks);
      expect(r.text).toBe("[w1] step 5[w2] step 6\n");
      expect(r.reports).toEqual([{ kind: "checkpoint", path: "/c/e1.pt", rank: 0 }]);
    },
  );

  it("handles two reports glued on one line, CRLF endings and braces inside strings", () => {
    const r = run(['::trainer::{"event":"warning","message":"a } { \\" b"}::trainer::{"epoch":1}\r\nnext\r\n']);
    expect(r.text).toBe("next\r\n");
    expect(r.reports).toEqual([
      { kind: "event", type: "warning", message: 'a } { " b' },
      { kind: "epoch", epoch: 1, metrics: {} },
    ]);
  });

  it.each([
    ["::trainer::not json\n", "no JSON object after the marker"],
    ['::trainer::{"epoch":1\n', "not closed on its line"],
    ['::trainer::{"epoch":"x"}\n', '"epoch" must be a non-negative integer'],
    ["::trainer::{nope}\n", "invalid JSON"],
    ['::trainer::{"hello":1}\n', 'needs "epoch", "checkpoint" or "event"'],
  ])("relays a malformed report %j unchanged with a warning", (line, problem) => {
    const r = run([line.slice(0, 7), line.slice(7)]);
    expect(r.text).toBe(line);
    expect(r.reports).toEqual([]);
    expect(r.malformed.join()).toContain(problem);
  });

  it("relays an unfinished report at end of stream unchanged", () => {
    const r = run(['x\n::trainer::{"epoch":', "1"]);
    expect(r.text).toBe('x\n::trainer::{"epoch":1');
    expect(r.malformed).toEqual(["stream ended inside a report"]);
  });

  it("relays a marker prefix at end of stream unchanged", () => {
    expect(run(["abc::trai"]).text).toBe("abc::trai");
  });

  it("gives up on a 'report' over the size limit and relays it", () => {
    const line = `::trainer::{"event":"x","message":"${"m".repeat(MAX_REPORT_BYTES)}"}\n`;
    const chunks: string[] = [];
    for (let i = 0; i < line.length; i += 65_536) chunks.push(line.slice(i, i + 65_536));
    const r = run(chunks);
    expect(r.text === line).toBe(true); // not toBe: a failure would print 1 MiB
    expect(r.reports).toEqual([]);
    expect(r.malformed).toEqual([`report longer than ${MAX_REPORT_BYTES} bytes`]);
  });

  it("hands plugins complete lines without reports, and the last unterminated one", () => {
    const r = run(['Epoch 3/10\nfoo::trainer::{"epoch":1}bar\n::trainer::{"epoch":2}\nlast'], true);
    expect(r.lines).toEqual(["Epoch 3/10", "foobar", "last"]);
  });

  it("hands plugins the END of an over-long line (a progress bar redrawn with \\r ends in its newest state)", () => {
    const redraw = (i: number) => `\r${String(i).padStart(5, "0")}/20000 [====] - loss: ${(1 / (i + 1)).toFixed(6)}`;
    const pieces: string[] = [];
    for (let i = 0; i < 20_000; i++) pieces.push(redraw(i));
    const bar = pieces.join("");
    expect(bar.length).toBeGreaterThan(MAX_PARSED_LINE_BYTES * 2);
    const chunks: string[] = [];
    for (let i = 0; i < bar.length; i += 4_000) chunks.push(bar.slice(i, i + 4_000));
    const r = run([...chunks, "\n"], true);
    expect(r.lines).toHaveLength(1);
    const line = r.lines[0] as string;
    expect(line.length).toBeLessThanOrEqual(MAX_PARSED_LINE_BYTES);
    expect(line.endsWith(redraw(19_999))).toBe(true);
    expect(r.out.toString()).toBe(`${bar}\n`); // the relay itself never cuts
  });

  it("holds a chunk's trailing marker prefix until told to flush it (a prompt is not kept back)", () => {
    const out: Buffer[] = [];
    const relay = new ReportRelay({
      write: (c) => out.push(Buffer.from(c)) > 0,
      onReport: () => {},
      onMalformed: () => {},
    });
    relay.push(Buffer.from("Password:"));
    expect(Buffer.concat(out).toString()).toBe("Password");
    expect(relay.holdsMarkerPrefix).toBe(true);
    relay.flushMarkerPrefix();
    expect(Buffer.concat(out).toString()).toBe("Password:");
    expect(relay.holdsMarkerPrefix).toBe(false);
  });

  it("reports backpressure from the destination", () => {
    const relay = new ReportRelay({ write: () => false, onReport: () => {}, onMalformed: () => {} });
    expect(relay.push(Buffer.from("x\n"))).toBe(false);
  });
});
