/**
 * The fault suite's parts: a real `trainer-agent run` process with the gated Python child, the backend stub
 * (in-process, or as its own process for the kill row), waits on conditions (files, the stub's state, what the
 * proxy saw), the per-row checks and the table printed at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { signalGroup } from "../../src/process/group.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const CHILD = fileURLToPath(new URL("../fixtures/children/fault_child.py", import.meta.url));
const STUB_MAIN = resolve("backend-stub/src/main.ts");

/** Polls `check` until it holds; the timeout only turns a hang into a failure with a message. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Stats {
  queued: { heartbeat: number; event: number };
  delivered: { heartbeat: number; event: number };
  dropped: { heartbeat: number; event: number };
  requests: number;
}

export interface Agent {
  process: ChildProcess;
  exited: Promise<number | null>;
  stderr(): string;
  /** The agent's "callback delivery" line (undefined when it was killed before done). */
  stats(): Stats | undefined;
  kill(): void;
}

/** Per-row scratch space: a gate folder, a checkpoint folder per pod, a storage root shared by the pods. */
export async function scratch(): Promise<{
  dir: string;
  gate: string;
  open(...names: string[]): Promise<void>;
  did(epoch: number): boolean;
  cleanup(): Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), "faults-"));
  const gate = join(dir, "gate");
  await mkdir(gate);
  return {
    dir,
    gate,
    async open(...names) {
      for (const n of names) await writeFile(join(gate, n), "");
    },
    did: (epoch) => existsSync(join(gate, `did-${epoch}`)),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export function startAgent(env: Record<string, string>): Agent {
  const child = spawn(process.execPath, [BIN, "run", "--", "/usr/bin/python3", CHILD], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HEARTBEAT_INTERVAL_SECONDS: "3600",
      DONE_DEADLINE_SECONDS: "40",
      CALLBACK_TIMEOUT_SECONDS: "1",
      CALLBACK_RETRY_MAX_SECONDS: "0.5",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true, // its own process group: a SIGKILL takes the child with it, as a pod's end would
  });
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  return {
    process: child,
    exited,
    stderr: () => err,
    stats() {
      for (const line of err.split("\n")) {
        if (!line.includes('"callback delivery"')) continue;
        return JSON.parse(line) as Stats;
      }
      return undefined;
    },
    kill() {
      signalGroup(child.pid!, "SIGKILL");
    },
  };
}

/** The stub as its own process (`node backend-stub/src/main.ts`) on a journal directory, for the kill row. */
export async function startStubProcess(
  dataDir: string,
  secret: string,
): Promise<{ url: string; kill(): Promise<void> }> {
  const child = spawn(process.execPath, [STUB_MAIN], {
    env: {
      PATH: process.env.PATH ?? "",
      BACKEND_PORT: "0",
      BACKEND_DATA_DIR: dataDir,
      CALLBACK_JWT_SECRET: secret,
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  let out = "";
  const url = await new Promise<string>((resolveUrl, reject) => {
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m !== null) resolveUrl(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`backend stub exited with ${code}: ${out}`)));
  });
  return {
    url,
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

export interface JobView {
  state: string;
  heartbeats: { epoch?: number; liveness?: boolean; attempt?: number }[];
  events: { type: string; attempt?: number; message?: string }[];
  done: {
    status: string;
    exit_code: number;
    attempt?: number;
    reason?: string;
    log_tail?: string;
    dropped_reports?: Record<string, number>;
  } | null;
  attempts: { attempt: number; status: string }[];
}

export async function fetchJob(url: string, id: string): Promise<JobView> {
  const res = await fetch(`${url}/v1/jobs/${encodeURIComponent(id)}`);
  return (await res.json()) as JobView;
}

export interface Row {
  fault: string;
  sent: number;
  received: number;
  lost: number;
  requests: number;
  state: string;
}

export const table: Row[] = [];

/**
 * The checks every row makes: each epoch 1..N exactly once, every report the agents queued received once (nothing
 * lost, nothing counted as dropped), the final state. `extraSent` counts reports of a killed agent (no stats line),
 * which the row itself waited to see at the stub before the kill.
 */
export function check(
  fault: string,
  view: JobView,
  agents: Agent[],
  expected: { epochs: number; state: string; extraSent?: number },
): void {
  const epochs = view.heartbeats.filter((h) => h.liveness !== true).map((h) => h.epoch);
  expect(epochs).toEqual(Array.from({ length: expected.epochs }, (_, i) => i + 1));
  const stats = agents.map((a) => a.stats()).filter((s): s is Stats => s !== undefined);
  const sent = stats.reduce((n, s) => n + s.queued.heartbeat + s.queued.event, 0) + (expected.extraSent ?? 0);
  const received = epochs.length + view.events.length;
  for (const s of stats) expect(s.dropped).toEqual({ heartbeat: 0, event: 0 });
  expect(view.done?.dropped_reports).toBeUndefined();
  // Every event once: the same event twice from one attempt would be a duplicate the dedup missed.
  const keys = view.events.map((e) => `${e.attempt ?? 0}:${e.type}:${e.message ?? ""}`);
  expect(new Set(keys).size).toBe(keys.length);
  expect(received).toBe(sent);
  expect(view.state).toBe(expected.state);
  table.push({
    fault,
    sent,
    received,
    lost: sent - received,
    requests: stats.reduce((n, s) => n + s.requests, 0),
    state: view.state,
  });
}

export function printTable(): void {
  const head = ["fault", "reports sent", "received", "lost", "requests", "final state"];
  const rows = table.map((r) => [r.fault, r.sent, r.received, r.lost, r.requests, r.state].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  const out = [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)];
  process.stdout.write(`\n${out.join("\n")}\n`);
}
