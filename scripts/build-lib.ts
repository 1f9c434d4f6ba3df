/**
 * `npm run build:lib`: the JavaScript + type declarations an installed package needs. Node runs this repo's
 * TypeScript directly, but refuses to strip types under node_modules, so the published package carries
 * dist/lib (ESM, dependencies left external, lazy imports kept lazy by code splitting) and dist/types.
 * Runs before `npm pack`/`npm publish` (prepack).
 */
import { execFileSync } from "node:child_process";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { build } from "esbuild";

const root = resolve(import.meta.dirname, "..");
const out = join(root, "dist/lib");
const types = join(root, "dist/types");

export const LIB_ENTRIES = {
  index: "src/index.ts",
  plugins: "src/plugins/index.ts",
  testkit: "src/plugins/testkit.ts",
  submitter: "src/submitter/index.ts",
  contract: "src/contract/index.ts",
  errors: "src/errors/index.ts",
  config: "src/config/public.ts",
  http: "src/http/index.ts",
  "cli/trainer-agent": "src/cli/trainer-agent.ts",
  "cli/trainjob": "src/cli/trainjob.ts",
} as const;

await rm(out, { recursive: true, force: true });
await rm(types, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(LIB_ENTRIES).map(([k, v]) => [k, join(root, v)])),
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node22",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
});

// Declarations: tsc emits them with the sources' `.ts` specifiers; installed consumers resolve `.js`.
execFileSync(
  process.execPath,
  [join(root, "node_modules/typescript/bin/tsc"), "--project", join(root, "tsconfig.build.json")],
  {
    stdio: "inherit",
  },
);
for (const file of await listFiles(types)) {
  if (!file.endsWith(".d.ts")) continue;
  const text = await readFile(file, "utf8");
  await writeFile(file, text.replace(/(from\s+["']\.{1,2}\/[^"']*?)\.ts(["'])/g, "$1.js$2"));
}
console.log(`build:lib: ${Object.keys(LIB_ENTRIES).length} entries in dist/lib, declarations in dist/types`);

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}
