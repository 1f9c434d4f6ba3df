import type { ChildProcess, SpawnOptions } from "node:child_process";
import type { Writable } from "node:stream";
import type { RunMode } from "../config/index.ts";
import type { JobSnapshot } from "./backend.ts";
import type { NodeOutcome } from "./summary.ts";

export interface LocalOptions {
  nodes: number;
  /** Processes per node (PET_NPROC_PER_NODE): a count or auto/cpu/gpu. */
  nprocPerNode: string;
  framework: string | undefined;
  plugin: string | undefined;
  /** A local folder to seed as the job's dataset. */
  dataset: string | undefined;
  datasetId: string | undefined;
  command: readonly string[];
  /** Keep the servers (and the run folder) after the run, until Ctrl-C. */
  keep: boolean;
  /**
   * Keep only the servers (dashboard, bucket) up after the run, until Ctrl-C: the demo on a terminal, where a
   * person is about to click the dashboard link. The run folder goes as after any clean run.
   */
  holdOpen?: boolean;
  /** Run folder, kept; default a fresh one under the system temp dir, removed after a clean run. */
  workdir: string | undefined;
  name: string;
  /** After a node fails, seconds the others get to end on their own before they are sent SIGTERM. */
  failGraceSeconds: number;
  /** Extra variables for every agent (the demo's PET_REDIRECTS for old torchrun, for example). */
  extraEnv?: Readonly<Record<string, string>>;
  /**
   * `--keyless`: the agents get no storage keys, as a pod submitted with dataset_url and checkpoint_store backend:
   * CHECKPOINT_STORE=backend (the embedded stub presigns for the embedded S3 server) and --dataset as a presigned
   * DATASET_URL.
   */
  keyless?: boolean;
  /** The agents' `--mode`: a predict job (`--predict`) restores `model` and uploads what the command predicts. */
  mode?: RunMode;
  /** A predict job's model: a job id (MODEL_JOB_ID) or an s3:// URI (MODEL_URI). */
  model?: string;
  /**
   * After the training succeeds, a one-node predict job over the model it just stored, on the same bucket and
   * backend (the demo).
   */
  thenPredict?: { command: readonly string[]; framework?: string | undefined };
}

export interface LocalDeps {
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** How to start `trainer-agent` (see src/packaging/self-command.ts). */
  agent: { command: string; args: readonly string[] };
  /** Source of the Python helper, written into the run folder and put on PYTHONPATH. */
  helperSource?: () => Promise<string>;
  stdout: Writable;
  stderr: Writable;
  /** Output is a terminal: colours and live progress. */
  color: boolean;
  signals?: Pick<NodeJS.Process, "on" | "off">;
  spawn?: (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;
}

export interface LocalResult {
  exitCode: number;
  jobId: string;
  state: string | undefined;
  nodes: NodeOutcome[];
  checkpointKeys: string[];
  runDir: string;
  snapshot: JobSnapshot | undefined;
  /** The predict job (`--predict`, or the one after the training with thenPredict), when one ran. */
  prediction?: {
    jobId: string;
    exitCode: number;
    state: string | undefined;
    snapshot: JobSnapshot | undefined;
    predictionKeys: string[];
  };
}

/** Steps to undo when the run ends, last first. */
export type Cleanups = Array<() => Promise<void>>;
