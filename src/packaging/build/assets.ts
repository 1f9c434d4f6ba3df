/**
 * Files the single-file agent carries besides its code, as SEA assets: the Python helper, and the backend stub's
 * dashboard (its public/ folder and uPlot's dist files) so `trainer-agent local` can serve it without the repo.
 * Dashboard keys mirror the URL paths the stub serves: `dashboard/assets/app.js`, `dashboard/vendor/uplot/...`.
 */
import { readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { ASSETS, DASHBOARD_ASSET_PREFIX } from "../sea.ts";

const DASHBOARD_EXTENSIONS = /\.(html|js|css|svg|png|ico)$/;
const UPLOT_FILES = ["uPlot.iife.min.js", "uPlot.min.css"];

/** Asset key -> absolute source path, for the files that exist (the helper is checked by the caller). */
export async function agentAssets(repoRoot: string, helperPath: string): Promise<Record<string, string>> {
  const assets: Record<string, string> = { [ASSETS.helper]: helperPath };
  const publicDir = join(repoRoot, "backend-stub", "public");
  for (const name of (await readdir(publicDir).catch(() => [] as string[])).sort()) {
    if (DASHBOARD_EXTENSIONS.test(name)) assets[`${DASHBOARD_ASSET_PREFIX}assets/${name}`] = join(publicDir, name);
  }
  try {
    const uplotDist = join(
      dirname(createRequire(join(repoRoot, "package.json")).resolve("uplot/package.json")),
      "dist",
    );
    for (const name of UPLOT_FILES) assets[`${DASHBOARD_ASSET_PREFIX}vendor/uplot/${name}`] = join(uplotDist, name);
  } catch {
    // uplot not installed: the dashboard page loads without its charts
  }
  return assets;
}
