import { CommanderError } from "commander";
import { isAgentError, exitCodeFor, EXIT_CODES } from "../errors/index.ts";

/**
 * Last-resort handler of a CLI: a one-line reason on stderr (the error's message is already secret-free by
 * construction) and the exit code of the error table. Sets process.exitCode so buffered output still drains.
 */
export function reportFatal(program: string, error: unknown): void {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : EXIT_CODES.USAGE;
    return; // commander already printed its message or the help text
  }
  if (isAgentError(error)) {
    process.stderr.write(`${program}: ${error.code}: ${error.message}\n`);
    process.exitCode = exitCodeFor(error.code);
    return;
  }
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`${program}: internal error: ${message}\n`);
  process.exitCode = EXIT_CODES.INTERNAL;
}

/**
 * A reader that closes the pipe early (`trainer-agent env | head -1`, `--help | less` quit) is not an error:
 * without this listener node would die on EPIPE with a stack trace. Other stdout errors still surface unless a
 * command (run's relay) handles them itself.
 */
export function ignoreEpipeOnStdout(): void {
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE" && process.stdout.listenerCount("error") === 1) throw error;
  });
}
