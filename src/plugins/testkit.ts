/**
 * The plugin test kit: feed recorded output to a plugin, assert its reports, and run the conformance checks every
 * plugin should pass. Independent of any test runner: failures throw `node:assert`'s AssertionError, which vitest,
 * jest, mocha and `node --test` all print with a diff.
 *
 *     import { runPluginOnOutput, expectReports, checkPluginConformance } from "astrago-trainer/testkit";
 *     const reports = runPluginOnOutput(myPlugin, await readFile("fixtures/train.log", "utf8"));
 *     expectReports(reports, [{ kind: "epoch", epoch: 1, totalEpochs: 3, metrics: { loss: 0.29 } }]);
 *     checkPluginConformance(myPlugin);
 */
import { AssertionError, deepStrictEqual } from "node:assert";
import { loadAgentConfig } from "../config/index.ts";
import type { Report } from "../contract/index.ts";
import { isRecord } from "../internal/values.ts";
import { ReportRelay } from "../process/relay.ts";
import { definePlugin } from "./define.ts";
import type { LineSource, PluginContext, TrainerPlugin } from "./types.ts";

/** A plugin, or a factory returning a fresh one (stateful plugins: one instance per run). */
export type PluginOrFactory = TrainerPlugin | (() => TrainerPlugin);

export interface RunOptions {
  /** Stream the lines are attributed to. Default "stdout". */
  stream?: LineSource["stream"];
  /** Also return the `::trainer::` protocol reports found in the output, in order. Default false. */
  protocolReports?: boolean;
}

function instantiate(plugin: PluginOrFactory): TrainerPlugin {
  return typeof plugin === "function" ? plugin() : plugin;
}

/**
 * Splits output into the lines a plugin sees: on `\n`, dropping one trailing `\r` (CRLF); `\r` inside a line
 * (progress bar redraws) stays. A final line without a newline counts; the empty string after a final newline
 * does not.
 */
export function splitOutput(text: string): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
}

/**
 * Runs a plugin over recorded output (one string, or its lines) exactly as the agent does: through the agent's
 * own relay, so `::trainer::` reports are taken out of the lines first (reports glued to other text included) and
 * over-long lines are cut where the agent cuts them. Returns the plugin's reports in order; with
 * `protocolReports: true` the `::trainer::` reports are merged in where they occurred. A factory is called once,
 * so each run starts with fresh state.
 */
export function runPluginOnOutput(
  plugin: PluginOrFactory,
  output: string | readonly string[],
  options: RunOptions = {},
): Report[] {
  const instance = instantiate(plugin);
  const source: LineSource = { stream: options.stream ?? "stdout" };
  const text = typeof output === "string" ? output : output.map((l) => `${l}\n`).join("");
  const reports: Report[] = [];
  let lineNo = 0;
  const relay = new ReportRelay({
    write: () => true,
    onReport: (report) => {
      if (options.protocolReports === true) reports.push(report);
    },
    onMalformed: () => undefined,
    onLine: (line) => {
      lineNo++;
      if (instance.parseLine === undefined) return;
      let result: readonly Report[] | undefined;
      try {
        result = instance.parseLine(line, source);
      } catch (error) {
        throw new AssertionError({
          message: `plugin "${instance.name}": parseLine threw on line ${lineNo} (${preview(line)}): ${errorText(error)}`,
        });
      }
      if (result !== undefined) reports.push(...result);
    },
  });
  relay.push(Buffer.from(text, "utf8"));
  relay.end();
  return reports;
}

export type ExpectedReport =
  | ({ kind: "epoch" } & Partial<Omit<Extract<Report, { kind: "epoch" }>, "kind">>)
  | ({ kind: "checkpoint" } & Partial<Omit<Extract<Report, { kind: "checkpoint" }>, "kind">>)
  | ({ kind: "event" } & Partial<Omit<Extract<Report, { kind: "event" }>, "kind">>);

export interface ExpectOptions {
  /** Relative tolerance for metric values. Default 1e-9 (values parsed from text compare exactly). */
  tolerance?: number;
  /** "exact" (default): a report's metrics have exactly the expected names; "subset": extra names are allowed. */
  metrics?: "exact" | "subset";
}

/**
 * Asserts the reports match the expected list one to one, in order. Each expected entry names the fields it
 * checks; fields it leaves out are not compared (except metric names, see `options.metrics`).
 */
export function expectReports(
  actual: readonly Report[],
  expected: readonly ExpectedReport[],
  options: ExpectOptions = {},
): void {
  const tolerance = options.tolerance ?? 1e-9;
  const problems: string[] = [];
  if (actual.length !== expected.length) problems.push(`expected ${expected.length} report(s), got ${actual.length}`);
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    const a = actual[i] as unknown as Record<string, unknown>;
    const e = expected[i] as unknown as Record<string, unknown>;
    for (const [field, want] of Object.entries(e)) {
      const got = a[field];
      if (field === "metrics" && isRecord(want)) {
        if (!isRecord(got)) {
          problems.push(`report ${i}: metrics missing`);
          continue;
        }
        for (const [name, value] of Object.entries(want)) {
          const g = got[name];
          if (typeof g !== "number" || typeof value !== "number" || !close(g, value, tolerance))
            problems.push(`report ${i}: metric ${name} expected ${String(value)}, got ${String(g)}`);
        }
        if ((options.metrics ?? "exact") === "exact") {
          const extra = Object.keys(got).filter((k) => !(k in want));
          if (extra.length > 0) problems.push(`report ${i}: unexpected metric(s) ${extra.join(", ")}`);
        }
        continue;
      }
      try {
        deepStrictEqual(got, want);
      } catch {
        problems.push(`report ${i}: ${field} expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
      }
    }
  }
  if (problems.length > 0)
    throw new AssertionError({
      message: `reports do not match:\n  - ${problems.join("\n  - ")}`,
      actual,
      expected,
      operator: "expectReports",
    });
}

/** The epoch reports only, as `{epoch, totalEpochs, metrics}`: handy for snapshot-style checks. */
export function epochsOf(reports: readonly Report[]): Array<Extract<Report, { kind: "epoch" }>> {
  return reports.filter((r): r is Extract<Report, { kind: "epoch" }> => r.kind === "epoch");
}

export interface ConformanceOptions {
  /** Extra lines of your framework's output to include in the checks (recorded output is ideal). */
  sampleOutput?: string | readonly string[];
  /**
   * A single line (of the huge ones) taking longer than this fails the check: it catches regular expressions that
   * backtrack catastrophically, not ordinary slowness. Default 2000 ms.
   */
  maxMillisPerLine?: number;
}

export interface ConformanceResult {
  plugin: string;
  /** Names of the checks that ran (all passed, or the call would have thrown). */
  checks: string[];
  linesParsed: number;
  reports: number;
  /** Slowest single parseLine call, milliseconds. */
  slowestLineMs: number;
}

/** Report fields a well-formed report may carry, per kind. */
const REPORT_FIELDS: Readonly<Record<Report["kind"], readonly string[]>> = {
  epoch: ["kind", "epoch", "totalEpochs", "step", "metrics", "rank"],
  checkpoint: ["kind", "path", "rank"],
  event: ["kind", "type", "message", "data", "rank"],
};

/** Problems of one report against the protocol (empty when well-formed). */
export function reportProblems(report: unknown): string[] {
  if (!isRecord(report)) return [`a report must be an object, got ${typeName(report)}`];
  const kind = report.kind;
  if (kind !== "epoch" && kind !== "checkpoint" && kind !== "event")
    return [`kind must be "epoch", "checkpoint" or "event", got ${JSON.stringify(kind)}`];
  const problems: string[] = [];
  const extra = Object.keys(report).filter((k) => !REPORT_FIELDS[kind].includes(k));
  if (extra.length > 0) problems.push(`${kind} report has unknown field(s) ${extra.join(", ")}`);
  const count = (name: string, value: unknown, required: boolean): void => {
    if (value === undefined) {
      if (required) problems.push(`${name} is required`);
    } else if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
      problems.push(`${name} must be a non-negative integer, got ${show(value)}`);
  };
  count("rank", report.rank, false);
  if (kind === "epoch") {
    count("epoch", report.epoch, true);
    count("totalEpochs", report.totalEpochs, false);
    count("step", report.step, false);
    if (typeof report.epoch === "number" && typeof report.totalEpochs === "number" && report.epoch > report.totalEpochs)
      problems.push(`epoch ${report.epoch} is beyond totalEpochs ${report.totalEpochs}`);
    if (!isRecord(report.metrics))
      problems.push(`metrics must be an object of numbers, got ${typeName(report.metrics)}`);
    else
      for (const [name, value] of Object.entries(report.metrics)) {
        if (name.length === 0 || name.length > 128) problems.push(`metric name ${show(name)} must be 1-128 characters`);
        if (typeof value !== "number" || !Number.isFinite(value))
          problems.push(`metric ${name} must be a finite number, got ${show(value)}`);
      }
  } else if (kind === "checkpoint") {
    if (typeof report.path !== "string" || report.path.length === 0 || report.path.includes("\0"))
      problems.push(`checkpoint path must be a non-empty string without NUL, got ${show(report.path)}`);
  } else {
    if (typeof report.type !== "string" || !/^[\w.:-]{1,64}$/.test(report.type))
      problems.push(`event type must be 1-64 word characters, got ${show(report.type)}`);
    if (report.message !== undefined && (typeof report.message !== "string" || report.message.length > 16_384))
      problems.push(`event message must be a string of at most 16384 characters`);
    if (report.data !== undefined && !isRecord(report.data)) problems.push(`event data must be an object`);
  }
  return problems;
}

/** Lines no plugin may choke on: empty, blank, huge, binary, half-formed framework lines, hostile patterns. */
export function hostileLines(): string[] {
  const lines = [
    "",
    " ",
    "\t\t",
    "\r",
    "\r\r\r",
    "\0\0\0",
    "\u001b[2K\u001b[1A\u001b[31mred\u001b[0m",
    "\ud800 lone surrogate \udfff",
    "💥".repeat(1000),
    "Traceback (most recent call last):",
    '  File "train.py", line 3, in <module>',
    "ValueError: something went wrong",
    "Epoch",
    "Epoch /",
    "Epoch 1/",
    "Epoch 0/0",
    "Epoch -1/10",
    "Epoch 99999999999999999999999/1",
    "Epoch 3/10 extra",
    "1/1 [==============================] - 0s - loss: nan - accuracy: inf",
    "- loss: - acc: -",
    "loss: 1e999999 accuracy: -1e999999",
    "epoch=1 loss=0.5",
    '{"epoch": 1, "loss": 0.5}',
    "  1/0  0G 1 2 3 4 640: 100%|",
    "all 1 2 3 4 5 6",
    "step 10/100 loss 0.3",
    "=".repeat(100_000),
    "a".repeat(100_000),
    "1/1 ".repeat(25_000),
    "- loss: 1 ".repeat(10_000),
    " ".repeat(100_000) + "x",
    "Epoch 1/10\r".repeat(10_000),
    "\r".repeat(100_000),
    "\b".repeat(100_000),
    "9".repeat(100_000),
    "0.".repeat(50_000),
    "(".repeat(50_000) + ")".repeat(50_000),
    "x".repeat(1_000_000),
  ];
  let binary = "";
  for (let i = 0; i < 4096; i++) binary += String.fromCharCode((i * 7919) % 65_536);
  lines.push(binary);
  return lines;
}

function syntheticContext(): PluginContext {
  const config = loadAgentConfig({
    PET_NNODES: "2",
    PET_NPROC_PER_NODE: "1",
    PET_NODE_RANK: "0",
    PET_MASTER_ADDR: "127.0.0.1",
    PET_MASTER_PORT: "29500",
    DATASET_DIR: "/tmp/dataset",
    CHECKPOINT_DIR: "/tmp/checkpoints",
  });
  return Object.freeze({
    config,
    env: Object.freeze({ RANK: "0", WORLD_SIZE: "2", LOCAL_RANK: "0", MASTER_ADDR: "127.0.0.1", MASTER_PORT: "29500" }),
    nodeRank: 0,
  });
}

/**
 * The checks every plugin should pass; throws one AssertionError listing every problem found.
 *   - the definition passes definePlugin (name, hooks are functions, no unknown fields);
 *   - a factory returns a fresh instance each call;
 *   - parseLine never throws and returns undefined or an array of well-formed reports (epoch a non-negative
 *     integer, metrics finite numbers, ...) on hostile lines, on your sample output, and on both streams;
 *   - no single line takes longer than `maxMillisPerLine` (catastrophic regex backtracking);
 *   - env returns string values and command returns a non-empty argv of strings.
 */
export async function checkPluginConformance(
  plugin: PluginOrFactory,
  options: ConformanceOptions = {},
): Promise<ConformanceResult> {
  const problems: string[] = [];
  const checks: string[] = [];
  const maxMs = options.maxMillisPerLine ?? 2000;
  let instance: TrainerPlugin;
  try {
    instance = instantiate(plugin);
  } catch (error) {
    throw new AssertionError({ message: `plugin factory threw: ${errorText(error)}` });
  }
  const label = typeof instance?.name === "string" ? instance.name : "(unnamed)";

  checks.push("definePlugin accepts the definition");
  try {
    definePlugin({ ...instance });
  } catch (error) {
    problems.push(errorText(error));
  }
  if (typeof plugin === "function") {
    checks.push("the factory returns a fresh instance per call");
    try {
      if (plugin() === plugin())
        problems.push("the factory returned the same object twice; return a new plugin per call");
    } catch (error) {
      problems.push(`factory threw on a second call: ${errorText(error)}`);
    }
  }

  let linesParsed = 0;
  let reportCount = 0;
  let slowest = 0;
  if (typeof instance.parseLine === "function") {
    checks.push("parseLine is total on hostile lines and sample output, on stdout and stderr");
    checks.push(`parseLine takes at most ${maxMs} ms on any single line`);
    checks.push("every report is well-formed");
    const sample =
      options.sampleOutput === undefined
        ? []
        : typeof options.sampleOutput === "string"
          ? splitOutput(options.sampleOutput)
          : [...options.sampleOutput];
    const corpora: Array<[string, string[]]> = [
      ["sample output", sample],
      ["hostile lines", hostileLines()],
      ["sample output after hostile lines", [...hostileLines(), ...sample]],
    ];
    for (const stream of ["stdout", "stderr"] as const) {
      for (const [name, lines] of corpora) {
        const fresh = instantiate(plugin);
        const parse = fresh.parseLine?.bind(fresh);
        if (parse === undefined) continue;
        lines.forEach((line, i) => {
          linesParsed++;
          const started = performance.now();
          let result: unknown;
          try {
            result = parse(line, { stream });
          } catch (error) {
            problems.push(
              `parseLine threw on ${name} line ${i + 1} (${preview(line)}, ${stream}): ${errorText(error)}`,
            );
            return;
          }
          const ms = performance.now() - started;
          slowest = Math.max(slowest, ms);
          if (ms > maxMs)
            problems.push(`parseLine took ${ms.toFixed(0)} ms on ${name} line ${i + 1} (${preview(line)})`);
          if (result === undefined) return;
          if (!Array.isArray(result)) {
            problems.push(`parseLine must return an array or undefined, got ${typeName(result)} for ${preview(line)}`);
            return;
          }
          for (const report of result as unknown[]) {
            reportCount++;
            for (const p of reportProblems(report))
              problems.push(`${p} (report from ${name} line ${i + 1}: ${preview(line)})`);
          }
        });
      }
    }
  }

  const ctx = syntheticContext();
  if (typeof instance.env === "function") {
    checks.push("env returns an object of strings");
    try {
      const env: unknown = await instance.env(ctx);
      if (!isRecord(env)) problems.push(`env must return an object, got ${typeName(env)}`);
      else
        for (const [k, v] of Object.entries(env)) {
          if (typeof v !== "string") problems.push(`env: ${k} must be a string, got ${typeName(v)}`);
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) problems.push(`env: ${show(k)} is not a valid variable name`);
        }
    } catch (error) {
      problems.push(`env threw: ${errorText(error)}`);
    }
  }
  if (typeof instance.command === "function") {
    checks.push("command returns a non-empty argv of strings");
    try {
      const cmd: unknown = await instance.command(["python", "train.py", "--epochs", "3"], ctx);
      const argv = isRecord(cmd) ? cmd.argv : undefined;
      if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string"))
        problems.push(`command must return { argv: [non-empty list of strings] }, got ${show(cmd)}`);
      else if (argv[0] === "") problems.push("command: argv[0] must not be empty");
    } catch (error) {
      problems.push(`command threw: ${errorText(error)}`);
    }
  }

  if (problems.length > 0) {
    const shown = problems.slice(0, 20);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : "";
    throw new AssertionError({
      message: `plugin "${label}" fails conformance:\n  - ${shown.join("\n  - ")}${more}`,
    });
  }
  return { plugin: label, checks, linesParsed, reports: reportCount, slowestLineMs: slowest };
}

function close(a: number, b: number, tolerance: number): boolean {
  if (a === b) return true;
  return Math.abs(a - b) <= tolerance * Math.max(Math.abs(a), Math.abs(b));
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function show(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    if (s === undefined) return String(v);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(v);
  }
}

function preview(line: string): string {
  const s = JSON.stringify(line.length > 60 ? `${line.slice(0, 57)}...` : line);
  return line.length > 60 ? `${s} (${line.length} chars)` : s;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
