import { AgentError } from "../errors/index.ts";
import type { TrainerPlugin } from "./types.ts";

const HOOKS = ["env", "command", "parseLine"] as const;
/**
 * Hooks that existed once, with what to do instead: a plugin still defining one fails at load with the way out
 * rather than as an unknown field (or, worse, being accepted and never called, as checkpoints was).
 */
const RETIRED: Readonly<Record<string, string>> = {
  checkpoints:
    "hook checkpoints is not supported: the agent uploads what is written under CHECKPOINT_DIR " +
    "(ctx.config.checkpointDir); point the framework there with env or command, and parseLine may report each " +
    "checkpoint there once it is complete",
};
const FIELDS: readonly string[] = ["name", "description", "version"];
const NAME = /^[a-z][a-z0-9._-]{0,62}$/;

/**
 * Validates a plugin definition and returns it frozen. Throws PLUGIN_INVALID naming the plugin and the field,
 * so a broken plugin fails when it is loaded, not in the middle of a training run.
 */
export function definePlugin<P extends TrainerPlugin>(plugin: P): Readonly<P> {
  if (typeof plugin !== "object" || plugin === null)
    throw new AgentError("PLUGIN_INVALID", "plugin definition must be an object with at least a name");
  const label = typeof plugin.name === "string" ? plugin.name : String(plugin.name);
  if (typeof plugin.name !== "string" || !NAME.test(plugin.name))
    throw new AgentError(
      "PLUGIN_INVALID",
      `plugin "${label}": name must match ${NAME} (lower-case letters, digits, '.', '_', '-')`,
    );
  for (const hook of HOOKS) {
    const fn = (plugin as Record<string, unknown>)[hook];
    if (fn !== undefined && typeof fn !== "function")
      throw new AgentError("PLUGIN_INVALID", `plugin "${label}": hook ${hook} must be a function, got ${typeof fn}`);
  }
  const retired = Object.keys(plugin).find((k) => RETIRED[k] !== undefined);
  if (retired !== undefined) throw new AgentError("PLUGIN_INVALID", `plugin "${label}": ${RETIRED[retired]}`);
  const unknown = Object.keys(plugin).filter((k) => !FIELDS.includes(k) && !(HOOKS as readonly string[]).includes(k));
  if (unknown.length > 0)
    throw new AgentError(
      "PLUGIN_INVALID",
      `plugin "${label}": unknown field(s) ${unknown.join(", ")}; hooks are ${HOOKS.join(", ")}`,
    );
  return Object.freeze({ ...plugin });
}
