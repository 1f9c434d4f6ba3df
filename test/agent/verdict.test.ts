import { describe, expect, it } from "vitest";
import { AgentError } from "../../src/errors/index.ts";
import type { ChildResult } from "../../src/process/supervise.ts";
import { verdict, type Cancel, type Verdict } from "../../src/agent/verdict.ts";

const child = (exitCode: number, more: Partial<ChildResult> = {}): ChildResult => ({
  exitCode,
  signal: null,
  durationSeconds: 1,
  reason: undefined,
  logTail: [],
  terminationReason: undefined,
  spawnFailed: false,
  ...more,
});
const cancelBy = (signal: "SIGTERM" | "SIGINT"): Cancel => ({
  signal,
  reason: `${signal} received`,
  error: new AgentError("INTERNAL", `${signal} received`),
});
const term = cancelBy("SIGTERM");
const int = cancelBy("SIGINT");
const oldTorchrun = "this torchrun (old torch) crashed: set PET_REDIRECTS=9:1 PET_TEE=9:1 (AttributeError: x)";

type Row = [string, Parameters<typeof verdict>[0], Verdict];
const none = { errorReport: undefined, lastLine: undefined };

describe("verdict", () => {
  it.each<Row>([
    [
      "a clean exit succeeds",
      { child: child(0), error: undefined, cancel: undefined },
      { exitCode: 0, status: "succeeded", reason: undefined, ...none },
    ],
    [
      "the watchdog ended the child: its 143 is the agent's doing, so the exit is STALLED's 75",
      {
        child: child(143, { signal: "SIGTERM", reason: "terminated by SIGTERM after STALL_ACTION=terminate" }),
        error: new AgentError("STALLED", "no output for 9 s"),
        cancel: undefined,
      },
      {
        exitCode: 75,
        status: "failed",
        reason: "terminated by SIGTERM after STALL_ACTION=terminate; STALLED: no output for 9 s",
        errorReport: "error",
        lastLine: undefined,
      },
    ],
    [
      "a failing child gives its code and reason",
      { child: child(3, { reason: "ValueError: lr" }), error: undefined, cancel: undefined },
      { exitCode: 3, status: "failed", reason: "ValueError: lr", ...none },
    ],
    [
      "OOM: SIGKILL is 137, killed (out of memory?)",
      {
        child: child(137, { signal: "SIGKILL", reason: "killed (out of memory?)" }),
        error: undefined,
        cancel: undefined,
      },
      { exitCode: 137, status: "failed", reason: "killed (out of memory?)", ...none },
    ],
    [
      "SIGTERM forwarded to the child: 143, cancelled with the child's reason",
      { child: child(143, { signal: "SIGTERM", reason: "terminated by SIGTERM" }), error: undefined, cancel: term },
      { exitCode: 143, status: "cancelled", reason: "terminated by SIGTERM", ...none },
    ],
    [
      "a child that exits 0 after SIGTERM is still cancelled, and says so",
      { child: child(0), error: undefined, cancel: term },
      { exitCode: 0, status: "cancelled", reason: "SIGTERM received; the command exited with code 0", ...none },
    ],
    [
      "SIGTERM before the command started: 143, nothing failed",
      { child: undefined, error: undefined, cancel: term },
      { exitCode: 143, status: "cancelled", reason: "SIGTERM received before the command started", ...none },
    ],
    [
      "SIGINT before the command started: 130",
      { child: undefined, error: int.error, cancel: int },
      { exitCode: 130, status: "cancelled", reason: "SIGINT received before the command started", ...none },
    ],
    [
      "an abort error with the cancel's text but not the cancel's identity is warned about",
      { child: undefined, error: new AgentError("INTERNAL", "SIGTERM received"), cancel: term },
      {
        exitCode: 143,
        status: "cancelled",
        reason: "SIGTERM received before the command started",
        errorReport: "warn",
        lastLine: undefined,
      },
    ],
    [
      "a dataset failure while stopping is a warning, not the verdict",
      { child: undefined, error: new AgentError("DATASET_NOT_FOUND", "no s3://b/d"), cancel: term },
      {
        exitCode: 143,
        status: "cancelled",
        reason: "SIGTERM received before the command started",
        errorReport: "warn",
        lastLine: undefined,
      },
    ],
    [
      "configuration error before the child: 78",
      { child: undefined, error: new AgentError("CONFIG_INVALID", "PET_NNODES must be..."), cancel: undefined },
      {
        exitCode: 78,
        status: "failed",
        reason: "CONFIG_INVALID: PET_NNODES must be...",
        errorReport: "error",
        lastLine: undefined,
      },
    ],
    [
      "dataset missing before the child: 66",
      { child: undefined, error: new AgentError("DATASET_NOT_FOUND", "no s3://b/d"), cancel: undefined },
      {
        exitCode: 66,
        status: "failed",
        reason: "DATASET_NOT_FOUND: no s3://b/d",
        errorReport: "error",
        lastLine: undefined,
      },
    ],
    [
      "a final upload failure after a clean child turns it into 74",
      { child: child(0), error: new AgentError("CHECKPOINT_UPLOAD_FAILED", "store down"), cancel: undefined },
      {
        exitCode: 74,
        status: "failed",
        reason: "CHECKPOINT_UPLOAD_FAILED: store down",
        errorReport: "error",
        lastLine: undefined,
      },
    ],
    [
      "the child's own failure comes before the agent's, both reasons kept",
      {
        child: child(2, { reason: "ValueError: x" }),
        error: new AgentError("CHECKPOINT_UPLOAD_FAILED", "store down"),
        cancel: undefined,
      },
      {
        exitCode: 2,
        status: "failed",
        reason: "ValueError: x; CHECKPOINT_UPLOAD_FAILED: store down",
        errorReport: "error",
        lastLine: undefined,
      },
    ],
    [
      "an agent failure after SIGTERM is cancelled, with the child's code",
      {
        child: child(143, { signal: "SIGTERM", reason: "terminated by SIGTERM" }),
        error: new AgentError("CHECKPOINT_UPLOAD_FAILED", "did not finish within 5 s (TERMINATION_SYNC_SECONDS)"),
        cancel: term,
      },
      {
        exitCode: 143,
        status: "cancelled",
        reason: "terminated by SIGTERM; CHECKPOINT_UPLOAD_FAILED: did not finish within 5 s (TERMINATION_SYNC_SECONDS)",
        errorReport: "error",
        lastLine: undefined,
      },
    ],
    [
      "a command that never started ends on CHILD_SPAWN_FAILED",
      {
        child: child(127, { spawnFailed: true, reason: "command not found: trian.py" }),
        error: undefined,
        cancel: undefined,
      },
      {
        exitCode: 127,
        status: "failed",
        reason: "command not found: trian.py",
        errorReport: undefined,
        lastLine: "trainer-agent: CHILD_SPAWN_FAILED: command not found: trian.py",
      },
    ],
    [
      "the old-torchrun crash ends on its remedy",
      {
        child: child(1, {
          reason: oldTorchrun,
          known: { code: "TORCHRUN_OLD_REDIRECTS", remedy: "set PET_REDIRECTS" },
        }),
        error: undefined,
        cancel: undefined,
      },
      {
        exitCode: 1,
        status: "failed",
        reason: oldTorchrun,
        errorReport: undefined,
        lastLine: `trainer-agent: TORCHRUN_OLD_REDIRECTS: ${oldTorchrun}`,
      },
    ],
  ])("%s", (_name, input, expected) => {
    expect(verdict(input)).toEqual(expected);
  });
});
