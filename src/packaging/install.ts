/**
 * `trainer-agent install DIR`: the init container's job. Copies the single-file agent and the Python helper into a
 * shared volume so a stock framework image (no Node.js) can run `/opt/agent/trainer-agent run -- ...` and
 * `import trainer_agent` with `PYTHONPATH=/opt/agent`. Each file is written to a temporary name in DIR and renamed
 * into place, so a reader never sees half a file and running it twice gives the same result.
 */
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { AgentError } from "../errors/index.ts";
import { HELPER_FILE_NAME } from "./helper-source.ts";

/** Name of the agent executable inside DIR. */
export const AGENT_FILE_NAME = "trainer-agent";
/** Default DIR, the volume the runtimes mount (runtimes/). */
export const DEFAULT_INSTALL_DIR = "/opt/agent";

export interface InstallOptions {
  /** Target directory, created when missing. */
  dir: string;
  /** The agent executable to copy (the running single-file agent: process.execPath). */
  executable: string;
  /** The helper's source text; undefined installs the agent only. */
  helperSource: string | undefined;
}

export interface InstalledFile {
  path: string;
  bytes: number;
  /** False when the source already was this very file (installing into the directory the agent runs from). */
  copied: boolean;
}

export interface InstallResult {
  agent: InstalledFile;
  helper: InstalledFile | undefined;
}

export async function installAgent(options: InstallOptions): Promise<InstallResult> {
  const dir = resolve(options.dir);
  await wrap(`cannot create ${dir}`, () => mkdir(dir, { recursive: true }));
  const agentPath = join(dir, AGENT_FILE_NAME);
  const agent = await installExecutable(options.executable, agentPath);
  let helper: InstalledFile | undefined;
  if (options.helperSource !== undefined) {
    const helperPath = join(dir, HELPER_FILE_NAME);
    const source = options.helperSource;
    await atomicWrite(helperPath, 0o644, (tmp) => writeFile(tmp, source, { mode: 0o644 }));
    helper = { path: helperPath, bytes: Buffer.byteLength(source), copied: true };
  }
  return { agent, helper };
}

async function installExecutable(source: string, target: string): Promise<InstalledFile> {
  const info = await wrap(`cannot read the agent executable ${source}`, () => stat(source));
  if (!info.isFile()) throw new AgentError("INSTALL_FAILED", `the agent executable ${source} is not a regular file`);
  if ((await realpathOrUndefined(source)) === (await realpathOrUndefined(target))) {
    return { path: target, bytes: info.size, copied: false };
  }
  await atomicWrite(target, 0o755, (tmp) => copyFile(source, tmp));
  return { path: target, bytes: info.size, copied: true };
}

/** Writes through `write(tmp)` then renames tmp over `target`; tmp is removed on any failure. */
async function atomicWrite(target: string, mode: number, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = join(resolve(target, ".."), `.${basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await wrap(`cannot write ${target}`, async () => {
      await write(tmp);
      await chmod(tmp, mode); // copyFile keeps the source's mode and writeFile's mode obeys the umask
      await rename(tmp, target);
    });
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

async function realpathOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await realpath(path);
  } catch {
    return undefined;
  }
}

async function wrap<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof AgentError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new AgentError("INSTALL_FAILED", `${what}: ${code ?? (error as Error).message}`, { cause: error });
  }
}

/** Writes the helper to `path` (its directory created), atomically; returns the absolute path. */
export async function writeHelper(path: string, source: string): Promise<string> {
  const target = resolve(path);
  await wrap(`cannot create ${resolve(target, "..")}`, () => mkdir(resolve(target, ".."), { recursive: true }));
  await atomicWrite(target, 0o644, (tmp) => writeFile(tmp, source, { mode: 0o644 }));
  return target;
}
