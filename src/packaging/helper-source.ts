/**
 * The Python helper module (`import trainer_agent`) that training scripts use to report progress. The single-file
 * agent carries it as an embedded asset; run from sources it is read from python/trainer_agent.py in the repo.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { AgentError } from "../errors/index.ts";
import { ASSETS, isSingleExecutable, readEmbeddedText } from "./sea.ts";
import { packagePath } from "./package-root.ts";

/** File name the helper must have to be importable as `trainer_agent`. */
export const HELPER_FILE_NAME = "trainer_agent.py";

/** Where the helper lives in the source tree (also what the build embeds). */
export function helperSourcePath(): string {
  return (
    packagePath("python", HELPER_FILE_NAME) ?? fileURLToPath(new URL("../../python/trainer_agent.py", import.meta.url))
  );
}

export interface HelperSourceOptions {
  /** Embedded asset reader; defaults to the single executable's assets. */
  readEmbedded?: (name: string) => string | undefined;
  /** Whether this process is the single-file build; defaults to `node:sea`'s answer. */
  singleExecutable?: boolean;
  /** Path read when not running as the single-file build. */
  sourcePath?: string;
}

/** The helper's source text; AgentError INTERNAL when this build or checkout has none. */
export async function loadHelperSource(options: HelperSourceOptions = {}): Promise<string> {
  const single = options.singleExecutable ?? isSingleExecutable();
  if (single) {
    const text = (options.readEmbedded ?? readEmbeddedText)(ASSETS.helper);
    if (text === undefined) {
      throw new AgentError(
        "INTERNAL",
        `this trainer-agent build carries no Python helper (${HELPER_FILE_NAME}); rebuild it with npm run build:agent`,
      );
    }
    return text;
  }
  const path = options.sourcePath ?? helperSourcePath();
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new AgentError("INTERNAL", `cannot read the Python helper at ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
