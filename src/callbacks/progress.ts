/**
 * What heartbeats say: the latest epoch of global rank 0, progress = epoch / total_epochs and an ETA from the
 * epochs' pace, plus the liveness heartbeat every HEARTBEAT_INTERVAL_SECONDS when no epoch is reported.
 */
import type { EpochReport } from "../contract/report.ts";
import type { HeartbeatFields } from "./client.ts";

export interface ProgressOptions {
  /** This pod's node rank: a report without `rank` counts as global rank 0 only on node 0. */
  nodeRank: number;
  now?: () => number;
  /** When the child started, ms (the first epoch's pace is measured from it). */
  startedAt?: number;
}

export class ProgressTracker {
  readonly #nodeRank: number;
  readonly #now: () => number;
  #startedAt: number;
  #first: { epoch: number; at: number } | undefined;
  #latest: HeartbeatFields | undefined;

  constructor(options: ProgressOptions) {
    this.#nodeRank = options.nodeRank;
    this.#now = options.now ?? Date.now;
    this.#startedAt = options.startedAt ?? this.#now();
  }

  /** Restart the pace clock (when the child actually starts). */
  markStarted(at: number = this.#now()): void {
    this.#startedAt = at;
  }

  /** Whether this report comes from global rank 0 (the one whose epochs drive heartbeats). */
  isRankZero(report: { rank?: number }): boolean {
    return report.rank === undefined ? this.#nodeRank === 0 : report.rank === 0;
  }

  /** Folds in an epoch report; returns the heartbeat to send now, or undefined when the report is not rank 0's. */
  onEpoch(report: EpochReport): HeartbeatFields | undefined {
    if (!this.isRankZero(report)) return undefined;
    const at = this.#now();
    const hb: HeartbeatFields = { epoch: report.epoch, metrics: { ...report.metrics } };
    if (report.totalEpochs !== undefined) hb.total_epochs = report.totalEpochs;
    if (report.step !== undefined) hb.step = report.step;
    // A step report within the same epoch keeps the pace measured on whole epochs.
    if (this.#first === undefined) this.#first = { epoch: report.epoch, at };
    if (report.totalEpochs !== undefined && report.totalEpochs > 0) {
      hb.progress = Math.min(1, Math.max(0, report.epoch / report.totalEpochs));
      const perEpoch = this.#secondsPerEpoch(report.epoch, at);
      if (perEpoch !== undefined)
        hb.eta_seconds = Math.max(0, Math.round(perEpoch * Math.max(0, report.totalEpochs - report.epoch)));
    }
    // Metrics of a step report update those of its epoch rather than replace them.
    if (this.#latest !== undefined && this.#latest.epoch === report.epoch)
      hb.metrics = { ...this.#latest.metrics, ...hb.metrics };
    this.#latest = hb;
    return hb;
  }

  #secondsPerEpoch(epoch: number, at: number): number | undefined {
    const first = this.#first;
    if (first !== undefined && epoch > first.epoch) return (at - first.at) / 1000 / (epoch - first.epoch);
    // One report so far: assume it closed one epoch since the child started (a resumed run starts mid-way).
    if (epoch > 0) return (at - this.#startedAt) / 1000;
    return undefined;
  }

  /** The latest rank-0 state, for the liveness heartbeat (empty before the first epoch). */
  latest(): HeartbeatFields {
    return this.#latest === undefined ? { metrics: {} } : { ...this.#latest };
  }

  /** The latest rank-0 metrics, for `done`'s final_metrics. */
  finalMetrics(): Record<string, number> | undefined {
    return this.#latest === undefined || Object.keys(this.#latest.metrics ?? {}).length === 0
      ? undefined
      : { ...this.#latest.metrics };
  }
}

/** Sends `beat()` every `intervalMs` unless `reset()` was called meanwhile (an epoch heartbeat just went out). */
export function startLiveness(intervalMs: number, beat: () => void): { reset(): void; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    timer = setTimeout(() => {
      beat();
      arm();
    }, intervalMs);
    timer.unref();
  };
  arm();
  return {
    reset() {
      if (timer !== undefined) clearTimeout(timer);
      arm();
    },
    stop() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
