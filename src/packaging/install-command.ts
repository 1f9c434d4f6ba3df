/** The `install` sub-command's logic, apart from commander so it can be tested directly. */
import { AgentError } from "../errors/index.ts";
import { loadHelperSource } from "./helper-source.ts";
import { installAgent, type InstalledFile } from "./install.ts";
import { isSingleExecutable } from "./sea.ts";

export interface InstallCommandInput {
  dir: string;
  from: string | undefined;
  helper: boolean;
  /** Defaults: this process's executable and whether it is the single-file build. */
  execPath?: string;
  singleExecutable?: boolean;
}

/** Installs and returns the lines to print, one per file. */
export async function runInstall(input: InstallCommandInput): Promise<string[]> {
  const single = input.singleExecutable ?? isSingleExecutable();
  let executable = input.from;
  if (executable === undefined) {
    if (!single) {
      throw new AgentError(
        "USAGE",
        "install copies the single-file agent, but this one runs from sources on node: " +
          "build it (npm run build:agent) and pass --from dist/trainer-agent",
      );
    }
    executable = input.execPath ?? process.execPath;
  }
  const helperSource = input.helper ? await loadHelperSource({ singleExecutable: single }) : undefined;
  const result = await installAgent({ dir: input.dir, executable, helperSource });
  const lines = [installedLine(result.agent)];
  if (result.helper !== undefined) lines.push(installedLine(result.helper));
  return lines;
}

function installedLine(file: InstalledFile): string {
  const size = file.bytes >= 1 << 20 ? `${(file.bytes / (1 << 20)).toFixed(1)} MiB` : `${file.bytes} bytes`;
  return `${file.copied ? "installed" : "already in place"} ${file.path} (${size})`;
}
