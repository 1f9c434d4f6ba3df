/**
 * `npm run bench -- backend`: 100 concurrent jobs posting heartbeats to the backend stub over real HTTP.
 *
 * The stub runs as its own process (`node backend-stub/src/main.ts`, as `npm run backend` runs it) so the load
 * generator never shares its event loop; the load comes from undici keep-alive connections, one per job, every
 * report with a JWT and an Idempotency-Key, as the agent sends them. Three runs, side by side:
 * - open loop at the target rate (2,000 reports/s = 100 jobs x 20/s, each job on its own schedule whether or not
 *   its last answer came back); latency counts from when a report was due, so queueing is not hidden;
 * - the same rate in batches of 10 (POST /v1/jobs/{id}/batch, what the agent sends when reports wait);
 * - closed loop (each job sends the next report when the last is answered): the saturation rate, journal on and off,
 *   and with batches of 10;
 * - the agent's own CPU per 10,000 epoch reports (BENCH_AGENT_REPORTS), a python child printing them flat out.
 * Journal on = every answer waits for fdatasync (group commit).
 *
 * Environment: BENCH_BACKEND_SECONDS (measured seconds per scenario, default 10), BENCH_BACKEND_JOBS (default 100).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, open, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Pool } from "undici";

const MAIN = path.resolve(import.meta.dirname, "../backend-stub/src/main.ts");
const SECRET = "bench-secret-0123456789abcdef0123456789abcdef";
const TARGET_RATE = 2000;
const TARGET_P99_MS = 50;

interface Result {
  scenario: string;
  reports: number;
  seconds: number;
  rate: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  errors: number;
  syncs: number | undefined;
  /** Latency inside the stub (its /metrics histogram over the window), interpolated within buckets. */
  serverP50: number;
  serverP99: number;
}

async function startStub(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? "", BACKEND_PORT: "0", LOG_LEVEL: "info", CALLBACK_JWT_SECRET: SECRET, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`backend stub exited with ${code} before listening`)));
  });
  return { child, url };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** `batch`: reports per request (POST /v1/jobs/{id}/batch, as the agent sends what waits); 1 = one per report. */
type Mode = { kind: "closed"; batch?: number } | { kind: "open"; perJobRate: number; batch?: number };

async function scenario(
  name: string,
  env: Record<string, string>,
  mode: Mode,
  jobs: number,
  seconds: number,
): Promise<Result> {
  const { child, url } = await startStub(env);
  const pool = new Pool(url, { connections: jobs, pipelining: 1, keepAliveTimeout: 60_000 });
  try {
    const created: Array<{ id: string; token: string }> = [];
    for (let i = 0; i < jobs; i++) {
      const res = await pool.request({
        method: "POST",
        path: "/v1/jobs",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: `bench-${i}` }),
      });
      created.push((await res.body.json()) as { id: string; token: string });
    }

    let measuring = false;
    let stop = false;
    const latencies: number[] = [];
    let errors = 0;
    const batch = mode.batch ?? 1;
    const heartbeat = (job: { id: string }, epoch: number) => ({
      job_id: job.id,
      trace_id: "bench",
      epoch,
      total_epochs: 1_000_000,
      metrics: { loss: 1 / epoch, acc: 1 - 1 / (epoch + 1) },
      timestamp: new Date().toISOString(),
    });
    /**
     * One request: a heartbeat, or a batch of `batch` of them. Latency counts from `due` (open loop: when it was
     * scheduled, so queueing counts too); a batch's reports all count, each with the request's latency.
     */
    const send = async (job: { id: string; token: string }, epoch: number, due: number): Promise<void> => {
      const single = batch === 1;
      const body = JSON.stringify(
        single
          ? heartbeat(job, epoch)
          : {
              job_id: job.id,
              reports: Array.from({ length: batch }, (_, i) => ({
                kind: "heartbeat",
                idempotency_key: randomUUID(),
                payload: heartbeat(job, (epoch - 1) * batch + i + 1),
              })),
            },
      );
      try {
        const res = await pool.request({
          method: "POST",
          path: `/v1/jobs/${job.id}/${single ? "heartbeat" : "batch"}`,
          headers: {
            authorization: `Bearer ${job.token}`,
            "content-type": "application/json",
            "idempotency-key": randomUUID(),
          },
          body,
        });
        await res.body.dump();
        if (res.statusCode !== 200) errors += 1;
        else if (measuring) for (let i = 0; i < batch; i++) latencies.push(performance.now() - due);
      } catch {
        errors += 1;
      }
    };
    const worker = async (job: { id: string; token: string }): Promise<void> => {
      let epoch = 0;
      if (mode.kind === "closed") {
        while (!stop) await send(job, ++epoch, performance.now());
        return;
      }
      const interval = (1000 * batch) / mode.perJobRate;
      let next = performance.now() + Math.random() * interval;
      const inflight = new Set<Promise<void>>();
      while (!stop) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const p: Promise<void> = send(job, ++epoch, next).finally(() => inflight.delete(p));
        inflight.add(p);
        next += interval;
      }
      await Promise.all(inflight);
    };
    const running = created.map(worker);
    await new Promise((r) => setTimeout(r, 1500)); // warm-up: JIT, connections, page cache
    measuring = true;
    const t0 = performance.now();
    const atStart = await scrape(pool);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    measuring = false;
    const elapsed = (performance.now() - t0) / 1000;
    const atEnd = await scrape(pool);
    stop = true;
    await Promise.all(running);
    const sorted = Float64Array.from(latencies).sort();
    return {
      scenario: name,
      reports: sorted.length,
      seconds: elapsed,
      rate: sorted.length / elapsed,
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? NaN,
      errors,
      syncs: env.BACKEND_JOURNAL === "off" ? undefined : atEnd.syncs - atStart.syncs,
      serverP50: histogramQuantile(0.5, atStart.buckets, atEnd.buckets),
      serverP99: histogramQuantile(0.99, atStart.buckets, atEnd.buckets),
    };
  } finally {
    await pool.close();
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
}

/** The stub's /metrics: journal syncs and the cumulative callback latency histogram ([upper bound ms, count]). */
async function scrape(pool: Pool): Promise<{ syncs: number; buckets: Array<[number, number]> }> {
  const res = await pool.request({ method: "GET", path: "/metrics" });
  const text = await res.body.text();
  const syncs = Number(/^backend_journal_syncs_total (\S+)$/m.exec(text)?.[1] ?? 0);
  const buckets: Array<[number, number]> = [];
  for (const m of text.matchAll(/^backend_callback_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) {
    buckets.push([m[1] === "+Inf" ? Infinity : Number(m[1]) * 1000, Number(m[2])]);
  }
  return { syncs, buckets };
}

/** Prometheus-style histogram_quantile over the difference of two scrapes, in ms. */
function histogramQuantile(q: number, before: Array<[number, number]>, after: Array<[number, number]>): number {
  const counts = after.map(([le, n], i) => [le, n - (before[i]?.[1] ?? 0)] as const);
  const total = counts.at(-1)?.[1] ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, cumulative] of counts) {
    if (cumulative >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, cumulative - prevCount);
    }
    prevLe = le;
    prevCount = cumulative;
  }
  return prevLe;
}

/** The disk's floor: sequential 200-byte appends, each followed by fdatasync, in the journal's directory. */
async function fsyncFloor(dir: string, n = 300): Promise<{ p50: number; p99: number; max: number }> {
  const handle = await open(path.join(dir, "fsync-probe"), "a");
  const times = new Float64Array(n);
  const line = Buffer.from(`${"x".repeat(199)}\n`);
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await handle.write(line);
      await handle.datasync();
      times[i] = performance.now() - t0;
    }
  } finally {
    await handle.close();
  }
  times.sort();
  return { p50: percentile(times, 50), p99: percentile(times, 99), max: times[n - 1]! };
}

export default async function bench(): Promise<void> {
  const seconds = Number(process.env.BENCH_BACKEND_SECONDS ?? 10);
  const jobs = Number(process.env.BENCH_BACKEND_JOBS ?? 100);
  const loadBefore = os.loadavg()[0]!;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "bench-backend-"));
  const results: Result[] = [];
  let floor: { p50: number; p99: number; max: number } | undefined;
  try {
    floor = await fsyncFloor(dataDir);
    const on = { BACKEND_DATA_DIR: dataDir };
    const perJob = TARGET_RATE / jobs;
    const open: Mode = { kind: "open", perJobRate: perJob };
    results.push(await scenario(`journal on, offered ${TARGET_RATE}/s (${perJob}/s per job)`, on, open, jobs, seconds));
    results.push(await scenario("journal on, saturated (closed loop)", on, { kind: "closed" }, jobs, seconds));
    const batched: Mode = { kind: "open", perJobRate: perJob, batch: 10 };
    results.push(await scenario(`journal on, offered ${TARGET_RATE}/s in batches of 10`, on, batched, jobs, seconds));
    results.push(
      await scenario("journal on, batches of 10, saturated", on, { kind: "closed", batch: 10 }, jobs, seconds),
    );
    results.push(
      await scenario(
        "journal off, saturated (closed loop)",
        { BACKEND_JOURNAL: "off" },
        { kind: "closed" },
        jobs,
        seconds,
      ),
    );
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
  console.log(
    `backend stub: ${jobs} concurrent jobs posting heartbeats over HTTP keep-alive (undici), ${seconds}s per run`,
  );
  console.log(
    `machine: ${os.cpus().length} CPUs, load average ${loadBefore.toFixed(1)} before the runs (shared machine)`,
  );
  console.log(
    `target: >= ${TARGET_RATE} reports/s sustained with p99 < ${TARGET_P99_MS} ms, journal on (fdatasync before each answer)\n`,
  );
  const rows = results.map((r) => ({
    scenario: r.scenario,
    "reports/s": Math.round(r.rate),
    "p50 ms": r.p50.toFixed(1),
    "p99 ms": r.p99.toFixed(1),
    "max ms": r.max.toFixed(1),
    "stub p50 ms": r.serverP50.toFixed(1),
    "stub p99 ms": r.serverP99.toFixed(1),
    reports: r.reports,
    errors: r.errors,
    "reports/fsync": r.syncs === undefined || r.syncs === 0 ? "-" : (r.reports / r.syncs).toFixed(1),
  }));
  console.table(rows);
  const offered = results[0]!;
  const met = offered.rate >= TARGET_RATE * 0.98 && offered.p99 < TARGET_P99_MS && offered.errors === 0;
  const stubMet = offered.rate >= TARGET_RATE * 0.98 && offered.serverP99 < TARGET_P99_MS && offered.errors === 0;
  if (floor !== undefined)
    console.log(
      `disk floor (one append + fdatasync at a time, same directory): p50 ${floor.p50.toFixed(1)} ms, ` +
        `p99 ${floor.p99.toFixed(1)} ms, max ${floor.max.toFixed(1)} ms`,
    );
  console.log("p50/p99/max: seen by the load generator (open loop: from when a report was due); stub p50/p99: inside");
  console.log("the stub (headers parsed -> answer written, fsync included), from its /metrics histogram.");
  console.log(
    `offered ${TARGET_RATE}/s: sustained ${Math.round(offered.rate)}/s; p99 ${offered.p99.toFixed(1)} ms end to end ` +
      `(target ${met ? "MET" : "NOT MET"}), ${offered.serverP99.toFixed(1)} ms inside the stub (target ${stubMet ? "MET" : "NOT MET"})`,
  );
  console.log(
    `saturation: ${Math.round(results[1]!.rate)}/s with the journal, ${Math.round(results[4]!.rate)}/s without; ` +
      `batches of 10: ${Math.round(results[3]!.rate)}/s with the journal (p99 ${results[2]!.p99.toFixed(1)} ms at ${TARGET_RATE}/s)`,
  );
  const agent = await agentCpu(Number(process.env.BENCH_AGENT_REPORTS ?? 10_000));
  console.log(
    `agent: ${agent.reports} epoch reports from a python child to the stub (journal on) in ${agent.wallSeconds.toFixed(1)} s: ` +
      `agent CPU for the reports ${agent.agentCpuSeconds.toFixed(2)} s (${((agent.agentCpuSeconds / agent.reports) * 10_000).toFixed(2)} s per 10,000) ` +
      `on top of ${agent.startupCpuSeconds.toFixed(2)} s for start-up and done, ` +
      `${agent.requests} requests, ${agent.delivered} delivered, ${agent.dropped} dropped`,
  );
}

/**
 * The agent's own CPU for N epoch reports: `trainer-agent run` with a python child printing N reports as fast as it
 * can, against the stub; the shell's `times` gives the CPU of its waited children (agent + child). The child alone
 * is measured the same way and subtracted, and so is an agent run with no reports (start-up and `done`).
 */
async function agentCpu(reports: number): Promise<{
  reports: number;
  wallSeconds: number;
  agentCpuSeconds: number;
  startupCpuSeconds: number;
  requests: number;
  delivered: number;
  dropped: number;
}> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "bench-agent-"));
  const { child: stub, url } = await startStub({ BACKEND_DATA_DIR: dataDir });
  try {
    const res = await fetch(`${url}/v1/jobs`, {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    const job = (await res.json()) as { id: string; token: string };
    const py = (n: number) =>
      "import json,sys\n" +
      `n=${n}\n` +
      'for e in range(1,n+1): sys.stdout.write("::trainer::"+json.dumps({"epoch":e,"total_epochs":n,"metrics":{"loss":1.0/e}})+"\\n")\n';
    const bin = path.resolve(import.meta.dirname, "../bin/trainer-agent.js");
    const timed = async (argv: string[], env: Record<string, string>) => {
      const t0 = performance.now();
      const out = await new Promise<string>((resolve, reject) => {
        const c = spawn("/bin/bash", ["-c", '"$@" >/dev/null 2>"$ERRLOG"; times', "bash", ...argv], {
          env: { PATH: process.env.PATH ?? "", ...env },
          stdio: ["ignore", "pipe", "inherit"],
        });
        let text = "";
        c.stdout.on("data", (d: Buffer) => (text += d.toString()));
        c.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}`))));
      });
      // `times`: the shell's own user/sys, then its children's: "0m1.234s 0m0.100s".
      const child = out
        .trim()
        .split("\n")
        .at(-1)!
        .split(/\s+/)
        .map((t) => {
          const m = /(\d+)m([\d.]+)s/.exec(t)!;
          return Number(m[1]) * 60 + Number(m[2]);
        });
      return { cpu: child[0]! + child[1]!, wall: (performance.now() - t0) / 1000 };
    };
    const errLog = path.join(dataDir, "agent.log");
    const agentEnv = (jobId: string, token: string) => ({
      ERRLOG: errLog,
      BACKEND_BASE_URL: url,
      JOB_ID: jobId,
      CALLBACK_TOKEN: token,
      HEARTBEAT_INTERVAL_SECONDS: "3600",
    });
    const agentArgv = (n: number) => [process.execPath, bin, "run", "--", "/usr/bin/python3", "-c", py(n)];
    // Start-up and `done` alone (no reports), so the per-report cost is what the reports add.
    const idleJob = (await (await fetch(`${url}/v1/jobs`, { method: "POST" })).json()) as typeof job;
    const idle = await timed(agentArgv(0), agentEnv(idleJob.id, idleJob.token));
    const idleChild = await timed(["/usr/bin/python3", "-c", py(0)], { ERRLOG: "/dev/null" });
    const alone = await timed(["/usr/bin/python3", "-c", py(reports)], { ERRLOG: "/dev/null" });
    const both = await timed(agentArgv(reports), agentEnv(job.id, job.token));
    const { readFile } = await import("node:fs/promises");
    const line = (await readFile(errLog, "utf8")).split("\n").find((l) => l.includes('"callback delivery"'));
    const stats = JSON.parse(line ?? "{}") as {
      requests?: number;
      delivered?: { heartbeat: number };
      dropped?: { heartbeat: number };
    };
    return {
      reports,
      wallSeconds: both.wall,
      agentCpuSeconds: both.cpu - alone.cpu - (idle.cpu - idleChild.cpu),
      startupCpuSeconds: idle.cpu - idleChild.cpu,
      requests: stats.requests ?? 0,
      delivered: stats.delivered?.heartbeat ?? 0,
      dropped: stats.dropped?.heartbeat ?? 0,
    };
  } finally {
    stub.kill("SIGTERM");
    await new Promise((r) => stub.once("exit", r));
    await rm(dataDir, { recursive: true, force: true });
  }
}
