/**
 * Where the child's reports go: epochs to progress (and every report to the MLflow mirror, which takes what it
 * mirrors), checkpoint paths to the checkpoint sync, everything else to the callbacks as an event (with the secret values the agent holds masked: the child's text reaches the backend).
 * Reports arrive inside the relay, so whatever goes wrong handling one is logged once and never stops the output.
 */
import { maskSecrets, maskSecretsDeep } from "../config/index.ts";
import type { Report } from "../contract/report.ts";
import type { CallbackClient } from "../callbacks/client.ts";
import type { Logger } from "../log/logger.ts";
import type { StreamName } from "../process/supervise.ts";
import type { CheckpointSync } from "../storage/types.ts";
import type { TrainerPlugin } from "../plugins/types.ts";
import type { Progress } from "./progress.ts";
import type { Watchdog } from "./watchdog.ts";

export interface ReportRouter {
  onReport(report: Report): void;
  /** The plugin's line parser, guarded; undefined when the plugin parses no lines (no per-line strings are made). */
  onLine: ((line: string, source: StreamName) => void) | undefined;
}

export function routeReports(input: {
  log: Logger;
  secrets: readonly string[];
  callbacks: CallbackClient | undefined;
  progress: Progress;
  sync: CheckpointSync | undefined;
  plugin: TrainerPlugin;
  watchdog?: Pick<Watchdog, "epoch"> | undefined;
  /** Sees every report first; never throws nor waits. */
  mirror?: { onReport(report: Report): void } | undefined;
}): ReportRouter {
  const { log, secrets, callbacks, progress, sync, plugin, watchdog, mirror } = input;
  const handle = (report: Report): void => {
    mirror?.onReport(report);
    if (report.kind === "epoch") {
      progress.onEpoch(report);
      watchdog?.epoch(report.epoch);
    } else if (report.kind === "checkpoint") {
      log.debug({ path: report.path, rank: report.rank }, "checkpoint reported");
      sync?.notify(report.path);
    } else {
      const data = { ...report.data, ...(report.rank !== undefined && { rank: report.rank }) };
      callbacks?.event(
        report.type,
        report.message === undefined ? undefined : maskSecrets(report.message, secrets),
        Object.keys(data).length > 0 ? (maskSecretsDeep(data, secrets) as Record<string, unknown>) : undefined,
      );
    }
  };
  let reportFailures = 0;
  const onReport = (report: Report): void => {
    try {
      handle(report);
    } catch (error) {
      if (reportFailures++ === 0) log.warn({ err: error, kind: report.kind }, "handling a report failed");
    }
  };
  const parseLine = plugin.parseLine?.bind(plugin);
  let parseLineFailures = 0;
  const onLine =
    parseLine === undefined
      ? undefined
      : (line: string, source: StreamName): void => {
          // A plugin bug must not take the relay (and the training's output) down with it.
          try {
            for (const r of parseLine(line, { stream: source }) ?? []) onReport(r);
          } catch (error) {
            if (parseLineFailures++ === 0)
              log.warn({ plugin: plugin.name, err: error }, "plugin parseLine failed; further failures are silent");
          }
        };
  return { onReport, onLine };
}
