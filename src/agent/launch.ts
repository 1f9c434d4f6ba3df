/** The plugin's part of a run: the distributed environment and the command to launch. */
import type { AgentConfig } from "../config/index.ts";
import type { TraceContext } from "../log/trace.ts";
import type { PluginContext, TrainerPlugin } from "../plugins/types.ts";
import { commonChildEnv } from "./child-env.ts";

export interface Launch {
  plugin: TrainerPlugin;
  /** The plugin env hook's variables (RANK, WORLD_SIZE, ... or TF_CONFIG). */
  translated: Record<string, string>;
  /** What is spawned: the command as given, or the plugin's (torchrun ...). */
  argv: readonly string[];
  /** The `started` event's data. */
  started: Record<string, unknown>;
}

export async function planLaunch(input: {
  config: AgentConfig;
  trace: TraceContext;
  argv: readonly string[];
  framework: string | undefined;
  plugin: string | undefined;
  cwd: string;
}): Promise<Launch> {
  const { config, argv } = input;
  const { resolvePlugin } = await import("../plugins/resolve.ts");
  const plugin = await resolvePlugin({ framework: input.framework, plugin: input.plugin, cwd: input.cwd });
  const common = commonChildEnv(config, input.trace.traceId);
  const ctx: PluginContext = { config, env: common, nodeRank: config.distributed.nodeRank, argv };
  const translated = plugin.env === undefined ? {} : await plugin.env(ctx);
  const launch =
    plugin.command === undefined ? { argv } : await plugin.command(argv, { ...ctx, env: { ...common, ...translated } });
  const worldSize = worldSizeOf(translated, config);
  return {
    plugin,
    translated,
    argv: launch.argv,
    started: {
      framework: plugin.name,
      command: launch.argv[0],
      node_rank: config.distributed.nodeRank,
      nnodes: config.distributed.nnodes,
      ...(worldSize !== undefined && { world_size: worldSize }),
    },
  };
}

/** World size for the `started` event: the plain-python translation's, else nnodes x a numeric nproc_per_node. */
function worldSizeOf(translated: Record<string, string>, config: AgentConfig): number | undefined {
  if (translated.WORLD_SIZE !== undefined) return Number(translated.WORLD_SIZE);
  const { nnodes, nprocPerNode } = config.distributed;
  return typeof nprocPerNode === "number" ? nnodes * nprocPerNode : undefined;
}
