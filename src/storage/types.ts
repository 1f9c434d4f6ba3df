/**
 * What the agent's run loop needs from storage. Implemented in src/storage (createStorage); the run orchestrator
 * (src/agent) only talks to this interface, so it can be wired before and tested without a bucket.
 */
import type { StoredCheckpoint } from "../contract/index.ts";

export interface TransferProgress {
  /** Bytes moved so far and the total when known. */
  bytes: number;
  totalBytes: number | undefined;
  files: number;
}

export interface DatasetResult {
  /** Where the data now is (DATASET_DIR). */
  dir: string;
  source: string;
  bytes: number;
  files: number;
  seconds: number;
  /** True when the same object (same ETag) was already in place and nothing was downloaded. */
  skipped: boolean;
}

export interface RestoredCheckpoint {
  /** Local path exported to the child as RESUME_FROM. */
  path: string;
  /** Identifier of the checkpoint in the bucket (its manifest key). */
  key: string;
  bytes: number;
  files: number;
}

export interface CheckpointSync {
  /** A `::trainer::{"checkpoint": path}` report: this file (or folder) is complete and should be stored now. */
  notify(path: string): void;
  /** Uploads whatever is new, waits for every upload in flight and returns all checkpoints stored so far. */
  finalSync(signal?: AbortSignal): Promise<StoredCheckpoint[]>;
  /** Stops watching and aborts uploads in flight (used when the agent gives up). */
  close(): Promise<void>;
}

export interface Storage {
  /** Restores the latest complete checkpoint of this job into CHECKPOINT_DIR; null when there is none. */
  restoreLatestCheckpoint(opts: {
    signal?: AbortSignal;
    onProgress?: (p: TransferProgress) => void;
  }): Promise<RestoredCheckpoint | null>;
  /** Materialises DATASET_ID / DATASET_URI into DATASET_DIR; null when no dataset is configured. */
  pullDataset(opts: {
    signal?: AbortSignal;
    onProgress?: (p: TransferProgress) => void;
  }): Promise<DatasetResult | null>;
  /** Starts watching CHECKPOINT_DIR and uploading in the background (a no-op sync when this node does not upload). */
  startCheckpointSync(opts: { onUploaded?: (c: StoredCheckpoint) => void }): CheckpointSync;
  /** Predict runs: the model named by MODEL_JOB_ID / MODEL_URI, restored into CHECKPOINT_DIR (MODEL_NOT_FOUND). */
  restoreModel(opts: { signal?: AbortSignal; onProgress?: (p: TransferProgress) => void }): Promise<RestoredCheckpoint>;
  /** Predict runs: PREDICTIONS_DIR uploaded below this node's predictions prefix, manifest last. */
  uploadPredictions(opts: { signal?: AbortSignal }): Promise<StoredPredictions>;
}

export interface StoredPredictions {
  objects: StoredCheckpoint[];
  /** Bucket label and prefix, for messages: `s3://bucket` and `predictions/job-7/`. */
  location: string;
  /** Key of the manifest; undefined when PREDICTIONS_DIR held nothing. */
  manifest: string | undefined;
}
