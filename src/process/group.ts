/**
 * Whether a process group still has a running member. `kill(-pgid, 0)` also answers yes for zombies, and a
 * zombie of the group can stay for good where PID 1 does not reap orphans (the agent itself as a pod's PID 1, or
 * a bare init): on Linux the members are read from /proc instead, zombies left out.
 */
import fs from "node:fs/promises";

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
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}
