/**
 * Every shell block of the README, PLUGIN_GUIDE.md and docs/*.md runs as written, or is marked
 * `<!-- not run by tests: REASON -->` on the line before it (a cluster, docker, a server that runs until Ctrl-C,
 * a package install). Blocks run with bash in a scratch folder inside the repository (so `npx` finds the
 * project) that holds the files the commands name: train.py and job.json from test/fixtures/doc-commands, and
 * the PLUGIN_GUIDE's plugin code as progress-plugin.mjs. No storage or backend is configured, as on a new
 * user's machine: `trainer-agent local` starts its embedded ones.
 */
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const MARKER = /^<!-- not run by tests: (.*?) -->$/;

interface Block {
  file: string;
  line: number;
  lang: string;
  body: string;
  /** Why it is not run; undefined for a block that runs. */
  skip: string | undefined;
}

/** Fenced blocks (also indented ones, inside list items) with their language and the marker before them. */
function blocksOf(file: string, text: string): Block[] {
  const lines = text.split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]!);
    if (open === null) continue;
    const indent = open[1]!;
    let end = i + 1;
    while (end < lines.length && lines[end]!.trim() !== "```") end++;
    let prev = i - 1;
    while (prev >= 0 && lines[prev]!.trim() === "") prev--;
    const marker = prev >= 0 ? MARKER.exec(lines[prev]!.trim()) : null;
    out.push({
      file,
      line: i + 1,
      lang: open[2]!,
      body: lines
        .slice(i + 1, end)
        .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
        .join("\n"),
      skip: marker === null ? undefined : marker[1]!,
    });
    i = end;
  }
  return out;
}

const files = [
  "README.md",
  "PLUGIN_GUIDE.md",
  ...(await readdir(join(ROOT, "docs"))).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`),
];
const blocks: Block[] = [];
for (const f of files) blocks.push(...blocksOf(f, await readFile(join(ROOT, f), "utf8")));
const shell = blocks.filter((b) => ["sh", "bash", "shell"].includes(b.lang));
const runnable = shell.filter((b) => b.skip === undefined);

/** The environment of a fresh shell: no storage, no backend, no callback settings. */
function userEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "LANG", "TMPDIR"]) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

function bash(script: string, cwd: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", script], { cwd, env: userEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

let scratch: string;
beforeAll(async () => {
  await mkdir(join(ROOT, ".tmp"), { recursive: true });
  scratch = await mkdtemp(join(ROOT, ".tmp", "doc-commands-"));
  for (const f of ["train.py", "job.json"])
    await copyFile(join(ROOT, "test/fixtures/doc-commands", f), join(scratch, f));
  const guide = blocks.filter((b) => b.file === "PLUGIN_GUIDE.md" && b.lang === "js");
  expect(guide).toHaveLength(1); // the progress plugin of section 3
  await writeFile(join(scratch, "progress-plugin.mjs"), guide[0]!.body);
});
afterAll(async () => {
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

describe("shell commands in README.md, PLUGIN_GUIDE.md and docs/", () => {
  it("are found, and every block left out says why", () => {
    expect(runnable.length).toBeGreaterThanOrEqual(3);
    for (const b of shell) if (b.skip !== undefined) expect(b.skip.trim(), `${b.file}:${b.line}`).not.toBe("");
    // A marker belongs to a shell block; one before anything else is a leftover.
    const markers = blocks.filter((b) => b.skip !== undefined && !shell.includes(b));
    expect(markers.map((b) => `${b.file}:${b.line}`)).toEqual([]);
  });

  it("npx runs the two programs from inside the repository, with the Node.js npm ci installed", async () => {
    const r = await bash("npx trainer-agent --version && npx trainjob --version", scratch, 120_000);
    expect(r.code, r.output).toBe(0);
    const version = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")).version as string;
    expect(r.output.split("\n").filter((l) => l === version)).toHaveLength(2);
  }, 120_000);

  // npx itself is checked above; the blocks below call the same bin/ scripts without npx's 2 to 6 s start.
  const prelude = `set -eo pipefail
npx() { case "$1" in trainer-agent | trainjob) local p="$1"; shift; "${process.execPath}" "${ROOT}/bin/$p.js" "$@" ;; *) command npx "$@" ;; esac; }
`;
  it.each(runnable.map((b) => [`${b.file}:${b.line}`, b] as const))(
    "%s runs",
    async (_label, b) => {
      const r = await bash(prelude + b.body, scratch, 150_000);
      expect(r.code, `${b.file}:${b.line}\n${b.body}\n--- output\n${r.output.slice(-4000)}`).toBe(0);
    },
    160_000,
  );
});
