/** The one place that signals a process group (src/process/group.ts), with real processes. */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { exitCodeOfSignal, groupRunning, signalGroup } from "../../src/process/group.ts";

describe("process groups", () => {
  it("signalGroup reaches the leader and its background child", async () => {
    // The shell leaves a background sleep in its group and waits on it: only a group signal ends both.
    const leader = spawn("sh", ["-c", "sleep 300 & echo ready; wait"], {
      detached: true,
      stdio: ["ignore", "pipe", "ignore"],
    });
    const pgid = leader.pid as number;
    await once(leader.stdout, "data");
    const exited = once(leader, "exit");
    expect(signalGroup(pgid, "SIGTERM")).toBe(true);
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    expect(signal).toBe("SIGTERM");
    expect(code).toBeNull();
    // The background sleep got the same signal (an orphan now, maybe an unreaped zombie: groupRunning skips those).
    while (await groupRunning(pgid)) await new Promise((r) => setImmediate(r));
  });

  it("signalGroup answers false for a group that is gone", async () => {
    const child = spawn("true", [], { detached: true, stdio: "ignore" });
    await once(child, "exit"); // reaped by Node: no member of its group is left
    expect(signalGroup(child.pid as number, "SIGTERM")).toBe(false);
  });

  it.each([
    ["SIGKILL", 137],
    ["SIGTERM", 143],
    ["SIGINT", 130],
    ["SIGHUP", 129],
    ["SIGSEGV", 139],
  ] as const)("exitCodeOfSignal(%s) is %i", (signal, code) => {
    expect(exitCodeOfSignal(signal)).toBe(code);
  });
});
