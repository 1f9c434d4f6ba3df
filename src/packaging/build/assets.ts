/**
 * Files the single-file agent carries besides its code, as SEA assets: the Python helper, and the backend stub's
 * dashboard (the list, keys and sources are the stub's own `DASHBOARD_ASSETS`) so `trainer-agent local` serves it
 * without the repository or node_modules.
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { DASHBOARD_ASSETS } from "../../../backend-stub/src/http/static.ts";
import { ASSETS } from "../sea.ts";

/** Asset key -> absolute source path. Dashboard files that are missing are left out (the API works without). */
export async function agentAssets(repoRoot: string, helperPath: string): Promise<Record<string, string>> {
  const assets: Record<string, string> = { [ASSETS.helper]: helperPath };
  for (const { key, source } of DASHBOARD_ASSETS) {
    const path = join(repoRoot, source);
    try {
      await access(path);
      assets[key] = path;
    } catch {
      // not there (uplot not installed, a file renamed): that page part answers 404
    }
  }
  return assets;
}
