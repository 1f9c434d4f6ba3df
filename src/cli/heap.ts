/**
 * Keeps V8's young generation at its starting size for the agent's lifetime: a dataset pull's garbage is
 * short-lived, and scavenges of a small, cache-resident space cost less CPU and RSS than a grown one
 * (docs/storage.md, "Memory and garbage collection", has the measurements).
 *
 * The growth factor is read each time V8 considers growing, so it can be set after start-up, which keeps the
 * flag out of the single executable's execArgv (a flag there invalidates its code cache). A user who sizes the
 * young generation in NODE_OPTIONS keeps that choice (and V8's own collection schedule).
 */
import v8 from "node:v8";
import vm from "node:vm";
import { setScavenger } from "../storage/internal/scavenge.ts";

type Gc = (options?: { type?: "minor" | "major" }) => void;

export function keepYoungGenerationSmall(env: NodeJS.ProcessEnv, execArgv: readonly string[]): boolean {
  const given = [...execArgv, env.NODE_OPTIONS ?? ""].some((a) => /semi[-_]space/.test(a));
  if (given) return false;
  v8.setFlagsFromString("--semi-space-growth-factor=1");
  installScavenger();
  return true;
}

/**
 * Lets transfers run a young-generation collection every few MiB received (src/storage/internal/scavenge.ts).
 * V8's `gc` function only exists when --expose-gc was set before a context is made: set the flag now, and take `gc`
 * from a fresh context on the first collection (so commands that move no data never pay for one), leaving the
 * main context's globals untouched.
 */
function installScavenger(): void {
  try {
    v8.setFlagsFromString("--expose-gc");
  } catch {
    return; // without it, V8 collects on its own schedule: slower and larger, never wrong
  }
  let gc: Gc | null | undefined; // null: not available
  setScavenger(() => {
    if (gc === undefined) {
      const found = vm.runInNewContext("typeof gc === 'function' ? gc : undefined") as Gc | undefined;
      gc = found ?? null;
    }
    gc?.({ type: "minor" });
  });
}
