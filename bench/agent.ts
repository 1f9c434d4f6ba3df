/**
 * `npm run bench -- agent`: what the agent costs the training process, measured side by side in one run.
 *  - Log relay: a child writing 200k short lines/s for 5 s (paced, like a chatty trainer), alone vs through
 *    `trainer-agent run`: the child's wall time ratio (target overhead <= 1 %) and the agent's CPU share; plus an
 *    unpaced child (as fast as the pipe goes) to show the relay's ceiling. Output is checked byte-for-byte by count.
 *  - Start-up: exec of `trainer-agent run -- date +%s%N` to the moment the child runs (target < 150 ms), against
 *    `date` alone and `node -e 0`.
 *  - Agent RSS while relaying (max VmRSS sampled every 50 ms; target < 80 MB).
 * BENCH_SECONDS (default 5) and BENCH_RUNS (default 10) shorten or lengthen it.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../bin/trainer-agent.js", import.meta.url));
const SINGLE = fileURLToPath(new URL("../dist/trainer-agent", import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const RATE = 200_000;
const TICK_MS = 10;
const CLK_TCK = 100;

/** A child writing RATE lines/s in 10 ms batches for SECONDS s (paced), or as fast as it can (unpaced). */
const LINE = "step 123456 loss 0.123456 lr 0.001";
const writer = (paced: boolean) => `
const line = "${LINE}\\n";
const perTick = ${RATE} * ${TICK_MS} / 1000;
const batch = line.repeat(perTick);
const total = ${RATE} * ${SECONDS};
let written = 0;
const start = performance.now();
process.on("exit", () => process.stderr.write("child_elapsed_ms=" + (performance.now() - start).toFixed(1) + "\\n"));
function tick() {
  while (written < total) {
    const due = ${paced} ? Math.min(total, Math.floor(((performance.now() - start) / 1000) * ${RATE}) + perTick) : total;
    if (written >= due) return setTimeout(tick, 1);
    written += perTick;
    if (!process.stdout.write(batch)) return process.stdout.once("drain", tick);
  }
}
tick();
`;

interface Measured {
  wallMs: number;
  /** The child's own time from its first line to its exit, as it measured it. */
  childMs: number;
  bytes: number;
  cpuMs: number | undefined;
  maxRssMb: number | undefined;
  maxAnonMb: number | undefined;
}

function procStats(pid: number): { cpuTicks: number; rssKb: number; anonKb: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    // Private memory: RSS minus the clean, shared pages of the executable (large for the single-file agent).
    const anonKb = Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return { cpuTicks, rssKb, anonKb };
  } catch {
    return undefined;
  }
}

function run(argv: string[], sample: boolean): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    let bytes = 0;
    let err = "";
    p.stderr.on("data", (c: Buffer) => (err += c.toString()));
    let maxRss = 0;
    let maxAnon = 0;
    let lastCpu = 0;
    p.stdout.on("data", (c: Buffer) => (bytes += c.length));
    const timer = sample
      ? setInterval(() => {
          const s = p.pid === undefined ? undefined : procStats(p.pid);
          if (s !== undefined && !Number.isNaN(s.rssKb)) {
            maxRss = Math.max(maxRss, s.rssKb);
            maxAnon = Math.max(maxAnon, s.anonKb);
            lastCpu = s.cpuTicks;
          }
        }, 50)
      : undefined;
    p.on("error", reject);
    p.on("exit", () => {
      // One last look before the process is reaped.
      const s = p.pid === undefined ? undefined : procStats(p.pid);
      if (s !== undefined) lastCpu = s.cpuTicks;
    });
    p.on("close", (code) => {
      if (timer !== undefined) clearInterval(timer);
      if (code !== 0) return reject(new Error(`${argv.join(" ")} exited ${code}`));
      resolve({
        wallMs: performance.now() - t0,
        childMs: Number(/child_elapsed_ms=([\d.]+)/.exec(err)?.[1] ?? NaN),
        bytes,
        cpuMs: sample ? (lastCpu * 1000) / CLK_TCK : undefined,
        maxRssMb: sample ? maxRss / 1024 : undefined,
        maxAnonMb: sample ? maxAnon / 1024 : undefined,
      });
    });
  });
}

function startNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

async function spawnLatency(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = startNs();
    const p = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["ignore", "pipe", "ignore"],
      env: { PATH: process.env.PATH ?? "" },
    });
    let out = "";
    p.stdout.on("data", (c: Buffer) => (out += c.toString()));
    p.on("error", reject);
    p.on("close", () => {
      const stamp = /^(\d{19})$/m.exec(out)?.[1];
      if (stamp === undefined) reject(new Error(`no timestamp from ${argv.join(" ")}`));
      else resolve(Number(BigInt(stamp) - t) / 1e6);
    });
  });
}

/** user + sys seconds of a command, from /usr/bin/time. */
function cpuTime(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn("/usr/bin/time", ["-f", "CPU %U %S", ...argv], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: process.env.PATH ?? "" },
    });
    let err = "";
    p.stderr.on("data", (c: Buffer) => (err += c.toString()));
    p.on("error", reject);
    p.on("close", () => {
      const m = /CPU ([\d.]+) ([\d.]+)/.exec(err);
      if (m === null) reject(new Error(`no CPU time from ${argv.join(" ")}`));
      else resolve(Number(m[1]) + Number(m[2]));
    });
  });
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
const p90 = (v: number[]) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * 0.9))] ?? NaN;
const f = (n: number | undefined, d = 1) => (n === undefined || Number.isNaN(n) ? "-" : n.toFixed(d));

export default async function agentBench(): Promise<void> {
  const node = process.execPath;
  const rows: string[][] = [];
  // The agent as run from sources (type stripping) and, when built (npm run build:agent), as the single file
  // that pods run.
  const forms: Array<[string, string[]]> = [["sources", [node, BIN]]];
  if (existsSync(SINGLE)) forms.push(["single file", [SINGLE]]);
  else console.log(`(${SINGLE} not built: npm run build:agent adds the single-file rows)`);

  for (const paced of [true, false]) {
    const child = [node, "-e", writer(paced)];
    const label = paced
      ? `relay ${RATE / 1000}k lines/s x ${SECONDS} s (paced)`
      : `relay ${RATE * SECONDS} lines unpaced`;
    // Alternate alone / through the agent, 2 rounds each, keep the least disturbed run of each.
    const alone: Measured[] = [];
    const through = new Map<string, Measured[]>(forms.map(([name]) => [name, []]));
    for (let i = 0; i < 2; i++) {
      alone.push(await run(child, false));
      for (const [name, agentArgv] of forms)
        through.get(name)?.push(await run([...agentArgv, "run", "--", ...child], true));
    }
    const best = (ms: Measured[]) => ms.reduce((x, y) => (y.childMs < x.childMs ? y : x));
    const a = best(alone);
    const expected = RATE * SECONDS * (LINE.length + 1);
    for (const [name, ms] of through) {
      const t = best(ms);
      if (a.bytes !== expected || t.bytes !== expected)
        throw new Error(`byte count mismatch: ${a.bytes} / ${t.bytes} vs ${expected}`);
      rows.push([
        `${label}, ${name}`,
        `child ${f(a.childMs, 0)} ms`,
        `child ${f(t.childMs, 0)} ms`,
        `${f((t.childMs / a.childMs - 1) * 100, 2)} %`,
        `agent CPU ${f(((t.cpuMs ?? NaN) / t.wallMs) * 100)} % of a core; RSS max ${f(t.maxRssMb)} MB ` +
          `(private ${f(t.maxAnonMb)} MB); agent wall - child ${f(t.wallMs - t.childMs, 0)} ms`,
      ]);
    }
  }

  const date = ["date", "+%s%N"];
  const base: number[] = [];
  const nodeStart: number[] = [];
  const agent = new Map<string, number[]>(forms.map(([name]) => [name, []]));
  for (const [, argv] of forms) await spawnLatency([...argv, "run", "--", ...date]); // warm the page cache
  for (let i = 0; i < RUNS; i++) {
    base.push(await spawnLatency(date));
    for (const [name, argv] of forms) agent.get(name)?.push(await spawnLatency([...argv, "run", "--", ...date]));
    nodeStart.push(
      await spawnLatency([
        node,
        "-e",
        "process.stdout.write(String(BigInt(Math.round((performance.timeOrigin+performance.now())*1e6)))+'\\n')",
      ]),
    );
  }
  for (const [name, samples] of agent) {
    rows.push([
      `exec -> child spawn, ${name} (median / p90)`,
      `date alone ${f(median(base))} ms`,
      `${f(median(samples))} / ${f(p90(samples))} ms`,
      `+${f(median(samples) - median(base))} ms`,
      `node -e alone: ${f(median(nodeStart))} ms; target < 150 ms; ${RUNS} runs`,
    ]);
  }

  // CPU time is far less sensitive to other load on the machine than wall time: user+sys of a whole
  // `run -- true` (start, spawn, wait, exit) against node's own start.
  if (existsSync("/usr/bin/time")) {
    const cpuOf = async (argv: string[]) => {
      const samples: number[] = [];
      for (let i = 0; i < RUNS; i++) samples.push(await cpuTime(argv));
      return median(samples);
    };
    const nodeCpu = await cpuOf([node, "-e", "0"]);
    for (const [name, argv] of forms) {
      const c = await cpuOf([...argv, "run", "--", "true"]);
      rows.push([
        `CPU user+sys of run -- true, ${name}`,
        `node -e 0: ${f(nodeCpu * 1000)} ms`,
        `${f(c * 1000)} ms`,
        `+${f((c - nodeCpu) * 1000)} ms`,
        "median; wall time above is this plus waiting for a CPU",
      ]);
    }
  }

  const header = ["measure", "alone", "through trainer-agent", "overhead", "notes"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ");
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} on ${cpus().length} CPUs`,
  );
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
  for (const r of rows) console.log(line(r));
}
