/** The run number's container-restart count: a marker in CHECKPOINT_DIR, scoped to the job, attempt and node. */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { claimRunNumber } from "../../src/agent/run-number.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "run-number-"));
  dirs.push(d);
  return d;
}

describe("claimRunNumber", () => {
  it("counts the agent's earlier runs of the same attempt in the same pod", async () => {
    const checkpointDir = await dir();
    const claim = (attempt: number, jobId = "j1", nodeRank = 0) =>
      claimRunNumber({ jobId, attempt, checkpointDir, nodeRank });
    expect((await claim(0)).run).toEqual({ attempt: 0, containerRestart: 0 });
    expect((await claim(0)).run).toEqual({ attempt: 0, containerRestart: 1 });
    expect((await claim(0)).run).toEqual({ attempt: 0, containerRestart: 2 });
    // Another node sharing the directory (trainer-agent local), another job, a new attempt: each starts at 0.
    expect((await claim(0, "j1", 1)).run).toEqual({ attempt: 0, containerRestart: 0 });
    expect((await claim(0, "j2")).run).toEqual({ attempt: 0, containerRestart: 0 });
    expect((await claim(1, "j2")).run).toEqual({ attempt: 1, containerRestart: 0 });
  });

  it("a CHECKPOINT_DIR that does not exist loses only the count, and is not created", async () => {
    const missing = join(await dir(), "not-there");
    const { run, error } = await claimRunNumber({ jobId: "j", attempt: 2, checkpointDir: missing, nodeRank: 0 });
    expect(run).toEqual({ attempt: 2, containerRestart: 0 });
    expect(error).toBeDefined();
    expect(existsSync(missing)).toBe(false);
  });
});
