import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import kerasDefault, { kerasPlugin, visibleText } from "../../../src/plugins/examples/keras.ts";
import { checkPluginConformance, expectReports, runPluginOnOutput } from "../../../src/plugins/testkit.ts";

const fixture = (name: string) => readFile(new URL(`./fixtures/${name}`, import.meta.url), "utf8");

describe("keras example plugin", () => {
  it("turns Keras 2 model.fit output (\\b/\\r redraws, val_ metrics) into one report per epoch", async () => {
    const reports = runPluginOnOutput(kerasPlugin, await fixture("keras2-mnist.txt"));
    expectReports(reports, [
      {
        kind: "epoch",
        epoch: 1,
        totalEpochs: 3,
        metrics: { loss: 0.2946, accuracy: 0.9148, val_loss: 0.1423, val_accuracy: 0.9577 },
      },
      {
        kind: "epoch",
        epoch: 2,
        totalEpochs: 3,
        metrics: { loss: 0.1415, accuracy: 0.9581, val_loss: 0.1032, val_accuracy: 0.9689 },
      },
      {
        kind: "epoch",
        epoch: 3,
        totalEpochs: 3,
        metrics: { loss: 0.1063, accuracy: 0.9681, val_loss: 0.0898, val_accuracy: 0.9728 },
      },
    ]);
  });

  it("reads Keras 3 output with ANSI colours and scientific notation", async () => {
    const reports = runPluginOnOutput(kerasPlugin, await fixture("keras3-mnist.txt"));
    expectReports(reports, [
      {
        kind: "epoch",
        epoch: 1,
        totalEpochs: 2,
        metrics: { accuracy: 0.8779, loss: 0.4275, val_accuracy: 0.962, val_loss: 0.1297, learning_rate: 0.001 },
      },
      {
        kind: "epoch",
        epoch: 2,
        totalEpochs: 2,
        metrics: { accuracy: 0.9657, loss: 0.1161, val_accuracy: 0.9703, val_loss: 0.0991, learning_rate: 0.001 },
      },
    ]);
  });

  it("reads verbose=2 lines, leaves NaN losses out and ignores evaluate() after the last epoch", async () => {
    const reports = runPluginOnOutput(kerasPlugin, await fixture("keras2-verbose2.txt"));
    expectReports(reports, [
      { kind: "epoch", epoch: 1, totalEpochs: 4, metrics: { loss: 0.357, accuracy: 0.899 } },
      { kind: "epoch", epoch: 2, totalEpochs: 4, metrics: { loss: 0.1682, accuracy: 0.9516 } },
      { kind: "epoch", epoch: 3, totalEpochs: 4, metrics: { accuracy: 0.0987 } },
      { kind: "epoch", epoch: 4, totalEpochs: 4, metrics: { accuracy: 0.0987 } },
    ]);
  });

  it("reads Keras 2 writing to a pipe (one line per update): train metrics at N/N, then again with val_ metrics", async () => {
    const reports = runPluginOnOutput(kerasPlugin, await fixture("keras2-pipe.txt"));
    expectReports(reports, [
      { kind: "epoch", epoch: 1, totalEpochs: 2, metrics: { loss: 0.5123, accuracy: 0.8511 } },
      {
        kind: "epoch",
        epoch: 1,
        totalEpochs: 2,
        metrics: { loss: 0.5123, accuracy: 0.8511, val_loss: 0.2871, val_accuracy: 0.9188 },
      },
      { kind: "epoch", epoch: 2, totalEpochs: 2, metrics: { loss: 0.269, accuracy: 0.9232 } },
      {
        kind: "epoch",
        epoch: 2,
        totalEpochs: 2,
        metrics: { loss: 0.269, accuracy: 0.9232, val_loss: 0.2214, val_accuracy: 0.9371 },
      },
    ]);
  });

  it("reports ModelCheckpoint's file once Keras prints again on stdout (the save is done by then)", () => {
    const reports = runPluginOnOutput(kerasPlugin, [
      "Epoch 1/2",
      "375/375 [==============================] - 3s 7ms/step - loss: 0.51 - val_loss: 0.29",
      "",
      "Epoch 1: val_loss improved from inf to 0.28710, saving model to /ckpt/best model.keras",
      "Epoch 2/2",
      "375/375 [==============================] - 3s 7ms/step - loss: 0.27 - val_loss: 0.22",
      "",
      "Epoch 00002: saving model to /ckpt/epoch-02.h5",
      "done",
    ]);
    expectReports(reports, [
      { kind: "epoch", epoch: 1, metrics: { loss: 0.51, val_loss: 0.29 } },
      { kind: "checkpoint", path: "/ckpt/best model.keras" },
      { kind: "epoch", epoch: 2, metrics: { loss: 0.27, val_loss: 0.22 } },
      { kind: "checkpoint", path: "/ckpt/epoch-02.h5" },
    ]);
    // A TensorFlow warning on stderr during the save does not count as Keras printing again.
    const plugin = kerasPlugin();
    plugin.parseLine!("Epoch 1: saving model to /c/x.keras", { stream: "stdout" });
    expect(plugin.parseLine!("W tensorflow/core/...: saving", { stream: "stderr" })).toBeUndefined();
    expect(plugin.parseLine!("", { stream: "stdout" })).toEqual([{ kind: "checkpoint", path: "/c/x.keras" }]);
  });

  it("ignores progress lines before the first Epoch header and mid-epoch ETA lines", () => {
    const reports = runPluginOnOutput(kerasPlugin, [
      "313/313 [==============================] - 0s 1ms/step - loss: 0.1 - accuracy: 0.9",
      "Epoch 1/2",
      "1875/1875 [==============================] - ETA: 0s - loss: 0.30 - accuracy: 0.91",
      " 100/1875 [>.............................] - ETA: 3s - loss: 0.9",
    ]);
    expect(reports).toEqual([]);
  });

  it("adds a second report for an epoch only when a later final line brings new metrics", () => {
    const reports = runPluginOnOutput(kerasPlugin, [
      "Epoch 1/2",
      "1875/1875 ━━━━━━━━━━━━━━━━━━━━ 3s 1ms/step - accuracy: 0.90 - loss: 0.30",
      "1875/1875 ━━━━━━━━━━━━━━━━━━━━ 3s 1ms/step - accuracy: 0.90 - loss: 0.30",
      "1875/1875 ━━━━━━━━━━━━━━━━━━━━ 4s 2ms/step - accuracy: 0.90 - loss: 0.30 - val_accuracy: 0.95 - val_loss: 0.2",
    ]);
    expectReports(reports, [
      { kind: "epoch", epoch: 1, metrics: { accuracy: 0.9, loss: 0.3 } },
      { kind: "epoch", epoch: 1, metrics: { accuracy: 0.9, loss: 0.3, val_accuracy: 0.95, val_loss: 0.2 } },
    ]);
  });

  it("keeps state per instance: a factory gives each run a fresh start", () => {
    const a = kerasPlugin();
    a.parseLine!("Epoch 7/9", { stream: "stdout" });
    const b = kerasPlugin();
    expect(b.parseLine!("10/10 [===] - 1s - loss: 0.5", { stream: "stdout" })).toBeUndefined();
    expect(a.parseLine!("10/10 [===] - 1s - loss: 0.5", { stream: "stdout" })).toEqual([
      { kind: "epoch", epoch: 7, totalEpochs: 9, metrics: { loss: 0.5 } },
    ]);
    expect(kerasDefault).toBe(kerasPlugin);
  });

  it("visibleText keeps what a terminal would show", () => {
    expect(visibleText("a\rb\rc")).toBe("c");
    expect(visibleText("abc\r")).toBe("abc");
    expect(visibleText("\u001b[1m12\u001b[0m\b\b")).toBe("12");
  });

  it("passes the conformance checks with its recorded output", async () => {
    const sampleOutput = (await fixture("keras2-mnist.txt")) + (await fixture("keras3-mnist.txt"));
    const result = await checkPluginConformance(kerasPlugin, { sampleOutput });
    expect(result.plugin).toBe("keras");
    expect(result.reports).toBeGreaterThanOrEqual(10);
  });
});

describe("EXAMPLE_PLUGINS", () => {
  it("names each example by its plugin name", async () => {
    const { EXAMPLE_PLUGINS } = await import("../../../src/plugins/examples/index.ts");
    for (const [name, factory] of Object.entries(EXAMPLE_PLUGINS)) expect(factory().name).toBe(name);
    expect(Object.keys(EXAMPLE_PLUGINS).sort()).toEqual(["keras", "ultralytics"]);
  });
});
