/**
 * tar, tar.gz and tgz extraction while the bytes arrive: parallel ranged GETs are reassembled in order
 * (orderedChunks), gunzipped, parsed by node-tar's Parser (which only parses: it writes nothing and does not
 * sanitise), and each entry is checked by SafeTree before anything is written. Small files are written in the
 * background with a bounded backlog so parsing never waits on one file's open/write/close.
 */
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { AgentError } from "../../errors/index.ts";
import { orderedChunks, type RangeSource } from "../internal/ranges.ts";
import { safeMode, type SafeTree } from "./safe-tree.ts";

const SMALL_FILE = 1024 * 1024;
const MAX_BACKLOG_BYTES = 16 * 1024 * 1024;
const MAX_BACKLOG_FILES = 64;

export async function extractTar(src: RangeSource, tree: SafeTree, gzip: boolean, window: number): Promise<void> {
  const where = `${src.store.label}/${src.key}`;
  const corrupt = (why: string, cause?: unknown): AgentError =>
    new AgentError("DATASET_CORRUPT", `${where} is not a valid ${gzip ? "tar.gz" : "tar"} archive: ${why}`, { cause });
  let failure: unknown;
  const fail = (error: unknown): void => {
    failure ??= error;
  };
  const pending = new Set<Promise<void>>();
  // Rejected when the input fails: entries of a cut stream never end, so their writers must stop waiting.
  let abortWriters: (e: unknown) => void = () => {};
  const aborted = new Promise<never>((_, reject) => {
    abortWriters = reject;
  });
  aborted.catch(() => {});
  const byPath = new Map<string, Promise<void>>();
  let backlogBytes = 0;
  const track = (rel: string, size: number, work: () => Promise<void>): void => {
    backlogBytes += size;
    const previous = byPath.get(rel);
    const guarded = (): Promise<void> => Promise.race([work(), aborted]);
    const p: Promise<void> = (previous ? previous.then(guarded) : guarded()).catch(fail).finally(() => {
      backlogBytes -= size;
      pending.delete(p);
      if (byPath.get(rel) === p) byPath.delete(rel);
    });
    pending.add(p);
    byPath.set(rel, p);
  };

  const onEntry = (entry: ReadEntry): void => {
    if (failure !== undefined) {
      entry.resume();
      return;
    }
    try {
      const rel = tree.clean(entry.path);
      switch (entry.type) {
        case "File":
        case "OldFile":
        case "ContiguousFile": {
          const size = entry.size ?? 0;
          tree.account(size);
          const mode = safeMode(entry.mode, 0o644);
          if (size <= SMALL_FILE) {
            const chunks: Buffer[] = [];
            entry.on("data", (c: Buffer) => chunks.push(c));
            const ended = once(entry, "end");
            track(rel, size, async () => {
              await ended;
              const data = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
              if (data.length !== size) throw corrupt(`entry ${entry.path} is truncated`);
              await tree.writeFile(rel, data, mode);
            });
          } else {
            entry.pause();
            track(rel, 0, async () => {
              const file = await tree.prepareFile(rel);
              await new Promise<void>((resolve, reject) => {
                const out = createWriteStream(file, { mode });
                out.on("error", reject);
                out.on("finish", resolve);
                entry.on("error", reject);
                entry.pipe(out);
              });
            });
          }
          return;
        }
        case "Directory":
          track(rel, 0, () => tree.mkdir(rel));
          entry.resume();
          return;
        case "SymbolicLink":
          tree.symlink(rel, entry.linkpath ?? "");
          entry.resume();
          return;
        case "Link":
          tree.hardlink(rel, entry.linkpath ?? "");
          entry.resume();
          return;
        case "CharacterDevice":
        case "BlockDevice":
        case "FIFO":
          throw new AgentError(
            "ARCHIVE_UNSAFE_ENTRY",
            `archive entry ${JSON.stringify(entry.path)} refused: ${entry.type} is not data`,
            {
              details: { entry: entry.path },
            },
          );
        default:
          throw corrupt(`entry ${entry.path} has the unsupported type ${entry.type}`);
      }
    } catch (error) {
      fail(error);
      entry.resume();
    }
  };

  const parser = new Parser({ strict: true, onReadEntry: onEntry });
  // Keep the last 1 KiB: a tar ends with two zero blocks, which is how a cut at an entry boundary is caught.
  let tail: Buffer = Buffer.alloc(0);
  let total = 0;
  // An archive of zero blocks only is a valid empty tar (tar -T /dev/null); the parser calls it unrecognised.
  let allZero = true;
  parser.on("error", (e: Error & { code?: string }) => {
    if (!(allZero && e.code === "TAR_BAD_ARCHIVE" && total >= 1024)) fail(corrupt(e.message, e));
  });
  const parsed = new Promise<void>((resolve) => parser.on("end", () => resolve()));

  const sink = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb): void {
      if (failure !== undefined) return cb(failure as Error);
      total += chunk.length;
      if (allZero) allZero = chunk.every((b) => b === 0);
      tail = chunk.length >= 1024 ? chunk.subarray(chunk.length - 1024) : Buffer.concat([tail, chunk]).subarray(-1024);
      const ok = parser.write(chunk);
      const go = async (): Promise<void> => {
        if (!ok) await Promise.race([once(parser, "drain"), parsed]);
        while (failure === undefined && (backlogBytes > MAX_BACKLOG_BYTES || pending.size > MAX_BACKLOG_FILES))
          await Promise.race(pending);
      };
      go().then(
        () => cb(failure === undefined ? null : (failure as Error)),
        (e: unknown) => cb(e as Error),
      );
    },
    final(cb): void {
      parser.end();
      parsed.then(
        () => cb(failure === undefined ? null : (failure as Error)),
        (e: unknown) => cb(e as Error),
      );
    },
  });

  const input = Readable.from(orderedChunks(src, 0, src.size, window));
  try {
    if (gzip) {
      const gunzip = zlib.createGunzip();
      await pipeline(input, gunzip, sink);
    } else {
      await pipeline(input, sink);
    }
    await Promise.all(pending);
  } catch (error) {
    abortWriters(error);
    await Promise.allSettled(pending);
    const e = failure ?? error;
    if (e instanceof AgentError) throw e;
    throw corrupt((e as Error).message, e);
  }
  if (failure !== undefined) throw failure;
  if (total < 1024 || tail.some((b) => b !== 0)) throw corrupt("the end-of-archive marker is missing (truncated?)");
}
