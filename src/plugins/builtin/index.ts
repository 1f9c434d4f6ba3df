import type { TrainerPlugin } from "../types.ts";
import { pytorchPlugin, type BuiltinOptions } from "./pytorch.ts";
import { pythonPlugin } from "./python.ts";
import { tensorflowPlugin } from "./tensorflow.ts";

export { pytorchPlugin, pythonPlugin, tensorflowPlugin, type BuiltinOptions };

export const BUILTIN_FRAMEWORKS = ["pytorch", "tensorflow", "python"] as const;
export type BuiltinFramework = (typeof BUILTIN_FRAMEWORKS)[number];

const FACTORIES: Record<BuiltinFramework, (options?: BuiltinOptions) => TrainerPlugin> = {
  pytorch: pytorchPlugin,
  tensorflow: tensorflowPlugin,
  python: pythonPlugin,
};

export function isBuiltinFramework(name: string): name is BuiltinFramework {
  return (BUILTIN_FRAMEWORKS as readonly string[]).includes(name);
}

/** A fresh built-in plugin by framework name. */
export function builtinPlugin(name: BuiltinFramework, options: BuiltinOptions = {}): TrainerPlugin {
  return FACTORIES[name](options);
}
