/**
 * DATASET_DIR and CHECKPOINT_DIR: a dataset pull replaces DATASET_DIR wholesale and the checkpoint sync uploads all
 * of CHECKPOINT_DIR, so neither may be the other, hold the other, or be a folder whose replacement destroys
 * something else (`/`, a system folder, HOME, the working folder or one above it).
 */
import path from "node:path";
import type { EnvReader } from "./parse.ts";

/** Top-level folders of a Linux image (FHS) that a pull must never replace. */
const SYSTEM_DIRS = new Set(
  ["bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt", "proc", "root"]
    .concat(["run", "sbin", "srv", "sys", "tmp", "usr", "var"])
    .map((d) => `/${d}`),
);

/** Whether a and b (absolute, resolved) are the same folder or one holds the other. */
export function dirsOverlap(a: string, b: string): boolean {
  const within = (x: string, y: string): boolean => x === y || x.startsWith(y.endsWith("/") ? y : `${y}/`);
  return within(a, b) || within(b, a);
}

/** Why replacing `dir` (absolute, resolved) would be dangerous, or undefined when it is fine. */
export function dangerous(dir: string, home: string | undefined, cwd: string): string | undefined {
  if (dir === "/") return "the root folder";
  if (SYSTEM_DIRS.has(dir)) return "a system folder";
  if (home !== undefined && path.resolve(home) === dir) return "HOME";
  if (cwd === dir || cwd.startsWith(`${dir}/`)) return "the working folder or a folder above it";
  return undefined;
}

/** Reads both folders (resolved to absolute paths), collecting a problem naming the variable(s) for each bad one. */
export function readWorkDirs(
  r: EnvReader,
  env: Readonly<Record<string, string | undefined>>,
  cwd = process.cwd(),
): { datasetDir: string; checkpointDir: string } {
  const datasetDir = readWorkDir(r, env, "DATASET_DIR", "/workspace/dataset", cwd);
  const checkpointDir = readWorkDir(r, env, "CHECKPOINT_DIR", "/workspace/checkpoints", cwd);
  if (dirsOverlap(datasetDir, checkpointDir))
    r.problems.push(
      `DATASET_DIR (${JSON.stringify(datasetDir)}) and CHECKPOINT_DIR (${JSON.stringify(checkpointDir)}) must be ` +
        "separate folders, neither inside the other: a dataset pull replaces DATASET_DIR and everything in it, " +
        "and every file in CHECKPOINT_DIR is uploaded as a checkpoint",
    );
  return { datasetDir, checkpointDir };
}

/** One work folder (resolved to an absolute path), with a problem naming `name` when it is blank or dangerous. */
export function readWorkDir(
  r: EnvReader,
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  fallback: string,
  cwd = process.cwd(),
): string {
  const raw = env[name];
  if (raw !== undefined && raw.trim() === "") {
    r.problem(name, "a folder path (unset for the default)", raw);
    return fallback;
  }
  const dir = path.resolve(cwd, r.string(name, fallback));
  const why = dangerous(dir, r.raw("HOME"), cwd);
  if (why !== undefined) r.problem(name, `a folder of its own, not ${why}`, raw ?? dir);
  return dir;
}
