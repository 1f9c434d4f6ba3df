/**
 * Process groups, the one place that signals one: the agent runs its child (and `trainer-agent local` each node)
 * as the leader of its own group, so a signal reaches torchrun's workers and dataloader processes too.
 *
 * Whether a process group still has a running member: `kill(-pgid, 0)` also answers yes for zombies, and a
 * zombie of the group can stay for good where PID 1 does not reap orphans (the agent itself as a pod's PID 1, or
 * a bare init): on Linux the members are read from /proc instead, zombies left out.
 */
import fs from "node:fs/promises";
import { constants } from "node:os";

/**
 * Sends `signal` to every process of the group led by `pgid`. False when the group is gone (ESRCH); any other
 * failure (EPERM) is thrown, since the caller must know its signal did not arrive.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}

/** The exit code a shell reports for a process ended by `signal`: 128 + its number (SIGKILL: 137). */
export function exitCodeOfSignal(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** A process's state letter (R, S, Z...) and process group from /proc, or undefined when it is gone. */
export async function processStat(pid: number | string): Promise<{ state: string; pgrp: number } | undefined> {
  let stat: string;
  try {
    stat = await fs.readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so fields count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0] ?? "", pgrp: Number(fields[2]) };
}

export async function groupRunning(pgid: number): Promise<boolean> {
  let pids: string[];
  try {
    pids = await fs.readdir("/proc");
  } catch {
    return signalable(pgid);
  }
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await processStat(pid);
    if (stat !== undefined && stat.pgrp === pgid && stat.state !== "Z" && stat.state !== "X") return true;
  }
  return false;
}

function signalable(pgid: number): boolean {
  try {
    return signalGroup(pgid, 0);
  } catch {
    return true; // EPERM: the group exists, owned by someone else
  }
}
