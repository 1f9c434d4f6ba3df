/**
 * How to start this same agent again as a child process (`trainer-agent local` runs N agents): the single-file
 * build is its own interpreter, while a source run needs node, its flags and the entry script.
 */
import { isSingleExecutable } from "./sea.ts";

export interface SelfCommand {
  command: string;
  /** Arguments that come before the sub-command's own (empty for the single-file build). */
  args: string[];
}

export function selfCommand(
  proc: Pick<NodeJS.Process, "execPath" | "execArgv" | "argv"> = process,
  singleExecutable: boolean = isSingleExecutable(),
): SelfCommand {
  if (singleExecutable) return { command: proc.execPath, args: [] };
  const script = proc.argv[1];
  return { command: proc.execPath, args: [...proc.execArgv, ...(script === undefined ? [] : [script])] };
}
