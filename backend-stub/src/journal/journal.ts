/**
 * The append-only journal: one JSON line per accepted change, in `<dataDir>/journal.jsonl`.
 *
 * `append` resolves only once the line is on disk (write + fdatasync), so the stub answers a report only after it
 * would survive a crash. Appends that arrive while a flush is in progress are written together by the next flush
 * (group commit): one fdatasync covers many reports, which is what lets a single disk keep up with 100 jobs.
 * Lines are written in `append` order, so a report is never durable before one it was decided after.
 */
import { close, fdatasync, openSync, writeSync } from "node:fs";
import { open, readFile, truncate, mkdir } from "node:fs/promises";
import { promisify } from "node:util";
import path from "node:path";
import { AgentError } from "../../../src/errors/index.ts";
import { JOURNAL_VERSION, RECORD_TYPES, type JournalRecord } from "../jobs/records.ts";
import type { StubLogger } from "../logger.ts";

export const JOURNAL_FILE = "journal.jsonl";

/** The append end of the journal file. */
export interface JournalFile {
  /** Writes all of `buffer` (a synchronous write to the page cache by default: microseconds, one hop fewer). */
  write(buffer: Buffer): void | Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

const fdatasyncAsync = promisify(fdatasync);
const closeAsync = promisify(close);

/** The real file: appends with writeSync (page cache), durability with an asynchronous fdatasync. */
function openJournalFile(file: string): JournalFile {
  const fd = openSync(file, "a");
  return {
    write(buffer) {
      let offset = 0;
      while (offset < buffer.length) offset += writeSync(fd, buffer, offset, buffer.length - offset);
    },
    datasync: () => fdatasyncAsync(fd),
    close: () => closeAsync(fd),
  };
}

interface Pending {
  line: string;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class Journal {
  readonly file: string;
  readonly #handle: JournalFile;
  #pending: Pending[] = [];
  /** Whether a flush loop runs; set and cleared synchronously, so an append never waits on a finished loop. */
  #active = false;
  #current: Promise<void> = Promise.resolve();
  #failure: AgentError | undefined;
  #closed = false;
  /** Number of fdatasync calls so far (the bench reports reports per sync). */
  syncs = 0;

  private constructor(file: string, handle: JournalFile) {
    this.file = file;
    this.#handle = handle;
  }

  /**
   * Opens (creating) the journal in `dir` and returns the records already in it. A torn last line (the stub died
   * mid-write, so that record was never acknowledged) is cut off; a damaged line before the end stops the start
   * with its line number, since skipping it would silently lose an accepted report.
   */
  static async open(
    dir: string,
    logger: StubLogger,
    /** Opens the append handle; tests pass one whose writes fail (a full disk cannot be staged here). */
    openAppend: (file: string) => JournalFile | Promise<JournalFile> = openJournalFile,
  ): Promise<{ journal: Journal; records: JournalRecord[] }> {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, JOURNAL_FILE);
    let text = "";
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new AgentError("JOURNAL_FAILED", `cannot read the journal ${file}`, { cause: error });
      }
    }
    const records: JournalRecord[] = [];
    const end = text.lastIndexOf("\n") + 1;
    if (end < text.length) {
      logger.warn(
        { file, bytes: Buffer.byteLength(text.slice(end)) },
        "journal ends with a torn line (a write cut short); dropping it",
      );
      await truncate(file, Buffer.byteLength(text.slice(0, end)));
    }
    const lines = text.slice(0, end).split("\n");
    lines.pop();
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      records.push(parseRecord(line, file, i + 1));
    });
    const handle = await openAppend(file);
    // A new file's directory entry must be durable too, or the first acknowledged report could vanish with it.
    const dirHandle = await open(dir, "r");
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
    return { journal: new Journal(file, handle), records };
  }

  /** Appends one record; resolves once it is on disk. Rejects (JOURNAL_FAILED) once any write has failed. */
  append(record: JournalRecord): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new AgentError("JOURNAL_FAILED", "the journal is closed"));
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ line: `${JSON.stringify(record)}\n`, resolve, reject });
      if (!this.#active) {
        this.#active = true;
        this.#current = this.#flush();
      }
    });
  }

  async #flush(): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending;
        this.#pending = [];
        try {
          const buffer = Buffer.from(batch.map((p) => p.line).join(""), "utf8");
          await this.#handle.write(buffer);
          await this.#handle.datasync();
          this.syncs += 1;
          for (const p of batch) p.resolve();
        } catch (error) {
          // After a failed write the file's tail is unknown: refuse everything from now on rather than answer 2xx
          // for reports that might not be there after a restart.
          this.#failure = new AgentError("JOURNAL_FAILED", `cannot write the journal ${this.file}`, { cause: error });
          for (const p of [...batch, ...this.#pending]) p.reject(this.#failure);
          this.#pending = [];
        }
      }
    } finally {
      this.#active = false;
    }
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Waits for pending appends, then closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#active) await this.#current;
    await this.#handle.close();
  }
}

function parseRecord(line: string, file: string, lineNo: number): JournalRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new AgentError("JOURNAL_FAILED", `journal ${file} line ${lineNo} is not valid JSON; refusing to start`, {
      cause: error,
    });
  }
  const r = value as Partial<JournalRecord> | null;
  if (
    typeof r !== "object" ||
    r === null ||
    r.v !== JOURNAL_VERSION ||
    typeof r.type !== "string" ||
    !RECORD_TYPES.has(r.type) ||
    typeof r.job_id !== "string" ||
    typeof r.at !== "string"
  ) {
    throw new AgentError(
      "JOURNAL_FAILED",
      `journal ${file} line ${lineNo} is not a journal record (v${JOURNAL_VERSION}); refusing to start`,
    );
  }
  return r as JournalRecord;
}
