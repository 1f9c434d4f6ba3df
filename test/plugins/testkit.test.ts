import { AssertionError } from "node:assert";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Report } from "../../src/contract/index.ts";
import { builtinPlugin, definePlugin, resolvePlugin } from "../../src/plugins/index.ts";
import {
  checkPluginConformance,
  epochsOf,
  expectReports,
  reportProblems,
  runPluginOnOutput,
  splitOutput,
} from "../../src/plugins/testkit.ts";
import type { TrainerPlugin } from "../../src/plugins/types.ts";

/** A tiny correct plugin: `step N loss X` lines become epoch reports. */
const stepPlugin = (): TrainerPlugin =>
  definePlugin({
    name: "steps",
    parseLine(line) {
      const m = /^step (\d+) loss (\d+(?:\.\d+)?)$/.exec(line);
      return m ? [{ kind: "epoch", epoch: Number(m[1]), metrics: { loss: Number(m[2]) } }] : undefined;
    },
    env: () => ({ STEP_PLUGIN: "1" }),
    command: (argv) => ({ argv: ["python", "-u", ...argv.slice(1)] }),
  });

/** A plugin whose parseLine returns whatever the line asks for. */
const returning = (value: unknown): TrainerPlugin =>
  ({ name: "bad", parseLine: (line: string) => (line === "" ? value : undefined) }) as unknown as TrainerPlugin;

describe("runPluginOnOutput", () => {
  it("splits like the agent, skips ::trainer:: lines and returns the reports in order", () => {
    const text = 'step 1 loss 0.5\r\nnoise\n::trainer::{"epoch":9}\nstep 2 loss 0.25';
    expect(splitOutput(text)).toEqual(["step 1 loss 0.5", "noise", '::trainer::{"epoch":9}', "step 2 loss 0.25"]);
    expect(runPluginOnOutput(stepPlugin, text)).toEqual([
      { kind: "epoch", epoch: 1, metrics: { loss: 0.5 } },
      { kind: "epoch", epoch: 2, metrics: { loss: 0.25 } },
    ]);
    expect(runPluginOnOutput(stepPlugin(), ["step 3 loss 1"])).toHaveLength(1);
    // The agent takes a report out of a line even when other text precedes it; the plugin sees the rest.
    expect(
      runPluginOnOutput(stepPlugin, 'step 4 loss 1::trainer::{"checkpoint":"/c.pt"}\nstep 5 loss 2', {
        protocolReports: true,
      }),
    ).toEqual([
      { kind: "checkpoint", path: "/c.pt" },
      { kind: "epoch", epoch: 4, metrics: { loss: 1 } },
      { kind: "epoch", epoch: 5, metrics: { loss: 2 } },
    ]);
    expect(runPluginOnOutput(definePlugin({ name: "quiet" }), "step 1 loss 1")).toEqual([]);
  });

  it("names the plugin and the line when parseLine throws", () => {
    const boom = definePlugin({
      name: "boom",
      parseLine: (line) => {
        if (line === "b") throw new RangeError("no");
        return undefined;
      },
    });
    expect(() => runPluginOnOutput(boom, "a\nb\n")).toThrow(
      /plugin "boom": parseLine threw on line 2 \("b"\): RangeError: no/,
    );
  });
});

describe("expectReports", () => {
  const reports: Report[] = [
    { kind: "epoch", epoch: 1, totalEpochs: 2, metrics: { loss: 0.5, acc: 0.75 } },
    { kind: "checkpoint", path: "/c/1.pt" },
  ];

  it("passes on a match, comparing only the fields given", () => {
    expectReports(reports, [
      { kind: "epoch", epoch: 1, metrics: { loss: 0.5, acc: 0.75 } },
      { kind: "checkpoint", path: "/c/1.pt" },
    ]);
    expectReports(reports, [{ kind: "epoch", metrics: { loss: 0.5 } }, { kind: "checkpoint" }], { metrics: "subset" });
    expectReports(reports, [{ kind: "epoch", metrics: { loss: 0.5000001, acc: 0.75 } }, { kind: "checkpoint" }], {
      tolerance: 1e-3,
    });
    expect(epochsOf(reports)).toHaveLength(1);
  });

  it("throws an AssertionError listing every difference", () => {
    let error: unknown;
    try {
      expectReports(reports, [{ kind: "epoch", epoch: 2, metrics: { loss: 0.4 } }]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AssertionError);
    const message = (error as Error).message;
    expect(message).toContain("expected 1 report(s), got 2");
    expect(message).toContain("report 0: epoch expected 2, got 1");
    expect(message).toContain("report 0: metric loss expected 0.4, got 0.5");
    expect(message).toContain("report 0: unexpected metric(s) acc");
  });
});

describe("reportProblems", () => {
  it.each([
    [{ kind: "epoch", epoch: 1, metrics: {} }, []],
    [{ kind: "epoch", epoch: -1, metrics: {} }, ["epoch must be a non-negative integer, got -1"]],
    [{ kind: "epoch", epoch: 1.5, metrics: {} }, ["epoch must be a non-negative integer, got 1.5"]],
    [{ kind: "epoch", metrics: {} }, ["epoch is required"]],
    [{ kind: "epoch", epoch: 3, totalEpochs: 2, metrics: {} }, ["epoch 3 is beyond totalEpochs 2"]],
    [{ kind: "epoch", epoch: 1, metrics: { loss: NaN } }, ["metric loss must be a finite number, got null"]],
    [{ kind: "epoch", epoch: 1, metrics: { loss: "0.1" } }, ['metric loss must be a finite number, got "0.1"']],
    [{ kind: "epoch", epoch: 1, metrics: [] }, ["metrics must be an object of numbers, got array"]],
    [{ kind: "epoch", epoch: 1, metrics: {}, loss: 1 }, ["epoch report has unknown field(s) loss"]],
    [{ kind: "checkpoint", path: "" }, ['checkpoint path must be a non-empty string without NUL, got ""']],
    [{ kind: "event", type: "a b" }, ['event type must be 1-64 word characters, got "a b"']],
    [{ kind: "progress" }, ['kind must be "epoch", "checkpoint" or "event", got "progress"']],
    [null, ["a report must be an object, got null"]],
  ])("%j -> %j", (report, problems) => {
    expect(reportProblems(report)).toEqual(problems);
  });
});

describe("checkPluginConformance", () => {
  it("passes a correct plugin and says what it checked", async () => {
    const result = await checkPluginConformance(stepPlugin, { sampleOutput: "step 1 loss 0.5\nstep 2 loss 0.4\n" });
    expect(result.plugin).toBe("steps");
    expect(result.reports).toBe(8); // 2 sample lines x (sample, sample after hostile) x 2 streams
    expect(result.checks).toContain("env returns an object of strings");
    expect(result.checks).toContain("the factory returns a fresh instance per call");
    expect(result.linesParsed).toBeGreaterThan(80);
  });

  it.each([
    [
      "a parseLine that throws",
      {
        name: "thrower",
        parseLine: (l: string) => {
          if (l.length > 10_000) throw new Error("too long");
          return undefined;
        },
      },
      /parseLine threw on hostile lines line \d+ \("=+\.\.\." \(100000 chars\), stdout\): Error: too long/,
    ],
    ["a non-array result", returning("yes"), /parseLine must return an array or undefined, got string/],
    [
      "a NaN metric",
      returning([{ kind: "epoch", epoch: 1, metrics: { loss: NaN } }]),
      /metric loss must be a finite number/,
    ],
    [
      "a negative epoch",
      returning([{ kind: "epoch", epoch: -2, metrics: {} }]),
      /epoch must be a non-negative integer, got -2/,
    ],
    ["an invalid definition", { name: "Bad Name" }, /name must match/],
    ["an unknown field", { name: "x", parseline: () => undefined }, /unknown field\(s\) parseline/],
    ["env with a number", { name: "x", env: () => ({ A: 1 }) }, /env: A must be a string, got number/],
    ["env that throws", { name: "x", env: () => Promise.reject(new Error("no env")) }, /env threw: Error: no env/],
    ["an empty command", { name: "x", command: () => ({ argv: [] }) }, /command must return \{ argv: \[non-empty list/],
    [
      "a retired checkpoints hook",
      { name: "x", checkpoints: () => ["/tmp/extra"] },
      /plugin "x": hook checkpoints is not supported: the agent uploads what is written under CHECKPOINT_DIR/,
    ],
  ])("fails %s", async (_label, plugin, message) => {
    await expect(checkPluginConformance(plugin as TrainerPlugin)).rejects.toThrow(message);
  });

  it("fails a parseLine that takes too long on one line (catastrophic backtracking)", async () => {
    const slow = {
      name: "slow",
      parseLine: (line: string) => {
        if (line.length === 1_000_000) {
          const until = performance.now() + 60;
          while (performance.now() < until);
        }
        return undefined;
      },
    };
    await expect(checkPluginConformance(slow, { maxMillisPerLine: 30 })).rejects.toThrow(
      /parseLine took \d+ ms on hostile lines line \d+ \("x+\.\.\." \(1000000 chars\)\)/,
    );
  });

  it("fails a factory that returns the same stateful object every time", async () => {
    const shared = definePlugin({ name: "shared", parseLine: () => undefined });
    await expect(checkPluginConformance(() => shared)).rejects.toThrow(/returned the same object twice/);
  });
});

describe("the shipped plugins through the kit", () => {
  it.each(["pytorch", "tensorflow", "python"] as const)("built-in %s passes conformance", async (name) => {
    const result = await checkPluginConformance(() => builtinPlugin(name));
    expect(result.plugin).toBe(name);
    expect(result.checks).toContain("env returns an object of strings");
  });

  it("the example plugins load with --plugin semantics (a file whose default export is a factory)", async () => {
    const cwd = fileURLToPath(new URL("../../", import.meta.url));
    for (const [file, name] of [
      ["src/plugins/examples/keras.ts", "keras"],
      ["src/plugins/examples/ultralytics.ts", "ultralytics"],
    ] as const) {
      const plugin = await resolvePlugin({ plugin: file, framework: "pytorch", cwd });
      expect(plugin.name).toBe(name);
      // The resolved plugin keeps the example's parseLine and gains the built-in pytorch launch hooks.
      expect(typeof plugin.parseLine).toBe("function");
      expect(typeof plugin.command).toBe("function");
      await checkPluginConformance(plugin);
    }
  });
});
