/**
 * The plugin API: how a framework is launched and how its output turns into reports. Built-in plugins
 * (pytorch, tensorflow, python) and external ones (keras-style, ultralytics-style, a user's own) share it.
 */
import type { AgentConfig } from "../config/index.ts";
import type { Report } from "../contract/index.ts";

/** Read-only facts a hook may use. */
export interface PluginContext {
  readonly config: AgentConfig;
  /** The translated distributed environment the agent computed so far (RANK, WORLD_SIZE, TF_CONFIG, ...). */
  readonly env: Readonly<Record<string, string>>;
  /** The node's global rank 0 decides heartbeats; plugins may use it to filter. */
  readonly nodeRank: number;
  /**
   * The user's command, when the caller knows it (`trainer-agent run` does, `trainer-agent env` does not). The
   * pytorch built-in uses it so a command that already is torchrun gets PET_* only, not per-worker variables.
   */
  readonly argv?: readonly string[];
}

export interface LaunchCommand {
  /** argv[0] and its arguments: spawned directly, never through a shell. */
  argv: readonly string[];
}

export interface LineSource {
  stream: "stdout" | "stderr";
}

export interface TrainerPlugin {
  readonly name: string;
  readonly description?: string;
  readonly version?: string;
  /** Extra variables for the child, merged over the agent's translated ones. */
  env?(ctx: PluginContext): Record<string, string> | Promise<Record<string, string>>;
  /** How to launch the user's argv (for example through torchrun). Defaults to the argv unchanged. */
  command?(argv: readonly string[], ctx: PluginContext): LaunchCommand | Promise<LaunchCommand>;
  /**
   * Turns one line of the child's ordinary output into reports (`::trainer::` lines are handled by the agent
   * before plugins see them). Called for every line: keep it cheap, return [] or undefined for most lines.
   */
  parseLine?(line: string, source: LineSource): readonly Report[] | undefined;
}
