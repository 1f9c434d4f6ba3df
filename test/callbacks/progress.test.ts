import { describe, expect, it, vi } from "vitest";
import { ProgressTracker, startLiveness } from "../../src/callbacks/index.ts";

describe("ProgressTracker", () => {
  it("computes progress and an ETA from the epochs' pace", () => {
    let t = 0;
    const p = new ProgressTracker({ nodeRank: 0, now: () => t, startedAt: 0 });
    t = 10_000;
    expect(p.onEpoch({ kind: "epoch", epoch: 1, totalEpochs: 10, metrics: { loss: 1 } })).toEqual({
      epoch: 1,
      total_epochs: 10,
      progress: 0.1,
      eta_seconds: 90,
      metrics: { loss: 1 },
    });
    t = 30_000; // epochs now take 20 s each
    expect(p.onEpoch({ kind: "epoch", epoch: 2, totalEpochs: 10, metrics: { loss: 0.5 } })).toMatchObject({
      progress: 0.2,
      eta_seconds: 160,
    });
    expect(p.finalMetrics()).toEqual({ loss: 0.5 });
  });

  it.each([
    [0, undefined, true],
    [1, undefined, false],
    [1, 0, true],
    [0, 3, false],
  ])("node %i, report rank %s: drives heartbeats = %s", (nodeRank, rank, drives) => {
    const p = new ProgressTracker({ nodeRank });
    const hb = p.onEpoch({ kind: "epoch", epoch: 1, metrics: {}, ...(rank !== undefined && { rank }) });
    expect(hb !== undefined).toBe(drives);
  });

  it("merges a step report's metrics into its epoch's", () => {
    const p = new ProgressTracker({ nodeRank: 0 });
    p.onEpoch({ kind: "epoch", epoch: 3, metrics: { loss: 1, acc: 0.5 } });
    expect(p.onEpoch({ kind: "epoch", epoch: 3, step: 100, metrics: { loss: 0.9 } })?.metrics).toEqual({
      loss: 0.9,
      acc: 0.5,
    });
  });
});

describe("startLiveness", () => {
  // Fake timers: the test owns the clock, so a loaded machine cannot make a beat late or early.
  it("beats every interval, a reset pushes the next beat a full interval back, and stop ends it", () => {
    vi.useFakeTimers();
    try {
      let beats = 0;
      const l = startLiveness(30, () => beats++);
      vi.advanceTimersByTime(29);
      expect(beats).toBe(0);
      vi.advanceTimersByTime(1);
      expect(beats).toBe(1);
      vi.advanceTimersByTime(60);
      expect(beats).toBe(3);
      vi.advanceTimersByTime(20);
      l.reset();
      vi.advanceTimersByTime(20);
      expect(beats).toBe(3);
      vi.advanceTimersByTime(10);
      expect(beats).toBe(4);
      l.stop();
      vi.advanceTimersByTime(300);
      expect(beats).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });
});
