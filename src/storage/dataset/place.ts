/**
 * Moving a finished folder into place. A rename is atomic when the destination is absent or empty; an existing
 * dataset is moved aside first. When the destination is a mount point (an emptyDir or PVC at DATASET_DIR), it cannot
 * be renamed: its contents are replaced instead, entry by entry, from the finished folder on the same volume.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";

const CANNOT_RENAME = new Set(["EBUSY", "EXDEV", "EPERM", "EACCES", "EINVAL"]);

export async function replaceDir(tmp: string, dest: string): Promise<void> {
  if (path.dirname(tmp) === dest) return replaceContents(tmp, dest);
  try {
    await fs.rename(tmp, dest);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    if (code !== "ENOTEMPTY" && code !== "EEXIST" && !CANNOT_RENAME.has(code)) throw error;
  }
  const old = path.join(path.dirname(dest), `.${path.basename(dest)}.old-${randomBytes(4).toString("hex")}`);
  try {
    await fs.rename(dest, old);
  } catch (error) {
    if (!CANNOT_RENAME.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
    await replaceContents(tmp, dest);
    return;
  }
  try {
    await fs.rename(tmp, dest);
  } catch (error) {
    await fs.rename(old, dest).catch(() => {});
    throw error;
  }
  await fs.rm(old, { recursive: true, force: true });
}

async function replaceContents(tmp: string, dest: string): Promise<void> {
  const inside = path.dirname(tmp) === dest ? path.basename(tmp) : undefined;
  for (const name of await fs.readdir(dest))
    if (name !== inside) await fs.rm(path.join(dest, name), { recursive: true, force: true });
  for (const name of await fs.readdir(tmp)) await fs.rename(path.join(tmp, name), path.join(dest, name));
  await fs.rm(tmp, { recursive: true, force: true });
}

/** A temporary folder beside dest (same volume, so the final rename is cheap); inside dest when the parent is read-only. */
export async function tempDirBeside(dest: string): Promise<string> {
  const parent = path.dirname(dest);
  const prefix = `.${path.basename(dest)}.tmp-`;
  try {
    await fs.mkdir(parent, { recursive: true });
    for (const name of await fs.readdir(parent))
      if (name.startsWith(prefix)) await fs.rm(path.join(parent, name), { recursive: true, force: true });
    return await fs.mkdtemp(path.join(parent, prefix));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EROFS" && code !== "EPERM") throw error;
    await fs.mkdir(dest, { recursive: true });
    return fs.mkdtemp(path.join(dest, ".trainer-tmp-"));
  }
}
