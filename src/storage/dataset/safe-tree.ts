/**
 * Writes archive entries under one root and refuses anything that could land outside it or smuggle in something
 * other than data: `..`, absolute or drive paths, backslashes, NUL, device files, links that leave the root.
 * Links are created last, after every regular file, so no entry is ever written through a link. Every byte
 * written is counted against DATASET_MAX_BYTES and the expansion ratio (zip bombs, tar.gz bombs).
 */
import fs from "node:fs/promises";
import path from "node:path";
import { AgentError } from "../../errors/index.ts";
import { FileWriter } from "../internal/file-writer.ts";

export interface TreeLimits {
  maxBytes: number;
  maxExpansionRatio: number;
  /** Size of the archive (compressed); the ratio cap is off when undefined (plain objects). */
  archiveBytes: number | undefined;
  /** Worker threads that write small files (default 1; 0 writes through the thread pool). */
  writers?: number;
}

export class SafeTree {
  readonly root: string;
  readonly #limits: TreeLimits;
  readonly #dirs = new Set<string>();
  readonly #links: { name: string; target: string; hard: boolean }[] = [];
  readonly #linkNames = new Set<string>();
  readonly #files = new Set<string>();
  bytes = 0;
  files = 0;
  readonly #writes = new Set<Promise<void>>();
  #writeBytes = 0;
  #writeError: unknown;
  #writer: FileWriter | undefined;

  constructor(root: string, limits: TreeLimits) {
    this.root = root;
    this.#limits = limits;
    this.#dirs.add("");
  }

  /** Normalised relative path of an entry name ("" for the root itself), or throws ARCHIVE_UNSAFE_PATH. */
  clean(name: string): string {
    const bad = (why: string): AgentError =>
      new AgentError("ARCHIVE_UNSAFE_PATH", `archive entry ${JSON.stringify(name)} refused: ${why}`, {
        details: { entry: name },
      });
    if (name.includes("\0")) throw bad("contains a NUL byte");
    if (name.includes("\\")) throw bad("contains a backslash");
    if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) throw bad("absolute path");
    const parts = name.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.includes("..")) throw bad("contains '..'");
    const rel = parts.join("/");
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (i < parts.length && this.#linkNames.has(prefix)) throw bad(`goes through the link ${JSON.stringify(prefix)}`);
    }
    return rel;
  }

  abs(rel: string): string {
    return rel === "" ? this.root : path.join(this.root, ...rel.split("/"));
  }

  /** Counts bytes about to be written; throws DATASET_TOO_LARGE past a cap. */
  account(n: number): void {
    this.bytes += n;
    if (this.bytes > this.#limits.maxBytes)
      throw new AgentError(
        "DATASET_TOO_LARGE",
        `dataset expands to more than DATASET_MAX_BYTES (${this.#limits.maxBytes} bytes)`,
        { details: { maxBytes: this.#limits.maxBytes } },
      );
    const a = this.#limits.archiveBytes;
    if (a !== undefined && this.bytes > Math.max(a, 1) * this.#limits.maxExpansionRatio && this.bytes > 1024 * 1024)
      throw new AgentError(
        "DATASET_TOO_LARGE",
        `archive of ${a} bytes expands past DATASET_MAX_EXPANSION_RATIO (${this.#limits.maxExpansionRatio}x): refusing a possible archive bomb`,
        { details: { archiveBytes: a, maxExpansionRatio: this.#limits.maxExpansionRatio } },
      );
  }

  /** Checks sizes an archive declares before anything is written (zip central directory). */
  checkDeclared(total: number): void {
    const saved = this.bytes;
    this.account(total);
    this.bytes = saved;
  }

  async mkdir(rel: string): Promise<void> {
    if (this.#dirs.has(rel)) return;
    await fs.mkdir(this.abs(rel), { recursive: true });
    for (let r = rel; r !== "" && !this.#dirs.has(r); r = r.includes("/") ? r.slice(0, r.lastIndexOf("/")) : "")
      this.#dirs.add(r);
  }

  /** Makes the parent folder of a file entry and returns the file's absolute path. */
  async prepareFile(rel: string): Promise<string> {
    if (rel === "") throw new AgentError("ARCHIVE_UNSAFE_PATH", "archive entry with an empty file name refused");
    if (this.#dirs.has(rel))
      throw new AgentError("DATASET_CORRUPT", `archive has both a folder and a file named ${rel}`);
    await this.mkdir(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    if (!this.#files.has(rel)) {
      this.#files.add(rel);
      this.files += 1;
    }
    return this.abs(rel);
  }

  /**
   * Writes a small file (one buffer or its chunks in order) in the background, batched to worker threads (see
   * FileWriter): many small files are bound by file creation, which then runs beside the download instead of on the
   * event loop. At most 128 files / 2 MiB are outstanding; a failure surfaces on the next call or in flush().
   */
  async writeFile(rel: string, data: Buffer | readonly Buffer[], mode: number): Promise<void> {
    if (this.#writeError !== undefined) throw this.#writeError;
    const file = await this.prepareFile(rel);
    this.#writer ??= new FileWriter(this.#limits.writers ?? 1);
    const writer = this.#writer;
    while (this.#writes.size >= 128 || this.#writeBytes > 2 * 1024 * 1024) {
      writer.flush();
      await Promise.race(this.#writes);
    }
    if (this.#writeError !== undefined) throw this.#writeError;
    const bytes = Buffer.isBuffer(data) ? data.length : data.reduce((n, c) => n + c.length, 0);
    this.#writeBytes += bytes;
    // A later entry with the same name (tar appends) lands after the earlier one: FileWriter keeps per-name order.
    const p: Promise<void> = writer
      .write({ path: file, data, mode })
      .catch((error: unknown) => {
        this.#writeError ??= error;
      })
      .finally(() => {
        this.#writeBytes -= bytes;
        this.#writes.delete(p);
      });
    this.#writes.add(p);
  }

  /** Waits for background writes; rethrows the first failure. */
  async flush(): Promise<void> {
    while (this.#writes.size > 0) {
      this.#writer?.flush();
      await Promise.all(this.#writes);
    }
    if (this.#writeError !== undefined) throw this.#writeError;
  }

  /** Stops the writer threads (after flush(), or to give up). */
  async close(): Promise<void> {
    const w = this.#writer;
    this.#writer = undefined;
    await w?.close();
  }

  /** Records a symbolic link; created at the end. Its target must stay inside the root. */
  symlink(rel: string, target: string): void {
    const refuse = (why: string): AgentError =>
      new AgentError(
        "ARCHIVE_UNSAFE_ENTRY",
        `archive link ${JSON.stringify(rel)} -> ${JSON.stringify(target)} refused: ${why}`,
        {
          details: { entry: rel, target },
        },
      );
    if (rel === "") throw refuse("the link would replace the target folder");
    if (target === "" || target.includes("\0") || target.includes("\\")) throw refuse("bad target");
    if (target.startsWith("/")) throw refuse("absolute target");
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
    if (resolved === ".." || resolved.startsWith("../") || resolved.startsWith("/"))
      throw refuse("target leaves the dataset folder");
    this.#links.push({ name: rel, target, hard: false });
    this.#linkNames.add(rel);
  }

  /** Records a hard link to an earlier entry (tar); created at the end as a link to that file. */
  hardlink(rel: string, targetName: string): void {
    let target: string;
    try {
      target = this.clean(targetName);
    } catch {
      throw new AgentError(
        "ARCHIVE_UNSAFE_ENTRY",
        `archive hard link ${JSON.stringify(rel)} -> ${JSON.stringify(targetName)} refused: target leaves the dataset folder`,
        {
          details: { entry: rel, target: targetName },
        },
      );
    }
    this.#links.push({ name: rel, target, hard: true });
    this.#linkNames.add(rel);
  }

  /** Creates the recorded links; a link whose name is also a file, or a hard link to a non-file, is refused. */
  async finish(): Promise<void> {
    await this.flush();
    for (const link of this.#links) {
      if (this.#files.has(link.name) || this.#dirs.has(link.name))
        throw new AgentError("ARCHIVE_UNSAFE_ENTRY", `archive has both a link and a file or folder named ${link.name}`);
      await this.mkdir(link.name.includes("/") ? link.name.slice(0, link.name.lastIndexOf("/")) : "");
      if (link.hard) {
        if (!this.#files.has(link.target))
          throw new AgentError(
            "ARCHIVE_UNSAFE_ENTRY",
            `archive hard link ${link.name} points to ${link.target}, which is not a file of the archive`,
          );
        await fs.link(this.abs(link.target), this.abs(link.name));
      } else {
        await fs.symlink(link.target, this.abs(link.name));
      }
      this.files += 1;
    }
  }
}

/** Permission bits kept from an archive: rwx for user/group/other, never setuid/setgid/sticky; owner can always write. */
export function safeMode(mode: number | undefined, fallback: number): number {
  return mode === undefined || mode === 0 ? fallback : (mode & 0o777) | 0o600;
}
