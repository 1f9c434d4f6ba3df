import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { groupRunning, processStat } from "../../src/process/group.ts";
import { supervise, type SuperviseOptions } from "../../src/process/supervise.ts";
import type { Report } from "../../src/contract/report.ts";

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/children/${name}`, import.meta.url));

function sink() {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  return { stream, bytes: () => Buffer.concat(chunks), text: () => Buffer.concat(chunks).toString("utf8") };
}

function start(argv: string[], extra: Partial<SuperviseOptions> = {}) {
  const out = sink();
  const err = sink();
  const logs = sink();
  const reports: Report[] = [];
  const sup = supervise({
    argv,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    stdout: out.stream,
    stderr: err.stream,
    logger: pino({ level: "debug" }, logs.stream),
    onReport: (r) => reports.push(r),
    tailLines: 50,
    graceSeconds: 5,
    ...extra,
  });
  return { sup, out, err, logs, reports };
}

/** Ends a destination the supervisor leaves open (it is the agent's stdout) and waits until it wrote all. */
function finished(w: Writable): Promise<void> {
  return new Promise((resolve) => w.end(resolve));
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "supervise-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
let n = 0;
async function file(bytes: Buffer): Promise<string> {
  const p = join(tmp, `f${n++}`);
  await writeFile(p, bytes);
  return p;
}

describe("supervise (real child processes)", () => {
  it("relays both streams byte-exactly: invalid UTF-8, a 2 MiB line, a partial last line; takes reports out", async () => {
    const stdout = Buffer.concat([
      Buffer.from("hello\n"),
      Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x0a]),
      Buffer.alloc(2 * 1024 * 1024, 0x78),
      Buffer.from('\n::trainer::{"epoch":1,"total_epochs":2,"metrics":{"loss":1.5}}\nno newline at end'),
    ]);
    const stderr = Buffer.from('warn [w1]::trainer::{"checkpoint":"/ck/1.pt","rank":0} done\n');
    const { sup, out, err, reports } = start([
      process.execPath,
      fixture("emit.mjs"),
      await file(stdout),
      await file(stderr),
      "0",
    ]);
    const res = await sup.result;
    expect(res.exitCode).toBe(0);
    expect(res.reason).toBeUndefined();
    const expected = Buffer.concat([
      stdout.subarray(0, stdout.indexOf("::trainer::")),
      Buffer.from("no newline at end"),
    ]);
    expect(out.bytes().equals(expected)).toBe(true);
    expect(err.text()).toBe("warn [w1] done\n");
    // The two pipes race each other: the order between streams is not defined.
    expect(reports).toHaveLength(2);
    expect(reports).toEqual(
      expect.arrayContaining([
        { kind: "epoch", epoch: 1, totalEpochs: 2, metrics: { loss: 1.5 } },
        { kind: "checkpoint", path: "/ck/1.pt", rank: 0 },
      ]),
    );
    expect(res.logTail.at(-1)).toBe("no newline at end");
  });

  it("respects a slow destination's backpressure and loses nothing", async () => {
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251 === 0 ? 0x0a : 0x41 + (i % 26);
    const got: Buffer[] = [];
    let maxPending = 0;
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk);
        maxPending = Math.max(maxPending, slow.writableLength);
        setImmediate(cb);
      },
    });
    const pauses: boolean[] = [];
    const { sup } = start([process.execPath, fixture("emit.mjs"), await file(payload)], {
      stdout: slow,
      onRelayPaused: (paused) => pauses.push(paused),
    });
    const res = await sup.result;
    expect(res.exitCode).toBe(0);
    // Every pause and resume was told, alternating (the watchdog holds its clock in between); the last pause may
    // end after the result, when the slow writable finishes its queue.
    expect(pauses.slice(0, 2)).toEqual([true, false]);
    expect(pauses).toEqual(pauses.map((_, i) => i % 2 === 0));
    // The result comes once the relay has handed everything over; the slow writable may still hold the last
    // chunks in its own queue (how many depends on how far behind it is), so the check waits for it to finish.
    await finished(slow);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    // The relay paused the child instead of queueing megabytes in memory.
    expect(maxPending).toBeLessThan(512 * 1024);
  });

  it("keeps relaying what a child left in the pipe after it exited, however slow the reader", async () => {
    const payload = Buffer.alloc(512 * 1024, 0x62);
    const got: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        got.push(chunk);
        setTimeout(cb, 300); // the last ~128 KiB in the pipe take longer than pipeIdleMs after the exit
      },
    });
    const { sup } = start([process.execPath, fixture("emit.mjs"), await file(payload)], {
      stdout: slow,
      pipeIdleMs: 200,
    });
    const res = await sup.result;
    expect(res.exitCode).toBe(0);
    // What the relay handed over may still sit in the writable's own queue; none of it may have been dropped.
    await finished(slow);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });

  it("returns the child's exit code and a traceback's last line as the reason", async () => {
    const { sup } = start([fixture("traceback.sh")]);
    const res = await sup.result;
    expect(res).toMatchObject({ exitCode: 1, signal: null, reason: "ValueError: learning rate must be positive" });
    expect(res.logTail).toContain("epoch 1");
  });

  it("survives a child that closes stdout early and keeps writing stderr", async () => {
    const { sup, out, err } = start([fixture("close-stdout.sh")]);
    const res = await sup.result;
    expect(res.exitCode).toBe(3);
    expect(out.text()).toBe("last stdout line\n");
    expect(err.text()).toBe("still alive on stderr\n");
  });

  it("shows a prompt that ends in ':' while the child waits, not only when it writes more", async () => {
    const { sup, out } = start(["sh", "-c", "printf 'Password:'; sleep 5"]);
    await waitFor(() => out.text() === "Password:", 4_000);
    sup.terminate("SIGTERM", "test done");
    await sup.result;
  });

  it("reports 128+signal for a child killed by a signal", async () => {
    const { sup } = start(["sh", "-c", "kill -SEGV $$"]);
    const res = await sup.result;
    expect(res).toMatchObject({ exitCode: 139, signal: "SIGSEGV", reason: "terminated by SIGSEGV" });
  });

  it("reads exit 137 as killed (out of memory?)", async () => {
    const res = await start(["sh", "-c", "exit 137"]).sup.result;
    expect(res).toMatchObject({ exitCode: 137, reason: "killed (out of memory?)" });
  });

  it("answers 127 and names a command that does not exist", async () => {
    const res = await start(["definitely-not-a-command-xyz"]).sup.result;
    expect(res).toMatchObject({
      exitCode: 127,
      spawnFailed: true,
      reason: "command not found: definitely-not-a-command-xyz",
    });
  });

  it("answers 126 for a file that is not executable", async () => {
    const path = await file(Buffer.from("#!/bin/sh\necho hi\n"));
    const res = await start([path]).sup.result;
    expect(res).toMatchObject({ exitCode: 126, spawnFailed: true });
    expect(res.reason).toMatch(/^permission denied: /);
  });

  it("never goes through a shell: metacharacters reach the child as plain arguments", async () => {
    const { sup, out } = start(["printf", "%s|", "$(echo no)", "a;b", "*"]);
    await sup.result;
    expect(out.text()).toBe("$(echo no)|a;b|*|");
  });

  it("forwards SIGTERM to the group; a child that traps it exits cleanly within the grace period", async () => {
    const { sup, out } = start([fixture("trap-term.sh")], { graceSeconds: 20 });
    await waitFor(() => out.text().includes("ready"));
    sup.terminate("SIGTERM", "SIGTERM received");
    const res = await sup.result;
    expect(res.exitCode).toBe(0);
    expect(res.terminationReason).toBe("SIGTERM received");
    expect(out.text()).toContain("got TERM, saving");
    expect(res.durationSeconds).toBeLessThan(20);
  });

  it("SIGKILLs the group after the grace period when the child ignores SIGTERM; keeps the first reason", async () => {
    const { sup, out, logs } = start([fixture("ignore-term.sh")], { graceSeconds: 0.3 });
    await waitFor(() => out.text().includes("ready"));
    sup.terminate("SIGTERM", "SIGTERM received");
    sup.terminate("SIGTERM", "second reason");
    const res = await sup.result;
    expect(res).toMatchObject({ exitCode: 137, signal: "SIGKILL", terminationReason: "SIGTERM received" });
    expect(res.reason).toBe("killed: did not exit within the 0.3 s grace period after SIGTERM received");
    expect(logs.text()).toContain("did not exit within the grace period");
  });

  it.each([
    ["ends a grandchild the child left running in its group (SIGTERM)", "0", "SIGTERM to the group"],
    ["SIGKILLs a leftover grandchild that ignores SIGTERM after the grace period", "1", "outlived the grace period"],
  ])("%s", async (_name, ignoreTerm, logged) => {
    const { sup, out, logs } = start([fixture("leave-sleeper.sh")], {
      graceSeconds: 0.3,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", IGNORE_TERM: ignoreTerm },
    });
    const res = await sup.result;
    const sleeper = Number(/sleeper (\d+)/.exec(out.text())?.[1]);
    expect(sleeper).toBeGreaterThan(0);
    try {
      expect(res.exitCode).toBe(0);
      expect(res.reason).toBeUndefined();
      // Ended by the time the result is known: nothing of the job outlives the agent. (Gone, or a zombie where
      // PID 1 does not reap orphans, as on this test machine.)
      expect((await processStat(sleeper))?.state ?? "gone").toMatch(/^(gone|Z)$/);
      expect(await groupRunning(sup.pid as number)).toBe(false);
      expect(logs.text()).toContain(logged);
    } finally {
      try {
        process.kill(sleeper, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}
