/**
 * Step 2: `node --experimental-sea-config` turns the bundle and the assets into the preparation blob that gets
 * injected into a copy of the same node binary. The code cache makes V8 skip compiling the bundle at start-up.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface SeaBlobOptions {
  /** Node binary that writes the blob; it must be the binary the blob gets injected into. */
  node: string;
  main: string;
  output: string;
  assets: Record<string, string>;
  useCodeCache: boolean;
  workDir: string;
}

export function seaConfig(options: SeaBlobOptions): Record<string, unknown> {
  return {
    // Relative to workDir (the cwd of the blob step): stack traces then read "trainer-agent.cjs:LINE", not a
    // temporary build folder.
    main: relative(options.workDir, options.main),
    output: options.output,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    // The agent ignores NODE_OPTIONS: a training image may set it for its own node tools, and a stray --require
    // there must not break the pod's command. The child still gets NODE_OPTIONS in its environment.
    execArgv: [],
    execArgvExtension: "none",
    useCodeCache: options.useCodeCache,
    assets: options.assets,
  };
}

export async function writeSeaBlob(options: SeaBlobOptions): Promise<void> {
  const configPath = join(options.workDir, "sea-config.json");
  await writeFile(configPath, JSON.stringify(seaConfig(options), null, 2));
  try {
    await run(options.node, ["--experimental-sea-config", configPath], { cwd: options.workDir });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`node --experimental-sea-config failed: ${stderr.trim() || (error as Error).message}`, {
      cause: error,
    });
  }
}
