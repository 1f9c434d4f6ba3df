import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ultralyticsPlugin } from "../../../src/plugins/examples/ultralytics.ts";
import { checkPluginConformance, epochsOf, expectReports, runPluginOnOutput } from "../../../src/plugins/testkit.ts";

const fixture = (name: string) => readFile(new URL(`./fixtures/${name}`, import.meta.url), "utf8");

describe("ultralytics example plugin", () => {
  it("turns the detect training table and the 'all' validation rows into one report per epoch", async () => {
    const reports = runPluginOnOutput(ultralyticsPlugin, await fixture("ultralytics-detect.txt"));
    const checkpoints = reports.filter((r) => r.kind === "checkpoint");
    expect(checkpoints).toEqual([
      { kind: "checkpoint", path: "runs/detect/train/weights/last.pt" },
      { kind: "checkpoint", path: "runs/detect/train/weights/best.pt" },
    ]);
    expectReports(epochsOf(reports), [
      {
        kind: "epoch",
        epoch: 1,
        totalEpochs: 3,
        metrics: {
          box_loss: 1.168,
          cls_loss: 1.479,
          dfl_loss: 1.226,
          precision: 0.668,
          recall: 0.575,
          mAP50: 0.648,
          "mAP50-95": 0.474,
        },
      },
      {
        kind: "epoch",
        epoch: 2,
        totalEpochs: 3,
        metrics: {
          box_loss: 1.102,
          cls_loss: 1.403,
          dfl_loss: 1.197,
          precision: 0.701,
          recall: 0.598,
          mAP50: 0.672,
          "mAP50-95": 0.489,
        },
      },
      {
        kind: "epoch",
        epoch: 3,
        totalEpochs: 3,
        metrics: {
          box_loss: 1.055,
          cls_loss: 1.342,
          dfl_loss: 1.173,
          precision: 0.734,
          recall: 0.611,
          mAP50: 0.69,
          "mAP50-95": 0.503,
        },
      },
    ]);
  });

  it("learns segment columns from the headers and reports epochs without validation when the next starts", async () => {
    const reports = runPluginOnOutput(ultralyticsPlugin, await fixture("ultralytics-segment.txt"));
    expectReports(reports, [
      {
        kind: "epoch",
        epoch: 1,
        totalEpochs: 3,
        metrics: { box_loss: 1.021, seg_loss: 2.513, cls_loss: 1.611, dfl_loss: 1.093 },
      },
      {
        kind: "epoch",
        epoch: 2,
        totalEpochs: 3,
        metrics: { box_loss: 0.987, seg_loss: 2.302, cls_loss: 1.488, dfl_loss: 1.071 },
      },
      {
        kind: "epoch",
        epoch: 3,
        totalEpochs: 3,
        metrics: {
          box_loss: 0.954,
          seg_loss: 2.198,
          cls_loss: 1.402,
          dfl_loss: 1.055,
          precision: 0.621,
          recall: 0.512,
          mAP50: 0.588,
          "mAP50-95": 0.402,
          mask_precision: 0.598,
          mask_recall: 0.487,
          mask_mAP50: 0.551,
          "mask_mAP50-95": 0.331,
        },
      },
    ]);
  });

  it("reads the 'saved as' form of the stripped-weights line", () => {
    expect(
      runPluginOnOutput(ultralyticsPlugin, [
        "Optimizer stripped from runs/train/weights/last.pt, saved as /ckpt/final.pt, 22.5MB",
        "Optimizer stripped from , 1MB",
      ]),
    ).toEqual([{ kind: "checkpoint", path: "/ckpt/final.pt" }]);
  });

  it("ignores 'all' rows with no training row before them and rows that are not epochs", () => {
    const reports = runPluginOnOutput(ultralyticsPlugin, [
      "                   all        128        929      0.668      0.575      0.648      0.474",
      "       11/10      2.61G      1.168      1.479      1.226        223        640: 100%|",
      "Transferred 355/355 items from pretrained weights",
    ]);
    expect(reports).toEqual([]);
  });

  it("passes the conformance checks with its recorded output", async () => {
    const sampleOutput = (await fixture("ultralytics-detect.txt")) + (await fixture("ultralytics-segment.txt"));
    const result = await checkPluginConformance(ultralyticsPlugin, { sampleOutput });
    expect(result.plugin).toBe("ultralytics");
    expect(result.reports).toBeGreaterThanOrEqual(12);
  });
});
