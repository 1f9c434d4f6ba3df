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
