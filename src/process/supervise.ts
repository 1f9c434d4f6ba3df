/**
 * Runs the training command: spawned by argv (never through a shell) as the leader of its own process group,
 * its stdout/stderr relayed unchanged to ours with the reports taken out, terminated by the fixed protocol
 * (forward the signal to the group, wait the grace period, SIGKILL the group), and summed up in one result
 * shape for success and failure. When the child exits on its own, whatever it left running in its group
 * (a background process, a dataloader worker) is ended by the same protocol: the job ends with its leader.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import type { Writable, Readable } from "node:stream";
import type { Logger } from "pino";
import type { Report } from "../contract/report.ts";
import { endingOf, type KnownFailure } from "./classify.ts";
import { exitCodeOfSignal, groupRunning, signalGroup } from "./group.ts";
import { ReportRelay } from "./relay.ts";
import { LogTail } from "./tail.ts";

export type StreamName = "stdout" | "stderr";

/** Quiet time after which bytes held as a possible marker start are written anyway, ms. */
const PREFIX_FLUSH_MS = 50;
/** How often the child's group is checked for leftovers after the child exited, ms. */
const GROUP_POLL_MS = 50;

/** How the child ended. The same shape whether it succeeded, failed, was killed or never started. */
export interface ChildResult {
  /** The child's exit code, 128 + signal number when a signal ended it, 127/126 when it could not start. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  durationSeconds: number;
  /** One-line reason; undefined for a clean exit 0. */
  reason: string | undefined;
  /** The last LOG_TAIL_LINES lines of output (reports removed), oldest first. */
  logTail: string[];
  /** The first reason the agent asked the child to stop, if it did. */
  terminationReason: string | undefined;
  /** True when the child did not start at all (command not found, not executable). */
  spawnFailed: boolean;
  /** Set when the ending is one with a known remedy (already part of `reason`). */
  known?: KnownFailure | undefined;
}

export interface SuperviseOptions {
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd?: string;
  stdout: Writable;
  stderr: Writable;
  logger: Logger;
  onReport: (report: Report, source: StreamName) => void;
  /** Called for every chunk of output (reports included): the child is alive. Keep it cheap. */
  onOutput?: (() => void) | undefined;
  /** Called with true when the output is paused for a slow reader of stdout/stderr, false when all resumed. */
  onRelayPaused?: ((paused: boolean) => void) | undefined;
  /** A plugin's line parser; when absent no per-line strings are made. */
  onLine?: ((line: string, source: StreamName) => void) | undefined;
  tailLines: number;
  graceSeconds: number;
  spawn?: (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;
  now?: () => number;
  /** After the child exits, how long to wait for its pipes to close with no data arriving (grandchildren), ms. */
  pipeIdleMs?: number;
}

export interface Supervised {
  /** The child's pid (its process group id); undefined when it could not start. */
  readonly pid: number | undefined;
  /** Resolves once when the child has exited and its output is relayed. Never rejects. */
  readonly result: Promise<ChildResult>;
  /** Resolves when the child is running (or failed to start). */
  readonly started: Promise<void>;
  /**
   * Starts the termination protocol: `signal` to the group now, SIGKILL after the grace period. The first
   * reason is the one recorded. A second SIGINT (Ctrl-C twice) kills at once.
   */
  terminate(signal: "SIGTERM" | "SIGINT", reason: string): void;
}

export function supervise(options: SuperviseOptions): Supervised {
  const spawn = options.spawn ?? nodeSpawn;
  const now = options.now ?? Date.now;
  const log = options.logger;
  const started = now();
  const tail = new LogTail(options.tailLines);
  const [command, ...args] = options.argv;
  if (command === undefined) throw new TypeError("supervise: argv must not be empty");

  let spawnError: NodeJS.ErrnoException | undefined;
  let exited = false;
  let terminationReason: string | undefined;
  let killedAfterGrace = false;
  let graceTimer: NodeJS.Timeout | undefined;
  let sigintCount = 0;

  const child: ChildProcess = spawn(command, args, {
    detached: true, // its own process group, so a signal reaches torchrun's workers and dataloader processes
    stdio: ["inherit", "pipe", "pipe"],
    env: options.env,
    cwd: options.cwd,
    windowsHide: true,
  });
  const pid = child.pid;

  const killGroup = (signal: NodeJS.Signals): void => {
    if (pid === undefined) return;
    try {
      signalGroup(pid, signal);
    } catch (error) {
      log.warn({ err: error, signal }, "could not signal the child");
    }
  };

  /** After the leader exited on its own: SIGTERM what is left of its group, SIGKILL it after the grace period. */
  const endGroup = async (): Promise<void> => {
    if (pid === undefined || !(await groupRunning(pid))) return;
    log.warn(
      { pid, grace_seconds: options.graceSeconds },
      "the child exited but processes of its group still run: SIGTERM to the group",
    );
    killGroup("SIGTERM");
    const deadline = now() + options.graceSeconds * 1000;
    // Nothing signals a group becoming empty (its members are not our children), so it is polled.
    let running: boolean;
    while ((running = await groupRunning(pid)) && now() < deadline) await sleep(GROUP_POLL_MS);
    if (!running) return;
    log.warn(
      { grace_seconds: options.graceSeconds },
      "processes of the child's group outlived the grace period: SIGKILL",
    );
    killGroup("SIGKILL");
  };

  const startedPromise = new Promise<void>((resolve) => {
    child.once("spawn", () => resolve());
    child.once("error", () => resolve());
  });

  const relayDone = (name: StreamName, source: Readable | null, dest: Writable): Promise<void> => {
    if (source === null) return Promise.resolve();
    let destBroken = false;
    const relay = new ReportRelay({
      write: (chunk) => {
        if (destBroken) return true;
        return dest.write(chunk);
      },
      onReport: (report) => options.onReport(report, name),
      onMalformed: (problem, text) =>
        log.warn({ stream: name, problem, line: text }, "malformed ::trainer:: report ignored (relayed as output)"),
      onLine: options.onLine === undefined ? undefined : (line) => options.onLine?.(line, name),
      onRelayed: (chunk) => tail.record(name, chunk),
    });
    const onDestError = (): void => {
      // Our own stdout/stderr is gone (EPIPE): keep draining the child so it never blocks on a full pipe.
      destBroken = true;
      source.resume();
    };
    dest.on("error", onDestError);
    return new Promise<void>((resolve) => {
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        if (prefixTimer !== undefined) clearTimeout(prefixTimer);
        relay.end();
        dest.off("error", onDestError);
        resolve();
      };
      let waiting = false;
      let prefixTimer: NodeJS.Timeout | undefined;
      source.on("data", (chunk: Buffer) => {
        lastData = now();
        options.onOutput?.();
        if (prefixTimer !== undefined) clearTimeout(prefixTimer);
        const ok = relay.push(chunk);
        // A chunk that ended in what may be the start of `::trainer::` (a prompt ending in ':') is written
        // after a short quiet time rather than held until more output comes.
        prefixTimer = relay.holdsMarkerPrefix
          ? setTimeout(() => {
              prefixTimer = undefined;
              relay.flushMarkerPrefix();
            }, PREFIX_FLUSH_MS)
          : undefined;
        if (!ok && !destBroken && !waiting) {
          // Backpressure: the child blocks on its full pipe until our reader catches up, as without the agent.
          waiting = true;
          if (pausedStreams++ === 0) options.onRelayPaused?.(true);
          source.pause();
          dest.once("drain", () => {
            waiting = false;
            if (--pausedStreams === 0) options.onRelayPaused?.(false);
            lastData = now();
            source.resume();
          });
        }
      });
      source.once("end", finish);
      source.once("close", finish);
      source.once("error", finish);
      streamClosers.push(() => {
        source.destroy();
        finish();
      });
    });
  };

  let lastData = now();
  /** Streams paused for a slow reader: their silence is ours, not the child's, so it is not idleness. */
  let pausedStreams = 0;
  const streamClosers: (() => void)[] = [];
  const relays = Promise.all([
    relayDone("stdout", child.stdout, options.stdout),
    relayDone("stderr", child.stderr, options.stderr),
  ]);

  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error: NodeJS.ErrnoException) => {
      if (pid === undefined || child.exitCode === null) {
        spawnError = error;
        resolve({ code: null, signal: null });
      } else log.warn({ err: error }, "child process error");
    });
  });

  const result = (async (): Promise<ChildResult> => {
    const exit = await exitPromise;
    exited = true;
    if (graceTimer !== undefined) clearTimeout(graceTimer);
    // The leader is gone: nothing else of its group may linger (when we were stopping the job, the grace is spent).
    if (spawnError === undefined) {
      if (terminationReason !== undefined) killGroup("SIGKILL");
      else await endGroup();
    }
    if (spawnError !== undefined) for (const close of streamClosers) close();
    await waitForPipes(
      relays,
      () => (pausedStreams > 0 ? now() : lastData),
      now,
      options.pipeIdleMs ?? 1_000,
      () => {
        for (const close of streamClosers) close();
      },
    );
    let exitCode: number;
    if (spawnError !== undefined) exitCode = spawnError.code === "EACCES" ? 126 : 127;
    else if (exit.signal !== null) exitCode = exitCodeOfSignal(exit.signal);
    else exitCode = exit.code ?? 1;
    const logTail = tail.lines();
    const { reason, known } = endingOf({
      exitCode,
      signal: exit.signal,
      logTail,
      killedAfterGrace,
      graceSeconds: options.graceSeconds,
      terminationReason,
      spawnError,
      command,
    });
    const res: ChildResult = {
      exitCode,
      signal: exit.signal,
      durationSeconds: (now() - started) / 1000,
      reason,
      logTail,
      terminationReason,
      spawnFailed: spawnError !== undefined,
      known,
    };
    return res;
  })();

  return {
    pid,
    result,
    started: startedPromise,
    terminate(signal, reason) {
      if (exited || pid === undefined) {
        terminationReason ??= reason;
        return;
      }
      if (signal === "SIGINT") sigintCount++;
      if (terminationReason !== undefined) {
        if (sigintCount >= 2) {
          log.warn("second interrupt: killing the child now");
          killedAfterGrace = true;
          killGroup("SIGKILL");
        }
        return; // first reason only; the protocol already runs
      }
      terminationReason = reason;
      log.info(
        { signal, pid, grace_seconds: options.graceSeconds },
        `forwarding ${signal} to the child's process group`,
      );
      killGroup(signal);
      graceTimer = setTimeout(() => {
        if (exited) return;
        log.warn({ grace_seconds: options.graceSeconds }, "child did not exit within the grace period: SIGKILL");
        killedAfterGrace = true;
        killGroup("SIGKILL");
      }, options.graceSeconds * 1000);
    },
  };
}

/** Waits for both pipes to close; after the child exits, gives up once no data came for `idleMs`. */
async function waitForPipes(
  relays: Promise<unknown>,
  lastData: () => number,
  now: () => number,
  idleMs: number,
  closeAll: () => void,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const idle = new Promise<void>((resolve) => {
    const check = (): void => {
      const quiet = now() - lastData();
      if (quiet >= idleMs) resolve();
      else timer = setTimeout(check, idleMs - quiet);
    };
    timer = setTimeout(check, idleMs);
  });
  try {
    const which = await Promise.race([relays.then(() => "closed" as const), idle.then(() => "idle" as const)]);
    if (which === "idle") {
      closeAll(); // a grandchild still holds the pipe open; the job's output is the leader's
      await relays;
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
