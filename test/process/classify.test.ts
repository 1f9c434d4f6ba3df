import { describe, expect, it } from "vitest";
import { classifyEnding, endingOf, knownFailure, lastTracebackLine } from "../../src/process/classify.ts";

const tb = (...last: string[]) => [
  "Traceback (most recent call last):",
  '  File "t.py", line 1, in <module>',
  "    f()",
  ...last,
];

describe("classifyEnding", () => {
  it.each([
    [{ exitCode: 0, signal: null, logTail: [] }, undefined],
    [{ exitCode: 137, signal: null, logTail: [] }, "killed (out of memory?)"],
    [{ exitCode: 137, signal: "SIGKILL" as const, logTail: tb("ValueError: x") }, "killed (out of memory?)"],
    [
      { exitCode: 1, signal: null, logTail: ["epoch 1", ...tb("ValueError: lr must be > 0")] },
      "ValueError: lr must be > 0",
    ],
    [
      { exitCode: 1, signal: null, logTail: ["x", "NCCL WARN NET/Socket : peer closed: connection error"] },
      "NCCL error: NCCL WARN NET/Socket : peer closed: connection error",
    ],
    [
      {
        exitCode: 134,
        signal: null,
        logTail: ["[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1)"],
      },
      "NCCL error: [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1)",
    ],
    [
      { exitCode: 1, signal: null, logTail: ["CUDA error: device-side assert triggered"] },
      "CUDA error: CUDA error: device-side assert triggered",
    ],
    [
      { exitCode: 127, signal: null, logTail: ["sh: 1: pyhton: not found"] },
      "command not found: sh: 1: pyhton: not found",
    ],
    [{ exitCode: 139, signal: "SIGSEGV" as const, logTail: [] }, "terminated by SIGSEGV"],
    [
      { exitCode: 143, signal: "SIGTERM" as const, logTail: [], terminationReason: "SIGTERM received" },
      "terminated by SIGTERM after SIGTERM received",
    ],
    [{ exitCode: 2, signal: null, logTail: ["usage: x"] }, "exited with code 2"],
    [
      {
        exitCode: 137,
        signal: "SIGKILL" as const,
        logTail: [],
        killedAfterGrace: true,
        graceSeconds: 25,
        terminationReason: "SIGTERM received",
      },
      "killed: did not exit within the 25 s grace period after SIGTERM received",
    ],
  ])("%o -> %s", (facts, reason) => {
    expect(classifyEnding(facts)).toBe(reason);
  });

  it("names a command that could not start", () => {
    const e = Object.assign(new Error("spawn nope ENOENT"), { code: "ENOENT" });
    expect(classifyEnding({ exitCode: 127, signal: null, logTail: [], spawnError: e, command: "nope" })).toBe(
      "command not found: nope",
    );
  });

  it("names the variables that avoid old torchrun's --redirects crash, and only for that crash", () => {
    const crash = [
      "Traceback (most recent call last):",
      '  File "/usr/lib/python3/dist-packages/torch/distributed/elastic/multiprocessing/api.py", line 162, in to_map',
      "    map[i] = val_or_map.get(i, Std.NONE)",
      "AttributeError: 'NoneType' object has no attribute 'get'",
    ];
    expect(knownFailure(crash)?.code).toBe("TORCHRUN_OLD_REDIRECTS");
    expect(classifyEnding({ exitCode: 1, signal: null, logTail: crash })).toMatch(
      /set PET_REDIRECTS=9:1 PET_TEE=9:1 \(AttributeError: 'NoneType' object has no attribute 'get'\)$/,
    );
    // The same exception from the user's own code is not torchrun's crash.
    const own = [crash[0]!, '  File "train.py", line 3, in <module>', crash[3]!];
    expect(knownFailure(own)).toBeUndefined();
    expect(classifyEnding({ exitCode: 1, signal: null, logTail: own })).toBe(crash[3]);
  });

  it("gives the known failure with the reason from one scan; a SIGKILL keeps its own reason", () => {
    const crash = [
      "Traceback (most recent call last):",
      '  File "/usr/lib/python3/dist-packages/torch/distributed/elastic/multiprocessing/api.py", line 162, in to_map',
      "AttributeError: 'NoneType' object has no attribute 'get'",
    ];
    const failed = endingOf({ exitCode: 1, signal: null, logTail: crash });
    expect(failed.known?.code).toBe("TORCHRUN_OLD_REDIRECTS");
    expect(failed.reason).toContain(failed.known!.remedy);
    const killed = endingOf({ exitCode: 137, signal: "SIGKILL", logTail: crash });
    expect(killed).toEqual({ reason: "killed (out of memory?)", known: failed.known });
    expect(endingOf({ exitCode: 0, signal: null, logTail: crash })).toEqual({ reason: undefined, known: undefined });
  });
});

describe("lastTracebackLine", () => {
  it("prefers the worker's exception over torchrun's ChildFailedError and ignores [rankN]: prefixes", () => {
    const lines = [
      ...tb("[rank1]:RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"),
      "Traceback (most recent call last):",
      '  File "/usr/bin/torchrun", line 33, in <module>',
      "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
      "============================================================",
    ];
    expect(lastTracebackLine(lines)).toBe("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB");
  });

  it("takes the last exception of a chained traceback", () => {
    const lines = [
      ...tb("KeyError: 'a'"),
      "",
      "During handling of the above exception, another exception occurred:",
      "",
      ...tb("RuntimeError: b"),
    ];
    expect(lastTracebackLine(lines)).toBe("RuntimeError: b");
  });
});
