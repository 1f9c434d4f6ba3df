/**
 * The dashboard's files: the stub's own (`backend-stub/public/`) and uPlot's dist files straight from
 * node_modules (no CDN, no copy to keep in sync). Everything is read once at start and served from memory.
 */
import { readFile, readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import * as sea from "node:sea";
import { fileURLToPath } from "node:url";

export interface Asset {
  body: Buffer;
  type: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

const UPLOT_FILES = ["uPlot.iife.min.js", "uPlot.min.css"];

/**
 * The dashboard's files for the single-file build, which has neither backend-stub/public nor node_modules:
 * `npm run build:agent` embeds each `source` (relative to the repository root) as the SEA asset `key`.
 */
export const DASHBOARD_ASSETS: ReadonlyArray<{ url: string; key: string; source: string }> = [
  ...["index.html", "app.js", "style.css", "favicon.svg"].map((n) => ({
    url: `/assets/${n}`,
    key: `dashboard/${n}`,
    source: `backend-stub/public/${n}`,
  })),
  ...UPLOT_FILES.map((n) => ({
    url: `/vendor/uplot/${n}`,
    key: `dashboard/${n}`,
    source: `node_modules/uplot/dist/${n}`,
  })),
];

function embeddedAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!sea.isSea()) return assets;
  for (const { url, key } of DASHBOARD_ASSETS) {
    try {
      assets.set(url, {
        body: Buffer.from(sea.getAsset(key)),
        type: TYPES[path.extname(key)] ?? "application/octet-stream",
      });
    } catch {
      // built without the dashboard: the API still works
    }
  }
  return assets;
}

/**
 * `backend-stub/public/` beside these sources; undefined where the module has no file URL. A build that bundles
 * the stub elsewhere (dist/lib) passes `publicDir` itself, as `trainer-agent local` does.
 */
export function defaultPublicDir(): string | undefined {
  try {
    return fileURLToPath(new URL("../../public/", import.meta.url));
  } catch {
    return undefined;
  }
}

function uplotDistDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    return path.join(path.dirname(require.resolve("uplot/package.json")), "dist");
  } catch {
    return undefined;
  }
}

/** Loads the assets, keyed by URL path (`/assets/app.js`, `/vendor/uplot/uPlot.iife.min.js`). */
export async function loadAssets(publicDir: string | undefined): Promise<Map<string, Asset>> {
  const assets = embeddedAssets();
  if (assets.size > 0) return assets;
  const add = async (urlPath: string, file: string): Promise<void> => {
    try {
      assets.set(urlPath, {
        body: await readFile(file),
        type: TYPES[path.extname(file)] ?? "application/octet-stream",
      });
    } catch {
      // A missing asset answers 404; the API works without a dashboard.
    }
  };
  if (publicDir !== undefined) {
    const names = await readdir(publicDir).catch(() => [] as string[]);
    await Promise.all(
      names
        .filter((n) => TYPES[path.extname(n)] !== undefined)
        .map((n) => add(`/assets/${n}`, path.join(publicDir, n))),
    );
  }
  const uplot = uplotDistDir();
  if (uplot !== undefined) await Promise.all(UPLOT_FILES.map((n) => add(`/vendor/uplot/${n}`, path.join(uplot, n))));
  return assets;
}
