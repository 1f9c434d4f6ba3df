/** Both command lines end quietly when the reader of their output goes away (`trainjob --help | head -1`). */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../..");

describe.each(["trainer-agent", "trainjob"])("%s with a closed stdout", (program) => {
  it("exits 0 with nothing on stderr when the pipe is closed before --help is written", async () => {
    const child = spawn(process.execPath, [join(root, "bin", `${program}.js`), "--help"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.destroy(); // the reader is gone: every write to the pipe now fails with EPIPE
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });
});
