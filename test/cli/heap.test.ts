/**
 * The agent keeps V8's young generation at its starting size (src/cli/heap.ts): a process that churns through
 * short-lived objects, as a dataset pull does per socket chunk, must not grow its new space, unless the user
 * sized it in NODE_OPTIONS.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const heapModule = join(import.meta.dirname, "../../src/cli/heap.ts");

/** Churns 100k short-lived objects (2k alive at a time); prints whether the flag was applied and the new space's size. */
const churn = (apply: boolean): string => `
import v8 from "node:v8";
import { keepYoungGenerationSmall } from ${JSON.stringify(heapModule)};
const applied = ${apply} ? keepYoungGenerationSmall(process.env, process.execArgv) : false;
const keep = [];
for (let i = 0; i < 100_000; i++) {
  const chunk = { buf: Buffer.allocUnsafe(1024), at: i, tags: [i, String(i)] };
  keep.push(chunk);
  if (keep.length > 2_000) keep.shift();
  if (i % 16 === 0) await Promise.resolve(chunk);
}
const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
console.log(JSON.stringify({ applied, newSpaceMb: newSpace.space_size / 1048576 }));
`;

async function measure(apply: boolean, env: NodeJS.ProcessEnv = {}): Promise<{ applied: boolean; newSpaceMb: number }> {
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", churn(apply)], {
    env: { PATH: process.env.PATH, ...env },
  });
  return JSON.parse(stdout) as { applied: boolean; newSpaceMb: number };
}

describe("keepYoungGenerationSmall", () => {
  it("stops the new space from growing under allocation churn", async () => {
    const [grown, kept] = await Promise.all([measure(false), measure(true)]);
    expect(kept.applied).toBe(true);
    expect(kept.newSpaceMb).toBeLessThanOrEqual(2);
    // Without the flag the same churn grows it (the comparison shows the flag, not the workload, keeps it small).
    expect(grown.newSpaceMb).toBeGreaterThan(kept.newSpaceMb * 2);
  });

  it("leaves a young generation sized in NODE_OPTIONS alone", async () => {
    const r = await measure(true, { NODE_OPTIONS: "--max-semi-space-size=4" });
    expect(r.applied).toBe(false);
  });
});

describe("scavenge pacing (src/storage/internal/scavenge.ts)", () => {
  /** Counts V8's young-generation collections while noteBytes is told 8 MiB arrived, in 64 KiB reads. */
  const script = `
import { PerformanceObserver, constants } from "node:perf_hooks";
import { keepYoungGenerationSmall } from ${JSON.stringify(heapModule)};
import { noteBytes } from ${JSON.stringify(join(import.meta.dirname, "../../src/storage/internal/scavenge.ts"))};
keepYoungGenerationSmall(process.env, process.execArgv);
let minor = 0;
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor += 1;
});
obs.observe({ entryTypes: ["gc"] });
for (let i = 0; i < 128; i++) noteBytes(64 * 1024);
await new Promise((r) => setTimeout(r, 50));
obs.disconnect();
console.log(JSON.stringify({ minor }));
`;
  const minorGcs = async (env: NodeJS.ProcessEnv = {}): Promise<number> => {
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      env: { PATH: process.env.PATH, ...env },
    });
    return (JSON.parse(stdout) as { minor: number }).minor;
  };

  it("runs a young-generation collection per 2 MiB received once the agent installed the collector", async () => {
    // 8 MiB noted: 4 scavenges from the pacing (the loop itself allocates far too little to cause one).
    expect(await minorGcs()).toBeGreaterThanOrEqual(4);
  });

  it("does nothing when the collector is not installed (young generation sized in NODE_OPTIONS)", async () => {
    expect(await minorGcs({ NODE_OPTIONS: "--max-semi-space-size=4" })).toBeLessThan(2);
  });
});
