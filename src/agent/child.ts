/**
 * The child itself: spawned in its own process group with its output relayed, reports routed, signals forwarded;
 * its result comes back with the secret values the agent holds masked (the result reaches the backend).
 */
import { readFile } from "node:fs/promises";
import { maskSecrets, secretList, type AgentConfig } from "../config/index.ts";
import type { CallbackClient } from "../callbacks/client.ts";
import type { Logger } from "../log/logger.ts";
import { supervise, type ChildResult } from "../process/supervise.ts";
import type { Progress } from "./progress.ts";
import type { ReportRouter } from "./report-router.ts";
import type { Signals } from "./signals.ts";
import type { Watchdog } from "./watchdog.ts";

export async function runChild(input: {
  config: AgentConfig;
  logger: Logger;
  log: Logger;
  argv: readonly string[];
  env: Record<string, string>;
  cwd: string | undefined;
  router: ReportRouter;
  signals: Signals;
  callbacks: CallbackClient | undefined;
  progress: Progress;
  watchdog: Watchdog | undefined;
  secrets: readonly string[];
}): Promise<ChildResult> {
  const { config, log, signals, callbacks, progress, watchdog } = input;
  log.debug({ argv: input.argv.length, uptime_ms: Math.round(performance.now()) }, "spawning the child");
  const running = supervise({
    argv: input.argv,
    env: input.env,
    ...(input.cwd !== undefined && { cwd: input.cwd }),
    stdout: process.stdout,
    stderr: process.stderr,
    logger: input.logger.child({ component: "process" }),
    onReport: input.router.onReport,
    onLine: input.router.onLine,
    onOutput: watchdog?.activity,
    onRelayPaused: watchdog?.relayPaused,
    tailLines: config.logTailLines,
    graceSeconds: config.terminationGraceSeconds,
  });
  signals.forwardTo(running);
  await running.started;
  // Deliveries start once the child runs: the HTTP stack loads off the start-up path.
  callbacks?.start();
  progress.childStarted(Date.now());
  watchdog?.watch(running);
  const cancel = signals.cancel();
  if (cancel !== undefined) running.terminate("SIGTERM", cancel.reason);
  const ended = await running.result;
  progress.stop();
  watchdog?.stop();
  // A stall action that began before the child ended finishes its checkpoint sync before the final one starts.
  await watchdog?.settled();
  // The token file is read now: it may have been rotated since the start.
  const fileToken = await readTokenFile(config.callbacks.tokenFile);
  const secrets = fileToken === undefined ? input.secrets : secretList([...input.secrets, fileToken]);
  const child: ChildResult = {
    ...ended,
    reason: ended.reason === undefined ? undefined : maskSecrets(ended.reason, secrets),
    logTail: ended.logTail.map((line) => maskSecrets(line, secrets)),
  };
  if (child.spawnFailed) log.error({ reason: child.reason }, "the command could not be started");
  else log.info({ exit_code: child.exitCode, signal: child.signal, reason: child.reason }, "child exited");
  return child;
}

async function readTokenFile(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    return undefined; // the callbacks say so when they need it
  }
}
