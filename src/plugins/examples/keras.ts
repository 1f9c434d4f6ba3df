/**
 * Example plugin: turns Keras' `model.fit()` console output into epoch reports, with no change to the script.
 *
 *     Epoch 3/10
 *     1875/1875 [==============================] - 3s 1ms/step - loss: 0.0712 - accuracy: 0.9781 - val_loss: ...
 *
 * Handles Keras 2 (`[====]` bars, `\b`/`\r` redraws, verbose=2 lines) and Keras 3 (`━━━━` bars, ANSI bold).
 * A line is a finished epoch when its progress shows `N/N` without an `ETA`; mid-epoch redraws and lines from
 * `evaluate()` after the last epoch are ignored. Epochs are reported as Keras numbers them (1-based).
 *
 * ModelCheckpoint's `Epoch 3: saving model to PATH` (printed before it saves) becomes a checkpoint report on the
 * next line Keras prints to stdout, when the save has finished (Keras saves and prints on one thread).
 */
import type { EpochReport, Report } from "../../contract/index.ts";
import { definePlugin } from "../define.ts";
import type { TrainerPlugin } from "../types.ts";

// Lines are bounded before any regex runs, so a pathological line costs O(limit).
const MAX_LINE = 16_384;
const EPOCH = /^\s*Epoch (\d{1,9})\/(\d{1,9})\s*$/;
const SAVING_PREFIX = /^\s*Epoch \d{1,9}: /;
const SAVING = "saving model to ";
const PROGRESS = /^\s*(\d{1,12})\/(\d{1,12}|Unknown)\b/;
const METRIC = /(?:^|\s)- ([A-Za-z_][\w./@-]{0,127}): (-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|nan|-?inf)(?=\s|$)/g;
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;

/** The part of a redrawn line that is still on screen: after the last `\r`, with `\b` and ANSI codes removed. */
export function visibleText(line: string): string {
  const bounded = line.length > MAX_LINE ? line.slice(-MAX_LINE) : line;
  const lastCr = bounded.lastIndexOf("\r", bounded.endsWith("\r") ? bounded.length - 2 : undefined);
  const tail = lastCr >= 0 ? bounded.slice(lastCr + 1) : bounded;
  return tail.replace(ANSI, "").replaceAll("\b", "").replace(/\r$/, "");
}

function parseMetrics(text: string): Record<string, number> {
  const metrics: Record<string, number> = {};
  for (const m of text.matchAll(METRIC)) {
    const value = Number(m[2]);
    if (Number.isFinite(value)) metrics[m[1]!] = value;
  }
  return metrics;
}

function isStrictSuperset(next: Record<string, number>, prev: ReadonlySet<string>): boolean {
  const keys = Object.keys(next);
  return keys.length > prev.size && [...prev].every((k) => k in next);
}

/** A fresh Keras plugin (it remembers the current epoch, so use one instance per training run). */
export function kerasPlugin(): TrainerPlugin {
  let epoch: number | undefined;
  let totalEpochs: number | undefined;
  // Metric names already reported for the current epoch: a second final line only counts when it adds some.
  let reported: ReadonlySet<string> | undefined;
  // A checkpoint announced by ModelCheckpoint, reported once Keras prints its next stdout line.
  let saving: string | undefined;

  return definePlugin({
    name: "keras",
    description: "Keras model.fit() progress (Epoch N/M and '- loss: ... - val_loss: ...') as epoch reports",
    version: "1.0.0",
    parseLine(line, source): Report[] | undefined {
      let saved: Report | undefined;
      if (saving !== undefined && source.stream === "stdout") {
        saved = { kind: "checkpoint", path: saving };
        saving = undefined;
      }
      const found = parse(line);
      if (saved === undefined) return found;
      return found === undefined ? [saved] : [saved, ...found];
    },
  });

  function parse(line: string): Report[] | undefined {
    if (line.length === 0) return undefined;
    const text = visibleText(line);
    const header = EPOCH.exec(text);
    if (header) {
      epoch = Number(header[1]);
      totalEpochs = Number(header[2]);
      reported = undefined;
      return undefined;
    }
    if (SAVING_PREFIX.test(text)) {
      const at = text.indexOf(SAVING);
      const path = at >= 0 ? text.slice(at + SAVING.length).trim() : "";
      if (path !== "") saving = path;
      return undefined;
    }
    if (epoch === undefined) return undefined;
    const progress = PROGRESS.exec(text);
    if (!progress) return undefined;
    const done = progress[2] === "Unknown" ? text.includes(" - val_") : progress[1] === progress[2];
    if (!done || /\bETA\b/.test(text)) return undefined;
    const metrics = parseMetrics(text);
    if (Object.keys(metrics).length === 0) return undefined;
    if (reported !== undefined && !isStrictSuperset(metrics, reported)) return undefined;
    reported = new Set(Object.keys(metrics));
    const report: EpochReport = { kind: "epoch", epoch, metrics };
    if (totalEpochs !== undefined && totalEpochs >= epoch) report.totalEpochs = totalEpochs;
    return [report];
  }
}

export default kerasPlugin;
