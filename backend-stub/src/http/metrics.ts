/**
 * `GET /metrics` in the Prometheus text format: callbacks by kind and status, a histogram of callback latency as
 * the stub sees it (headers parsed -> answer written, fsync included), jobs by state, journal syncs. The bench
 * reads it to tell the stub's own latency from the load generator's.
 */
import { JOB_STATES, type JobState } from "../../../src/contract/index.ts";

/** Bucket upper bounds, milliseconds. */
export const LATENCY_BUCKETS_MS = [
  0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2500, 5000,
];

export class Metrics {
  readonly #counts = new Map<string, number>();
  readonly #buckets = new Float64Array(LATENCY_BUCKETS_MS.length + 1);
  #sumMs = 0;
  #count = 0;

  observeCallback(kind: string, status: number, ms: number): void {
    const key = `${kind}\u0000${status}`;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[i]!) i++;
    this.#buckets[i]! += 1;
    this.#sumMs += ms;
    this.#count += 1;
  }

  render(state: {
    jobs: Iterable<{ state: JobState }>;
    journalSyncs: number;
    journalFailed: boolean;
    streams: number;
    streamBufferedBytes: number;
    streamsDropped: number;
  }): string {
    const lines: string[] = [];
    lines.push("# HELP backend_callbacks_total Callback requests answered, by kind and HTTP status.");
    lines.push("# TYPE backend_callbacks_total counter");
    for (const [key, n] of [...this.#counts].sort()) {
      const [kind, status] = key.split("\u0000");
      lines.push(`backend_callbacks_total{kind="${kind}",status="${status}"} ${n}`);
    }
    lines.push("# HELP backend_callback_duration_seconds Callback latency inside the stub, journal fsync included.");
    lines.push("# TYPE backend_callback_duration_seconds histogram");
    let cumulative = 0;
    LATENCY_BUCKETS_MS.forEach((le, i) => {
      cumulative += this.#buckets[i]!;
      lines.push(`backend_callback_duration_seconds_bucket{le="${le / 1000}"} ${cumulative}`);
    });
    lines.push(`backend_callback_duration_seconds_bucket{le="+Inf"} ${this.#count}`);
    lines.push(`backend_callback_duration_seconds_sum ${this.#sumMs / 1000}`);
    lines.push(`backend_callback_duration_seconds_count ${this.#count}`);
    const byState = new Map<JobState, number>(JOB_STATES.map((s) => [s, 0]));
    for (const job of state.jobs) byState.set(job.state, (byState.get(job.state) ?? 0) + 1);
    lines.push("# HELP backend_jobs Jobs by state.");
    lines.push("# TYPE backend_jobs gauge");
    for (const [s, n] of byState) lines.push(`backend_jobs{state="${s}"} ${n}`);
    lines.push(
      "# HELP backend_journal_syncs_total fdatasync calls of the journal (one covers many reports under load).",
    );
    lines.push("# TYPE backend_journal_syncs_total counter");
    lines.push(`backend_journal_syncs_total ${state.journalSyncs}`);
    lines.push("# HELP backend_journal_failed 1 once a journal write failed (changes are refused from then on).");
    lines.push("# TYPE backend_journal_failed gauge");
    lines.push(`backend_journal_failed ${state.journalFailed ? 1 : 0}`);
    lines.push("# HELP backend_event_streams Open server-sent event streams.");
    lines.push("# TYPE backend_event_streams gauge");
    lines.push(`backend_event_streams ${state.streams}`);
    lines.push("# HELP backend_event_stream_buffered_bytes Bytes written to event streams, not yet taken by clients.");
    lines.push("# TYPE backend_event_stream_buffered_bytes gauge");
    lines.push(`backend_event_stream_buffered_bytes ${state.streamBufferedBytes}`);
    lines.push("# HELP backend_event_streams_dropped_total Event streams closed because their client did not read.");
    lines.push("# TYPE backend_event_streams_dropped_total counter");
    lines.push(`backend_event_streams_dropped_total ${state.streamsDropped}`);
    return `${lines.join("\n")}\n`;
  }
}
