/**
 * Paces V8's young-generation collections by the bytes a transfer receives. Every 64 KiB socket read of
 * `node:http` is a fresh ArrayBuffer that only a scavenge frees; with the agent's small young generation
 * (src/cli/heap.ts) V8 would reach its external-memory limit first and run a full mark-compact of the whole heap
 * instead. A cheap scavenge every 2 MiB received keeps external memory below that limit (docs/storage.md, "Memory
 * and garbage collection", has the measurements).
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
