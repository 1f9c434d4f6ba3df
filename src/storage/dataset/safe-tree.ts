/**
 * Writes archive entries under one root and refuses anything that could land outside it or smuggle in something
 * other than data: `..`, absolute or drive paths, backslashes, NUL, device files, links that leave the root (each
 * link is resolved through the archive's other links, as the kernel would), a file and a folder of one name, paths
 * the file system cannot hold. Links are created last, after every regular file, so no entry is ever written
 * through a link. Every byte written is counted against DATASET_MAX_BYTES and the expansion ratio (zip bombs,
 * tar.gz bombs). The rules are listed in docs/storage.md ("Archive safety").
 */
import fs from "node:fs/promises";
import path from "node:path";
import { AgentError } from "../../errors/index.ts";
import { FileWriter, type EntryCheck } from "../internal/file-writer.ts";

export interface TreeLimits {
  maxBytes: number;
  maxExpansionRatio: number;
  /** Size of the archive (compressed); the ratio cap is off when undefined (plain objects). */
  archiveBytes: number | undefined;
  /** Worker threads that write small files (default 1; 0 writes through the thread pool). */
  writers?: number;
}

/** Linux's NAME_MAX and PATH_MAX, in bytes: a longer entry would fail inside the file system (ENAMETOOLONG). */
const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4095;
/** Links followed while resolving one link before it counts as a loop (Linux's limit). */
const MAX_LINK_HOPS = 40;
/** Longest entry name quoted in an error (a hostile name may be megabytes long). */
const SHOWN_NAME = 120;

/** An entry name for a message: JSON-quoted, cut to a bounded length with its full size said. */
export function shownName(name: string): string {
  if (name.length <= SHOWN_NAME) return JSON.stringify(name);
  return `${JSON.stringify(name.slice(0, SHOWN_NAME))}... (${Buffer.byteLength(name)} bytes)`;
}

/** A trie of symbolic link names by path component; `target` is set where a link ends. */
interface LinkNode {
  children: Map<string, LinkNode>;
  target?: string;
}

const parentOf = (rel: string): string => (rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");

export class SafeTree {
  readonly root: string;
  readonly #limits: TreeLimits;
  /** Folders claimed so far (synchronously, before they are made), with their creation. */
  readonly #dirs = new Map<string, Promise<unknown>>();
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
    this.#dirs.set("", Promise.resolve());
  }

  /** Normalised relative path of an entry name ("" for the root itself), or throws ARCHIVE_UNSAFE_PATH. */
  clean(name: string): string {
    const bad = (why: string): AgentError =>
      new AgentError("ARCHIVE_UNSAFE_PATH", `dataset entry ${shownName(name)} refused: ${why}`, {
        details: { entry: name.slice(0, SHOWN_NAME) },
      });
    if (name.includes("\0")) throw bad("contains a NUL byte");
    if (name.includes("\\")) throw bad("contains a backslash");
    if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) throw bad("absolute path");
    const parts = name.split("/").filter((p) => p !== "" && p !== ".");
    if (parts.includes("..")) throw bad("contains '..'");
    const rel = parts.join("/");
    if (parts.some((p) => Buffer.byteLength(p) > MAX_NAME_BYTES))
      throw bad(`a path component is longer than ${MAX_NAME_BYTES} bytes`);
    if (Buffer.byteLength(this.root) + 1 + Buffer.byteLength(rel) > MAX_PATH_BYTES)
      throw bad(`the path is longer than ${MAX_PATH_BYTES} bytes`);
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (i < parts.length && this.#linkNames.has(prefix)) throw bad(`goes through the link ${shownName(prefix)}`);
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

  /**
   * Claims rel and its parents as folders, synchronously (entries of a zip are written concurrently, so the check
   * and the claim must not be split by an await): a name already used by a file or a link is a dataset error.
   */
  #claimDir(rel: string): Promise<unknown> {
    const made = this.#dirs.get(rel);
    if (made !== undefined) return made;
    const chain: string[] = [];
    for (let r = rel; !this.#dirs.has(r); r = parentOf(r)) {
      if (this.#files.has(r) || this.#linkNames.has(r))
        throw new AgentError("DATASET_CORRUPT", `dataset has both a file or link and a folder named ${shownName(r)}`, {
          details: { entry: r.slice(0, SHOWN_NAME) },
        });
      chain.push(r);
    }
    const p = fs.mkdir(this.abs(rel), { recursive: true });
    for (const r of chain) this.#dirs.set(r, p);
    return p;
  }

  async mkdir(rel: string): Promise<void> {
    await this.#claimDir(rel);
  }

  /** Makes the parent folder of a file entry and returns the file's absolute path. */
  async prepareFile(rel: string): Promise<string> {
    if (rel === "") throw new AgentError("ARCHIVE_UNSAFE_PATH", "dataset entry with an empty file name refused");
    if (this.#dirs.has(rel) || this.#linkNames.has(rel))
      throw new AgentError("DATASET_CORRUPT", `dataset has both a folder or link and a file named ${shownName(rel)}`, {
        details: { entry: rel.slice(0, SHOWN_NAME) },
      });
    const parent = this.#claimDir(parentOf(rel));
    if (!this.#files.has(rel)) {
      this.#files.add(rel);
      this.files += 1;
    }
    await parent;
    return this.abs(rel);
  }

  /**
   * Writes a small file (one buffer or its chunks in order) in the background, batched to worker threads (see
   * FileWriter): many small files are bound by file creation, which then runs beside the download instead of on the
   * event loop. At most 128 files / 2 MiB are outstanding; a failure surfaces on the next call or in flush().
   * With `check`, the bytes are inflated and checked on the writer's thread first; a mismatch becomes the error
   * `check.corrupt` makes of it (and nothing of that file is written).
   */
  async writeFile(
    rel: string,
    data: Buffer | readonly Buffer[],
    mode: number,
    check?: EntryCheck & { corrupt: (why: string) => Error },
  ): Promise<void> {
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
      .write({ path: file, data, mode, check })
      .catch((error: unknown) => {
        const corrupt = check !== undefined && (error as { code?: unknown }).code === "ECORRUPT";
        this.#writeError ??= corrupt ? check.corrupt((error as Error).message) : error;
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

  /** Records a symbolic link; created at the end. Its target must stay inside the root (checked again in finish). */
  symlink(rel: string, target: string): void {
    const refuse = (why: string): AgentError => this.#refuseLink(rel, target, why);
    if (rel === "") throw refuse("the link would replace the target folder");
    if (target === "" || target.includes("\0") || target.includes("\\")) throw refuse("bad target");
    if (target.startsWith("/")) throw refuse("absolute target");
    if (Buffer.byteLength(target) > MAX_PATH_BYTES) throw refuse(`the target is longer than ${MAX_PATH_BYTES} bytes`);
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
    if (resolved === ".." || resolved.startsWith("../") || resolved.startsWith("/"))
      throw refuse("target leaves the dataset folder");
    this.#addLink({ name: rel, target, hard: false });
  }

  #refuseLink(rel: string, target: string, why: string): AgentError {
    return new AgentError(
      "ARCHIVE_UNSAFE_ENTRY",
      `archive link ${shownName(rel)} -> ${shownName(target)} refused: ${why}`,
      {
        details: { entry: rel.slice(0, SHOWN_NAME), target: target.slice(0, SHOWN_NAME) },
      },
    );
  }

  #addLink(link: { name: string; target: string; hard: boolean }): void {
    if (this.#linkNames.has(link.name))
      throw this.#refuseLink(link.name, link.target, "the archive has another link of that name");
    this.#links.push(link);
    this.#linkNames.add(link.name);
  }

  /**
   * Follows a symbolic link's target through every link of the archive, component by component, as the kernel
   * resolves a path: "escapes" when any step climbs above the root (a lexical check misses `up2 -> up/..` after
   * `up -> ..`), "loop" past MAX_LINK_HOPS. Names that do not exist are taken as folders, which can only be stricter.
   * `links` is the trie of the symbolic links' names, so each step costs one map lookup whatever the depth.
   */
  #resolve(link: { name: string; target: string }, links: LinkNode): "ok" | "escapes" | "loop" {
    // The trie nodes of the folders walked so far (undefined once off every link's path); [0] is the root.
    const at: (LinkNode | undefined)[] = [links];
    for (const c of link.name.split("/").slice(0, -1)) at.push(at.at(-1)?.children.get(c));
    const todo = link.target.split("/").reverse();
    let hops = 0;
    while (todo.length > 0) {
      const c = todo.pop() as string;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        if (at.length === 1) return "escapes";
        at.pop();
        continue;
      }
      const node = at.at(-1)?.children.get(c);
      if (node?.target === undefined) {
        at.push(node);
        continue;
      }
      if (++hops > MAX_LINK_HOPS) return "loop";
      if (node.target.startsWith("/")) return "escapes";
      todo.push(...node.target.split("/").reverse());
    }
    return "ok";
  }

  /** Records a hard link to an earlier entry (tar); created at the end as a link to that file. */
  hardlink(rel: string, targetName: string): void {
    let target: string;
    try {
      target = this.clean(targetName);
    } catch {
      throw new AgentError(
        "ARCHIVE_UNSAFE_ENTRY",
        `archive hard link ${shownName(rel)} -> ${shownName(targetName)} refused: target leaves the dataset folder`,
        {
          details: { entry: rel.slice(0, SHOWN_NAME), target: targetName.slice(0, SHOWN_NAME) },
        },
      );
    }
    this.#addLink({ name: rel, target, hard: true });
  }

  /**
   * Creates the recorded links once every file is written, after checking them all together: no link shares a
   * name with a file or folder or sits under another link, a hard link names a file of the archive, and every
   * symbolic link resolves inside the root through all the others.
   */
  async finish(): Promise<void> {
    await this.flush();
    const trie: LinkNode = { children: new Map() };
    for (const l of this.#links) {
      if (l.hard) continue;
      let node = trie;
      for (const c of l.name.split("/")) {
        let next = node.children.get(c);
        if (next === undefined) node.children.set(c, (next = { children: new Map() }));
        node = next;
      }
      node.target = l.target;
    }
    for (const link of this.#links) {
      const refuse = (why: string): AgentError => this.#refuseLink(link.name, link.target, why);
      if (this.#files.has(link.name) || this.#dirs.has(link.name))
        throw refuse("the archive also has a file or folder of that name");
      for (let r = parentOf(link.name); r !== ""; r = parentOf(r))
        if (this.#linkNames.has(r) || this.#files.has(r)) throw refuse(`${shownName(r)} is a link or a file`);
      if (link.hard) {
        if (!this.#files.has(link.target)) throw refuse("the target is not a file of the archive");
        continue;
      }
      const where = this.#resolve(link, trie);
      if (where === "escapes") throw refuse("through the archive's other links, the target leaves the dataset folder");
      if (where === "loop") throw refuse(`the links form a loop (more than ${MAX_LINK_HOPS} hops)`);
    }
    for (const link of this.#links) {
      await this.mkdir(parentOf(link.name));
      if (link.hard) await fs.link(this.abs(link.target), this.abs(link.name));
      else await fs.symlink(link.target, this.abs(link.name));
      this.files += 1;
    }
  }
}

/** Permission bits kept from an archive: rwx for user/group/other, never setuid/setgid/sticky; owner can always write. */
export function safeMode(mode: number | undefined, fallback: number): number {
  return mode === undefined || mode === 0 ? fallback : (mode & 0o777) | 0o600;
}
