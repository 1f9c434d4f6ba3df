import type { TrainerPlugin } from "../types.ts";
import { kerasPlugin } from "./keras.ts";
import { ultralyticsPlugin } from "./ultralytics.ts";

export { kerasPlugin, ultralyticsPlugin };

/**
 * The example plugins by name, as factories. Meant for `--plugin keras` / `--plugin ultralytics` to resolve to
 * these without a file path (which also works in the single-file build and from an installed package, where
 * Node cannot load .ts files under node_modules).
 */
export const EXAMPLE_PLUGINS: Readonly<Record<string, () => TrainerPlugin>> = Object.freeze({
  keras: kerasPlugin,
  ultralytics: ultralyticsPlugin,
});
