/**
 * Whether this process is the single-file agent (a Node single executable application built by
 * `npm run build:agent`) and access to the files it carries. `node:sea` exists in every Node >= 20; outside a
 * single executable `isSea()` is false.
 */
import * as sea from "node:sea";

/** Names of the assets `npm run build:agent` embeds (see src/packaging/build/build-agent.ts). */
export const ASSETS = {
  helper: "trainer_agent.py",
} as const;

/** Prefix of the dashboard's assets; the rest of the key is the URL path the backend stub serves it under. */
export const DASHBOARD_ASSET_PREFIX = "dashboard/";

export function isSingleExecutable(): boolean {
  return sea.isSea();
}

/** An embedded asset as UTF-8 text, or undefined when this is not the single-file build or it lacks the asset. */
export function readEmbeddedText(name: string): string | undefined {
  if (!sea.isSea()) return undefined;
  try {
    return sea.getAsset(name, "utf8");
  } catch {
    return undefined; // ERR_SINGLE_EXECUTABLE_APPLICATION_ASSET_NOT_FOUND: built without it
  }
}

/** An embedded asset's bytes, or undefined (see readEmbeddedText). */
export function readEmbeddedBytes(name: string): Buffer | undefined {
  if (!sea.isSea()) return undefined;
  try {
    return Buffer.from(sea.getRawAsset(name));
  } catch {
    return undefined;
  }
}

/**
 * The dashboard files this single-file agent carries, keyed by URL path (`/assets/app.js`,
 * `/vendor/uplot/uPlot.min.css`); empty outside the single-file build. For the backend stub's static file server.
 */
export function embeddedDashboard(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  if (!sea.isSea()) return files;
  for (const key of sea.getAssetKeys()) {
    if (!key.startsWith(DASHBOARD_ASSET_PREFIX)) continue;
    const body = readEmbeddedBytes(key);
    if (body !== undefined) files.set(`/${key.slice(DASHBOARD_ASSET_PREFIX.length)}`, body);
  }
  return files;
}
