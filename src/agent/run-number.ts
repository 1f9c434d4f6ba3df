/**
 * Which run of the job this agent is (CONTRACT: `attempt` and `container_restart` on every callback).
 *
 * `attempt` is JobSet's restart attempt, handed to the container by the downward API as JOBSET_RESTART_ATTEMPT.
 * A kubelet restart of the container inside the same pod keeps that annotation, so the agent counts its own earlier
 * runs in a marker file in CHECKPOINT_DIR. Chosen because that directory is where a restarted run already looks for
 * its state: mounted as a volume (emptyDir) it outlives a container restart and dies with the pod, which is
 * exactly the scope of "a restart inside the same pod"; a new pod (a JobSet restart) starts without the marker and
 * with a higher attempt. Without a volume there (the container's own filesystem) the count stays 0, which is also
 * what /tmp would give. A directory that does not exist or cannot be written only loses the count, never the run.
 */
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RunNumber } from "../callbacks/client.ts";

/** Marker file name; per node rank, since `trainer-agent local` nodes may share a parent directory. */
function runMarkerPath(checkpointDir: string, nodeRank: number): string {
  return join(checkpointDir, `.trainer-agent-run-${nodeRank}.json`);
}

interface Marker {
  job_id: string;
  attempt: number;
  container_restart: number;
}

/** Reads the marker of the previous run in this pod (if any), writes this run's and returns this run's number. */
export async function claimRunNumber(input: {
  jobId: string;
  attempt: number;
  checkpointDir: string;
  nodeRank: number;
}): Promise<{ run: RunNumber; error?: unknown }> {
  const file = runMarkerPath(input.checkpointDir, input.nodeRank);
  let previous: Marker | undefined;
  try {
    previous = JSON.parse(await readFile(file, "utf8")) as Marker;
  } catch {
    previous = undefined; // first run in this pod, or an unreadable marker: both count as the first
  }
  const containerRestart =
    previous !== undefined &&
    previous.job_id === input.jobId &&
    previous.attempt === input.attempt &&
    Number.isInteger(previous.container_restart)
      ? previous.container_restart + 1
      : 0;
  const run: RunNumber = { attempt: input.attempt, containerRestart };
  try {
    // Only into a directory that exists (the pod's volume, the local runner's node directory): the agent does not
    // create directories outside its job for a count.
    if (!(await stat(input.checkpointDir)).isDirectory()) return { run };
    const marker: Marker = { job_id: input.jobId, attempt: input.attempt, container_restart: containerRestart };
    await writeFile(file, `${JSON.stringify(marker)}\n`);
    return { run };
  } catch (error) {
    return { run, error };
  }
}
