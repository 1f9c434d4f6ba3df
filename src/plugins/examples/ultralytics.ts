/**
 * Example plugin: turns the Ultralytics (YOLO) training table into epoch reports, with no change to the script.
 *
 *           Epoch    GPU_mem   box_loss   cls_loss   dfl_loss  Instances       Size
 *            1/10      2.61G      1.168      1.479      1.226        223        640: 100%|██████████| 8/8 [...]
 *                   Class     Images  Instances      Box(P          R      mAP50  mAP50-95): 100%|██████████| 4/4
 *                     all        128        929      0.668      0.575      0.648      0.474
 *
 * The header row names the columns (detect, segment and pose tasks have different losses); each training row
 * updates the epoch's losses (tqdm redraws with `\r` or prints a new row), and the `all` row of the validation that
 * follows closes the epoch: one report per epoch with the losses and precision, recall, mAP50, mAP50-95. An epoch
 * whose validation is skipped is reported when the next epoch starts. The final re-validation of best.pt after
 * training (another `all` row with no new training row before it) is not an epoch and is ignored.
 *
 * `Optimizer stripped from runs/detect/train/weights/best.pt, 6.5MB` (printed after the final weights are written)
 * becomes a checkpoint report; the agent uploads it when it lies in CHECKPOINT_DIR (`yolo train
 * project=$CHECKPOINT_DIR ...`).
 */
import type { EpochReport, Report } from "../../contract/index.ts";
import { definePlugin } from "../define.ts";
import type { TrainerPlugin } from "../types.ts";
import { visibleText } from "./keras.ts";

const NUMBER = /^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const ROW = /^\s*(\d{1,9})\/(\d{1,9})\s+(.*)$/;
const DEFAULT_TRAIN_COLUMNS = ["GPU_mem", "box_loss", "cls_loss", "dfl_loss", "Instances", "Size"];
const DEFAULT_VAL_COLUMNS = ["precision", "recall", "mAP50", "mAP50-95"];
const STRIPPED = "Optimizer stripped from ";
const SIZE_SUFFIX = /, \d{1,9}(?:\.\d{1,9})?MB\s*$/;
const VAL_NAMES: Readonly<Record<string, string>> = { P: "precision", R: "recall" };

/** The table part of a row: everything before tqdm's `: 100%|...` suffix, split on whitespace. */
function cells(text: string): string[] {
  const colon = text.search(/:\s+\d{1,3}%\|/);
  const table = colon >= 0 ? text.slice(0, colon) : text.replace(/:\s*$/, "");
  return table.trim().split(/\s+/);
}

/** `Class Images Instances Box(P R mAP50 mAP50-95) Mask(P R ...)` -> metric names for the numbers after Instances. */
function validationColumns(header: string[]): string[] {
  const names: string[] = [];
  let group = "";
  for (const raw of header.slice(3)) {
    let token = raw;
    const open = /^(\w+)\((.*)$/.exec(token);
    if (open) {
      group = open[1]!.toLowerCase();
      token = open[2]!;
    }
    token = token.replace(/\)$/, "");
    if (token === "") continue;
    const base = VAL_NAMES[token] ?? token;
    names.push(group === "" || group === "box" ? base : `${group}_${base}`);
  }
  return names.length > 0 ? names : DEFAULT_VAL_COLUMNS;
}

/** A fresh Ultralytics plugin (it keeps the table's columns and the epoch in progress: one instance per run). */
export function ultralyticsPlugin(): TrainerPlugin {
  let trainColumns = DEFAULT_TRAIN_COLUMNS;
  let valColumns = DEFAULT_VAL_COLUMNS;
  let pending: EpochReport | undefined; // the current epoch's training row, not yet reported
  let lastReported: number | undefined;

  const flush = (): Report[] | undefined => {
    const done = pending;
    pending = undefined;
    if (done === undefined || done.epoch === lastReported) return undefined;
    lastReported = done.epoch;
    return [done];
  };

  return definePlugin({
    name: "ultralytics",
    description: "Ultralytics YOLO training table (Epoch GPU_mem box_loss ... and the 'all' validation row)",
    version: "1.0.0",
    parseLine(line): Report[] | undefined {
      if (line.length === 0) return undefined;
      const text = visibleText(line);
      const trimmed = text.trimStart();
      if (trimmed.startsWith(STRIPPED)) {
        const rest = trimmed.slice(STRIPPED.length).replace(SIZE_SUFFIX, "");
        const savedAs = rest.indexOf(", saved as ");
        const path = (savedAs >= 0 ? rest.slice(savedAs + ", saved as ".length) : rest).trim();
        return path === "" ? undefined : [{ kind: "checkpoint", path }];
      }
      if (trimmed.startsWith("Epoch ") && trimmed.includes("GPU_mem")) {
        trainColumns = cells(text).slice(1);
        return undefined;
      }
      if (trimmed.startsWith("Class ") && trimmed.includes("Instances")) {
        valColumns = validationColumns(cells(text));
        return undefined;
      }
      if (trimmed.startsWith("all ")) {
        if (pending === undefined) return undefined;
        const values = cells(text).slice(3);
        valColumns.forEach((name, i) => {
          const v = values[i];
          if (v !== undefined && NUMBER.test(v) && pending !== undefined) pending.metrics[name] = Number(v);
        });
        return flush();
      }
      const row = ROW.exec(text);
      if (!row) return undefined;
      const epoch = Number(row[1]);
      const total = Number(row[2]);
      if (epoch > total) return undefined;
      const values = cells(row[3]!);
      const metrics: Record<string, number> = {};
      trainColumns.forEach((name, i) => {
        const v = values[i];
        if (v !== undefined && /_loss$/.test(name) && NUMBER.test(v)) metrics[name] = Number(v);
      });
      if (Object.keys(metrics).length === 0) return undefined;
      // A new epoch's first row closes an epoch that had no validation.
      const closed = pending !== undefined && pending.epoch !== epoch ? flush() : undefined;
      if (epoch !== lastReported) pending = { kind: "epoch", epoch, totalEpochs: total, metrics };
      return closed;
    },
  });
}

export default ultralyticsPlugin;
