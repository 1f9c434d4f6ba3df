/**
 * Step 1 of the single-file build: esbuild bundles the agent's CLI and everything it imports (dynamic `import()`
 * included) into one CommonJS script, the format a Node single executable application runs as its main script.
 * Modules reached only through `import()` stay wrapped in lazy initialisers, so their top-level code runs on first
 * use, not at start-up.
 */
import { isBuiltin } from "node:module";
import { resolve } from "node:path";
import type { BuildOptions, Message, Metafile } from "esbuild";

export interface BundleResult {
  bytes: number;
  /** Input bytes per npm package (or "(project)") that ended up in the bundle, largest first. */
  packages: Array<{ name: string; bytes: number }>;
  /** Absolute paths of every file esbuild read into the bundle (the Docker build stage must have them all). */
  inputs: string[];
  /** Modules the bundle still loads at run time that are not node built-ins: must be empty for a SEA. */
  external: string[];
  warnings: string[];
}

// A SEA main script is CommonJS: `import.meta` does not exist there. `__filename` is the executable itself.
const IMPORT_META_BANNER =
  'var __sea_import_meta_url = require("node:url").pathToFileURL(__filename).href, __sea_import_meta_dirname = __dirname;';

export function bundleOptions(entry: string, outfile: string): BuildOptions {
  return {
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    // Only node: built-ins stay outside; every package is inlined, since the SEA's require loads built-ins only.
    packages: "bundle",
    mainFields: ["module", "main"],
    define: {
      "import.meta.url": "__sea_import_meta_url",
      "import.meta.dirname": "__sea_import_meta_dirname",
      "import.meta.filename": "__filename",
    },
    banner: { js: IMPORT_META_BANNER },
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    metafile: true,
    logLevel: "silent",
    write: true,
  };
}

export async function bundleAgent(entry: string, outfile: string): Promise<BundleResult> {
  const esbuild = await import("esbuild");
  let result;
  try {
    result = await esbuild.build(bundleOptions(entry, outfile));
  } catch (error) {
    const errors = (error as { errors?: Message[] }).errors ?? [];
    const text = (await esbuild.formatMessages(errors, { kind: "error" })).join("");
    const hint = errors.some((e) => e.text.includes("Top-level await"))
      ? "\nhint: the single-file agent is CommonJS (a SEA main script): move top-level await into an async function\n"
      : "";
    throw new Error(`esbuild could not bundle ${entry}:\n${text || (error as Error).message}${hint}`, { cause: error });
  }
  const warnings = await esbuild.formatMessages(result.warnings, { kind: "warning" });
  const metafile = result.metafile as Metafile;
  const output = Object.values(metafile.outputs)[0];
  const external = (output?.imports ?? []).filter((i) => i.external && !isBuiltin(i.path)).map((i) => i.path);
  const inputs = Object.keys(metafile.inputs).map((p) => resolve(p));
  return {
    bytes: output?.bytes ?? 0,
    packages: packageSizes(metafile),
    inputs,
    external: [...new Set(external)],
    warnings,
  };
}

function packageSizes(metafile: Metafile): Array<{ name: string; bytes: number }> {
  const sizes = new Map<string, number>();
  const output = Object.values(metafile.outputs)[0];
  for (const [path, info] of Object.entries(output?.inputs ?? {})) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path.replaceAll("\\", "/"));
    const name = match?.[1] ?? "(project)";
    sizes.set(name, (sizes.get(name) ?? 0) + info.bytesInOutput);
  }
  return [...sizes].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes);
}
