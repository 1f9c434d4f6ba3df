export { definePlugin } from "./define.ts";
export type { LaunchCommand, LineSource, PluginContext, TrainerPlugin } from "./types.ts";
export { loadPlugin, resolvePlugin, type ResolvePluginOptions } from "./resolve.ts";
export {
  BUILTIN_FRAMEWORKS,
  builtinPlugin,
  isBuiltinFramework,
  pytorchPlugin,
  pythonPlugin,
  tensorflowPlugin,
  type BuiltinFramework,
  type BuiltinOptions,
} from "./builtin/index.ts";
