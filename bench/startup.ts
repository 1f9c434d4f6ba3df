/**
 * `npm run bench -- startup`: the single-file agent's start-up cost and size. Builds dist/trainer-agent fresh (the
 * build time is reported too), then measures, side by side in this run:
 *  - time to child spawn: the child is `date +%s%N`, which prints the wall clock the moment it runs; the bench
 *    notes the clock just before it spawns the agent (or, for the baseline, date itself) and subtracts;
 *  - wall time of `run -- /bin/true` from spawn to exit, against /bin/true alone and the agent run from sources
 *    (`node bin/trainer-agent.js`, type stripping, no bundle);
 *  - `--version` (start and exit, no sub-command implementation loaded);
 *  - `install DIR`, the init container's whole job (copies the ~100 MiB file and the helper);
 * each in an empty environment (`env -i`), median and p90 of RUNS runs. Target: < 200 ms to child spawn.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildAgent, REPO_ROOT } from "../src/packaging/build/build-agent.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const TARGET_MS = 200;
const DATE = "/bin/date";

interface Sample {
  wallMs: number;
  spawnMs: number | undefined;
}

function once(argv: string[], env: Record<string, string>): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const startNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)); // epoch ns
    const t0 = performance.now();
    const child = spawn("/usr/bin/env", ["-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "ignore"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => {
      const wallMs = performance.now() - t0;
      if (code !== 0) return reject(new Error(`${argv.join(" ")} exited ${code}`));
      const stamp = /^(\d{19})$/m.exec(out)?.[1];
      resolve({ wallMs, spawnMs: stamp === undefined ? undefined : Number(BigInt(stamp) - startNs) / 1e6 });
    });
  });
}

async function measure(argv: string[], env: Record<string, string> = {}): Promise<Sample[]> {
  await once(argv, env); // warm the page cache
  const samples: Sample[] = [];
  for (let i = 0; i < RUNS; i++) samples.push(await once(argv, env));
  return samples;
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export default async function startup(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "bench-startup-"));
  try {
    const file = join(dir, "trainer-agent");
    const built = await buildAgent({ output: file });
    const node = process.execPath;
    const source = [node, join(REPO_ROOT, "bin", "trainer-agent.js")];
    const rows: Array<[string, Sample[]]> = [
      ["date alone (baseline)", await measure([DATE, "+%s%N"])],
      ["single file: run -- date", await measure([file, "run", "--", DATE, "+%s%N"])],
      ["sources (node): run -- date", await measure([...source, "run", "--", DATE, "+%s%N"])],
      ["/bin/true alone", await measure(["/bin/true"])],
      ["single file: run -- /bin/true", await measure([file, "run", "--", "/bin/true"])],
      ["sources (node): run -- /bin/true", await measure([...source, "run", "--", "/bin/true"])],
      ["single file: --version", await measure([file, "--version"])],
      ["sources (node): --version", await measure([...source, "--version"])],
      ["node -e 0 (node's own start)", await measure([node, "-e", "0"])],
      ["single file: install DIR (init ctr)", await measure([file, "install", join(dir, "volume")])],
    ];
    const baseSpawn = quantile(
      rows[0]![1].map((s) => s.spawnMs ?? NaN),
      0.5,
    );
    console.log(`runs per row: ${RUNS}, empty environment (env -i), cwd ${REPO_ROOT}`);
    console.log(
      "case".padEnd(36) +
        "wall p50".padStart(10) +
        "wall p90".padStart(10) +
        "to spawn p50".padStart(14) +
        "to spawn p90".padStart(14),
    );
    for (const [name, samples] of rows) {
      const spawn = samples.map((s) => s.spawnMs).filter((v): v is number => v !== undefined);
      const cell = (v: number): string => (Number.isNaN(v) ? "" : `${v.toFixed(1)} ms`);
      const spawnCell = (q: number): string =>
        spawn.length === 0 ? "" : cell(quantile(spawn, q) - (name.includes("baseline") ? 0 : baseSpawn));
      console.log(
        name.padEnd(36) +
          cell(
            quantile(
              samples.map((s) => s.wallMs),
              0.5,
            ),
          ).padStart(10) +
          cell(
            quantile(
              samples.map((s) => s.wallMs),
              0.9,
            ),
          ).padStart(10) +
          spawnCell(0.5).padStart(14) +
          spawnCell(0.9).padStart(14),
      );
    }
    const agentSpawn =
      quantile(
        rows[1]![1].map((s) => s.spawnMs ?? NaN),
        0.5,
      ) - baseSpawn;
    const size = (await stat(file)).size;
    console.log(
      `"to spawn" = clock printed by the child minus clock before spawning, less the baseline's (${baseSpawn.toFixed(1)} ms for env + date)`,
    );
    console.log(
      `single file: ${(size / (1 << 20)).toFixed(1)} MiB (${built.stripped ? "stripped" : "not stripped"} node ${built.nodeVersion}` +
        ` + ${(built.bundle.bytes / (1 << 20)).toFixed(1)} MiB bundle with code cache), built in ${(built.timings.total / 1000).toFixed(1)} s`,
    );
    const nodeStart = quantile(
      rows.find(([name]) => name.startsWith("node -e 0"))![1].map((s) => s.wallMs),
      0.5,
    );
    console.log(
      `start to child spawn: ${agentSpawn.toFixed(1)} ms p50, target < ${TARGET_MS} ms: ${agentSpawn < TARGET_MS ? "met" : "MISSED"}` +
        ` (node's own start here: ${nodeStart.toFixed(1)} ms; the agent adds ${(agentSpawn - nodeStart).toFixed(1)} ms;` +
        ` a loaded machine inflates all rows alike)`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
