/**
 * Paces V8's young-generation collections by the bytes a transfer receives. Every 64 KiB socket read of
 * `node:http` is a fresh ArrayBuffer whose wrapper dies young, but only a scavenge frees it; with the agent's small
 * young generation (src/cli/heap.ts) V8 reaches its external-memory limit first and runs a full mark-compact
 * instead, every 50-100 ms during a pull, each marking the whole SDK heap on the same cores as the transfer.
 * A scavenge (a fraction of a millisecond with a young generation this small) every 2 MiB received keeps external
 * memory below that limit. 1 GiB zip pull of 10k files, measured alone: 27 mark-compacts instead of 52, 2.3-2.5 s
 * of CPU instead of 2.8-3.3 s, peak RSS 175-180 MiB instead of 216-220 MiB. One 1 GiB file: RSS 141-146 MiB
 * instead of 181-198 MiB. Every 1 MiB saved a few MiB more on the pull but cost the single file ~0.1 s per GiB;
 * every 8 MiB left 52 mark-compacts.
 *
 * The trainer-agent command installs the collector; a library user of the storage module gets none, and then
 * noteBytes does nothing.
 */
let collect: (() => void) | undefined;
let since = 0;
const EVERY = 2 * 1024 * 1024;

export function setScavenger(fn: (() => void) | undefined): void {
  collect = fn;
  since = 0;
}

/** Counts received bytes; runs the collector after every 2 MiB. */
export function noteBytes(n: number): void {
  if (collect === undefined) return;
  since += n;
  if (since >= EVERY) {
    since = 0;
    collect();
  }
}
