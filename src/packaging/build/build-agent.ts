/**
 * `npm run build:agent`: builds dist/trainer-agent, one Linux executable that runs the agent with no Node.js and no
 * node_modules: a Node single executable application (the node binary with the bundled agent and the Python helper
 * injected). Steps: bundle (./bundle.ts), blob (./sea-blob.ts), inject (./inject.ts), then a smoke run of the
 * result with an empty environment. The output appears by rename only when every step passed.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ASSETS } from "../sea.ts";
import { agentAssets } from "./assets.ts";
import { bundleAgent, type BundleResult } from "./bundle.ts";
import { injectBlob } from "./inject.ts";
import { writeSeaBlob } from "./sea-blob.ts";

const run = promisify(execFile);

/** Repository root (this file is src/packaging/build/build-agent.ts). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** Where `npm run build:agent` writes, relative to the repository root; the Dockerfile copies it from there. */
export const DEFAULT_OUTPUT = "dist/trainer-agent";
export const AGENT_ENTRY = "src/cli/trainer-agent.ts";
export const HELPER_PATH = "python/trainer_agent.py";

export interface BuildAgentOptions {
  /** Output file; default `<repo>/dist/trainer-agent`. */
  output?: string;
  /** Strip debug symbols from the node copy when `strip` exists (default true). */
  strip?: boolean;
  /** Build even when python/trainer_agent.py is missing (the result then cannot `helper --print`). */
  allowMissingHelper?: boolean;
  /** V8 code cache in the blob (default true): faster start, about 2x the bundle's size more. */
  useCodeCache?: boolean;
  /** Node binary to copy; it also writes the blob, so they always match. Default: the one running the build. */
  node?: string;
  /** Keep the work folder (bundle, blob, sea-config.json) and return its path. */
  keepWork?: boolean;
  log?: (line: string) => void;
}

export interface BuildAgentResult {
  output: string;
  bytes: number;
  /** Hex SHA-256 of the file, also written to `<output>.sha256` in `sha256sum` format. */
  sha256: string;
  nodeVersion: string;
  stripped: boolean;
  helperEmbedded: boolean;
  bundle: BundleResult;
  /** Milliseconds per step. */
  timings: Record<"bundle" | "blob" | "inject" | "smoke" | "total", number>;
  workDir: string | undefined;
}

export async function buildAgent(options: BuildAgentOptions = {}): Promise<BuildAgentResult> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  const output = resolve(options.output ?? join(REPO_ROOT, DEFAULT_OUTPUT));
  const node = options.node ?? process.execPath;
  if (process.platform !== "linux") {
    log(
      `warning: building on ${process.platform}: the result is a ${process.platform} program, not one for Linux pods`,
    );
  } else if (process.arch !== "x64") {
    log(`note: building on linux-${process.arch}: the result runs on linux-${process.arch} nodes`);
  }
  const helper = join(REPO_ROOT, HELPER_PATH);
  const helperEmbedded = await exists(helper);
  if (!helperEmbedded) {
    if (options.allowMissingHelper !== true) {
      throw new Error(
        `${HELPER_PATH} is missing: the agent carries the Python helper (trainer-agent helper --print); ` +
          "restore it, or pass --allow-missing-helper for a build without it",
      );
    }
    log(`warning: ${HELPER_PATH} is missing: this build cannot write the Python helper`);
  }

  const workDir = await mkdtemp(join(tmpdir(), "trainer-agent-build-"));
  const timings = { bundle: 0, blob: 0, inject: 0, smoke: 0, total: 0 };
  try {
    let t = performance.now();
    const bundlePath = join(workDir, "trainer-agent.cjs");
    const bundle = await bundleAgent(join(REPO_ROOT, AGENT_ENTRY), bundlePath);
    for (const warning of bundle.warnings) log(warning.trimEnd());
    if (bundle.external.length > 0) {
      throw new Error(
        `the bundle would load ${bundle.external.join(", ")} from node_modules at run time, which a single ` +
          "executable cannot: import them with a literal specifier so esbuild inlines them",
      );
    }
    timings.bundle = performance.now() - t;
    log(`bundle: ${mib(bundle.bytes)} in ${ms(timings.bundle)}`);

    t = performance.now();
    const assets = await agentAssets(REPO_ROOT, helper);
    if (!helperEmbedded) delete assets[ASSETS.helper];
    const blob = join(workDir, "sea-prep.blob");
    await writeSeaBlob({
      node,
      main: bundlePath,
      output: blob,
      assets,
      useCodeCache: options.useCodeCache ?? true,
      workDir,
    });
    timings.blob = performance.now() - t;
    log(`blob: ${mib((await stat(blob)).size)} with assets ${Object.keys(assets).join(", ")} in ${ms(timings.blob)}`);

    t = performance.now();
    await mkdir(dirname(output), { recursive: true });
    const partial = `${output}.partial-${process.pid}`;
    let stripped: boolean;
    let version: string;
    let sha256: string;
    try {
      ({ stripped } = await injectBlob({ node, blob, target: partial, strip: options.strip ?? true }));
      timings.inject = performance.now() - t;
      log(`inject: into ${stripped ? "a stripped" : "a"} copy of ${node} in ${ms(timings.inject)}`);
      t = performance.now();
      version = await smokeRun(partial);
      timings.smoke = performance.now() - t;
      sha256 = await fileSha256(partial);
      await rename(partial, output);
    } catch (error) {
      await rm(partial, { force: true }); // never leave a half-made executable next to the output
      throw error;
    }
    // `sha256sum -c trainer-agent.sha256` next to the file checks a copy (a release asset, an image layer)
    await writeFile(`${output}.sha256`, `${sha256}  ${basename(output)}\n`);
    const bytes = (await stat(output)).size;
    timings.total = performance.now() - started;
    log(`built ${output}: ${mib(bytes)}, agent ${version}, node ${await nodeVersion(node)}, in ${ms(timings.total)}`);
    log(`sha256 ${sha256} (${basename(output)}.sha256)`);
    return {
      output,
      bytes,
      sha256,
      nodeVersion: await nodeVersion(node),
      stripped,
      helperEmbedded,
      bundle,
      timings,
      workDir: options.keepWork === true ? workDir : undefined,
    };
  } finally {
    if (options.keepWork !== true) await rm(workDir, { recursive: true, force: true });
  }
}

/** Runs the fresh file with an empty environment: proves it starts without node on PATH. */
async function smokeRun(file: string): Promise<string> {
  try {
    const { stdout } = await run(file, ["--version"], { env: {}, timeout: 30_000 });
    return stdout.trim();
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`the built file does not start (${file} --version): ${stderr.trim() || (error as Error).message}`, {
      cause: error,
    });
  }
}

async function nodeVersion(node: string): Promise<string> {
  if (node === process.execPath) return process.version;
  return (await run(node, ["--version"])).stdout.trim();
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

const mib = (bytes: number): string => `${(bytes / (1 << 20)).toFixed(1)} MiB`;
const ms = (value: number): string => `${Math.round(value)} ms`;
