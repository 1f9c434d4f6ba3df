/**
 * `trainer-agent env`: the translated environment a child would get, for shells and init containers
 * (`eval "$(trainer-agent env --format sh)"` replaces hand-written `export RANK=...` snippets).
 * Prints only what the agent adds (distributed variables, DATASET_DIR, CHECKPOINT_DIR, TRACE_ID), never a secret.
 */
import { isSecretLookingName, loadAgentConfig, SECRET_ENV_NAMES, type Env } from "../config/index.ts";
import { AgentError } from "../errors/index.ts";
import type { HostProbe } from "../env/index.ts";
import { resolveTrace } from "../log/trace.ts";
import { resolvePlugin } from "../plugins/index.ts";
import { commonChildEnv } from "./child-env.ts";

export const ENV_FORMATS = ["sh", "json"] as const;
export type EnvFormat = (typeof ENV_FORMATS)[number];

export interface EnvCommandOptions {
  framework?: string | undefined;
  plugin?: string | undefined;
  format?: string | undefined;
  /** `--nproc-per-node`: overrides PET_NPROC_PER_NODE (validated like it). */
  nprocPerNode?: string | undefined;
  env: Env;
  cwd: string;
  probe?: HostProbe;
  /** Random bytes for a fresh trace id (crypto's by default). */
  random?: (bytes: number) => Buffer;
}

/** Names whose values are never printed: the configured secret list, and any credential-looking name. */
export function isSecretName(name: string): boolean {
  return (SECRET_ENV_NAMES as readonly string[]).includes(name) || isSecretLookingName(name);
}

/** The variables and their text in the requested format. */
export async function renderEnv(options: EnvCommandOptions): Promise<{ vars: Record<string, string>; text: string }> {
  const format = options.format ?? "sh";
  if (!(ENV_FORMATS as readonly string[]).includes(format))
    throw new AgentError("USAGE", `--format must be one of ${ENV_FORMATS.join(", ")}, got ${JSON.stringify(format)}`);
  const env =
    options.nprocPerNode === undefined ? options.env : { ...options.env, PET_NPROC_PER_NODE: options.nprocPerNode };
  const config = loadAgentConfig(env);
  const plugin = await resolvePlugin({
    framework: options.framework,
    plugin: options.plugin,
    cwd: options.cwd,
    ...(options.probe !== undefined && { probe: options.probe }),
  });
  const base = commonChildEnv(config, resolveTrace(config, options.random).traceId);
  const translated =
    plugin.env === undefined ? {} : await plugin.env({ config, env: base, nodeRank: config.distributed.nodeRank });
  const all: Record<string, string> = { ...base, ...translated };
  // An existing TF_CONFIG is left untouched by the agent, and shown as the child gets it.
  if (options.framework === "tensorflow" && config.distributed.tfConfig !== undefined)
    all.TF_CONFIG = config.distributed.tfConfig;
  const vars = Object.fromEntries(Object.entries(all).filter(([name]) => !isSecretName(name)));
  return { vars, text: format === "json" ? `${JSON.stringify(vars, null, 2)}\n` : formatSh(vars) };
}

/** `export NAME='value'` lines, single-quoted so `eval` takes every value literally. */
export function formatSh(vars: Readonly<Record<string, string>>): string {
  return Object.entries(vars)
    .map(([name, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        throw new AgentError("INTERNAL", `refusing to print an invalid variable name ${JSON.stringify(name)}`);
      return `export ${name}=${shellQuote(value)}\n`;
    })
    .join("");
}

export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
