/**
 * The agent's MLflow mirror for one run, from its configuration: what the run is called, its params and tags,
 * and the end (the done status as MLflow's run status, checkpoint keys as tags).
 *
 * Only node 0 mirrors: every node of a job runs an agent, and N runs per job would split one training's numbers;
 * node 0 holds global rank 0, whose epoch reports are the job's progress everywhere else too (heartbeats, the
 * Trainer's status).
 */
import type { AgentConfig } from "../config/agent.ts";
import type { DoneStatus, StoredCheckpoint } from "../contract/callbacks.ts";
import type { Report } from "../contract/report.ts";
import type { Logger } from "../log/logger.ts";
import { undiciTransport, type Transport } from "../callbacks/transport.ts";
import { createMlflowClient } from "./client.ts";
import { createMlflowMirror, type MirrorOptions } from "./mirror.ts";
import type { RunStatus } from "./rest.ts";

export interface AgentMlflow {
  onReport(report: Report): void;
  /** The end of the run, sent within MLFLOW_FLUSH_SECONDS; never rejects. */
  close(end: { status: DoneStatus; exitCode: number; checkpoints: readonly StoredCheckpoint[] }): Promise<void>;
}

const RUN_STATUS: Record<DoneStatus, RunStatus> = { succeeded: "FINISHED", failed: "FAILED", cancelled: "KILLED" };

/** Undefined (with the reason logged) when this agent does not mirror. */
export function openMlflow(input: {
  config: AgentConfig;
  logger: Logger;
  traceId: string;
  framework: string;
  startedAt: number;
  /** Replaces the undici transport (tests). */
  transport?: Transport;
  backoff?: MirrorOptions["backoff"];
}): AgentMlflow | undefined {
  const { config, logger } = input;
  const log = logger.child({ component: "mlflow" });
  if (config.mlflow === undefined) {
    if (config.mlflowNote !== undefined) log.info(config.mlflowNote);
    return undefined;
  }
  const { nodeRank, nnodes, nprocPerNode } = config.distributed;
  if (nodeRank !== 0) {
    log.debug({ node_rank: nodeRank }, "node 0 mirrors the run to MLflow; this node does not");
    return undefined;
  }
  const m = config.mlflow;
  const s = config.storage;
  const jobId = config.jobId;
  const baseName = jobId === undefined ? `trainer-agent ${input.traceId.slice(0, 8)}` : `job-${jobId}`;
  const runName = config.restartAttempt > 0 ? `${baseName} (attempt ${config.restartAttempt})` : baseName;
  const transport = input.transport ?? undiciTransport({ insecure: m.insecureTls });
  const mirror = createMlflowMirror({
    client: createMlflowClient({ config: m, transport }),
    logger,
    flushSeconds: m.flushSeconds,
    ...(input.backoff !== undefined && { backoff: input.backoff }),
    run: {
      experimentName: m.experimentName,
      experimentId: m.experimentId,
      runName,
      startTime: input.startedAt,
      params: {
        job_id: jobId,
        framework: input.framework,
        nnodes: String(nnodes),
        nproc_per_node: String(nprocPerNode),
        dataset_id: s.datasetId,
        dataset_uri: s.datasetUri,
        storage_type: s.type,
        checkpoint_uri: s.checkpointUri,
        checkpoint_upload: s.type === undefined ? undefined : s.checkpointUpload,
      },
      tags: {
        // MLflow refuses a run_name and an mlflow.runName tag that differ.
        "mlflow.runName": runName,
        "mlflow.source.name": "trainer-agent",
        "mlflow.source.type": "JOB",
        "astrago.job_id": jobId,
        "astrago.trace_id": input.traceId,
        "astrago.node_rank": String(nodeRank),
        "astrago.restart_attempt": String(config.restartAttempt),
      },
    },
  });
  return {
    onReport: (report) => mirror.onReport(report),
    async close(end) {
      const locations = end.checkpoints.map((c) =>
        s.bucket !== undefined && s.type !== "file" ? `s3://${s.bucket}/${c.key}` : c.key,
      );
      await mirror.finish({
        status: RUN_STATUS[end.status],
        tags: {
          "astrago.status": end.status,
          "astrago.exit_code": String(end.exitCode),
          "astrago.checkpoint_latest": locations.at(-1),
          // Newest last, within a tag value's 5000 characters: the oldest are left out first.
          "astrago.checkpoints": newestWithin(locations, 5000),
        },
      });
      if (input.transport === undefined) await transport.close();
    },
  };
}

function newestWithin(lines: readonly string[], max: number): string | undefined {
  const kept: string[] = [];
  let length = 0;
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] as string;
    if (length + line.length + 1 > max) break;
    kept.unshift(line);
    length += line.length + 1;
  }
  return kept.length === 0 ? undefined : kept.join("\n");
}
