/** A real logger whose lines the test reads back, parsed (level names as pino writes them: "warn", "info"). */
import { Writable } from "node:stream";
import { createLogger } from "../../src/log/index.ts";

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export async function capturingLogger() {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  const logger = await createLogger({ traceId: "t".repeat(32), destination, level: "debug" });
  const warningLines = () => lines.filter((l) => l.level === "warn");
  return { logger, lines, warningLines, warnings: () => warningLines().map((l) => l.msg) };
}
