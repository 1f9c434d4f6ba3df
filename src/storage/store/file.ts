/**
 * STORAGE_TYPE=file: a local directory (STORAGE_PATH) plays the bucket root, for embedded and local runs.
 * Writes go to a temporary name and are renamed into place, so a reader never sees half an object.
 * The ETag is a stamp of size, mtime and inode: a replaced file gets a new one, which If-Match checks compare.
 */
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { randomBytes } from "node:crypto";
import { AgentError } from "../../errors/index.ts";
import type { MultipartUpload, ObjectInfo, ObjectStore, PartSpec } from "./types.ts";

const TMP_MARK = ".trainer-tmp-";

export function createFileStore(root: string): ObjectStore {
  return new FileStore(path.resolve(root));
}

function stamp(st: { size: number; mtimeMs: number; ino: number }): string {
  return `${st.size.toString(16)}-${Math.round(st.mtimeMs * 1000).toString(16)}-${st.ino.toString(16)}`;
}

class FileStore implements ObjectStore {
  readonly label: string;
  readonly #root: string;

  constructor(root: string) {
    this.#root = root;
    this.label = `file://${root}`;
  }

  #path(key: string): string {
    const parts = key.split("/");
    if (key.startsWith("/") || parts.includes("..") || key.includes("\0"))
      throw new AgentError("STORAGE_FAILED", `invalid object key ${JSON.stringify(key)}`);
    return path.join(this.#root, ...parts);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const st = await fs.stat(this.#path(key));
      if (!st.isFile()) return null;
      return { key, size: st.size, etag: stamp(st) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR")
        return null;
      throw new AgentError("STORAGE_FAILED", `stat ${this.label}/${key} failed`, { cause: error });
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash + 1);
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(rel === "" ? this.#root : this.#path(rel.slice(0, -1)), { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR")
          return;
        throw new AgentError("STORAGE_FAILED", `listing ${this.label}/${rel} failed`, { cause: error });
      }
      for (const e of entries) {
        if (e.name.startsWith(TMP_MARK)) continue;
        const key = rel + e.name;
        if (e.isDirectory()) {
          if ((key + "/").startsWith(prefix) || prefix.startsWith(key + "/")) await walk(key + "/");
        } else if (e.isFile() && key.startsWith(prefix)) {
          const info = await this.head(key);
          if (info) out.push(info);
        }
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async getRange(key: string, start: number, end: number, etag: string): Promise<Readable> {
    const info = await this.head(key);
    if (info === null)
      throw new AgentError("DATASET_CHANGED", `${this.label}/${key} was deleted while it was being read`);
    if (etag !== "" && info.etag !== etag)
      throw new AgentError(
        "DATASET_CHANGED",
        `${this.label}/${key} changed while it was being read (ETag no longer matches)`,
      );
    return createReadStream(this.#path(key), { start, end: end - 1, highWaterMark: 1024 * 1024 });
  }

  async #atomicWrite(key: string, write: (tmp: string) => Promise<void>): Promise<string> {
    const dest = this.#path(key);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    const tmp = path.join(path.dirname(dest), `${TMP_MARK}${randomBytes(6).toString("hex")}`);
    try {
      await write(tmp);
      await fs.rename(tmp, dest);
    } catch (error) {
      await fs.rm(tmp, { force: true });
      throw error instanceof AgentError
        ? error
        : new AgentError("STORAGE_FAILED", `writing ${this.label}/${key} failed`, { cause: error });
    }
    return stamp(await fs.stat(dest));
  }

  async putObject(key: string, body: Buffer): Promise<string> {
    return this.#atomicWrite(key, (tmp) => fs.writeFile(tmp, body));
  }

  async createMultipart(key: string): Promise<MultipartUpload> {
    const partsDir = await fs.mkdtemp(path.join(this.#root, TMP_MARK));
    return {
      uploadPart: async (part: PartSpec): Promise<string> => {
        await fs.writeFile(path.join(partsDir, String(part.partNumber)), part.body);
        return part.md5;
      },
      complete: async (parts): Promise<string> => {
        try {
          return await this.#atomicWrite(key, async (tmp) => {
            const fh = await fs.open(tmp, "w");
            try {
              for (const p of [...parts].sort((a, b) => a.partNumber - b.partNumber))
                await fh.writeFile(await fs.readFile(path.join(partsDir, String(p.partNumber))));
            } finally {
              await fh.close();
            }
          });
        } finally {
          await fs.rm(partsDir, { recursive: true, force: true });
        }
      },
      abort: async (): Promise<void> => {
        await fs.rm(partsDir, { recursive: true, force: true });
      },
    };
  }

  async deleteObject(key: string): Promise<void> {
    await fs.rm(this.#path(key), { force: true });
  }

  close(): void {}
}
