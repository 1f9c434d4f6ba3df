/**
 * Which plugin runs a job: `--framework` (a built-in name, or the name of the plugin loaded with `--plugin`) and
 * `--plugin PATH_OR_MODULE`. An external plugin's missing env/command hooks fall back to the built-in named by
 * `--framework` (python when `--framework` names the external plugin or is absent); its own env hook runs after
 * the built-in's, sees the translated variables in `ctx.env`, and its variables win. Every hook of the result
 * is guarded: a throw or a malformed return becomes PLUGIN_HOOK_FAILED naming the plugin and the hook.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, resolve as resolvePath } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AgentError, isAgentError, messageOf, type ErrorCode } from "../errors/index.ts";
import { describe, isRecord, kindOf } from "../internal/values.ts";
import type { HostProbe } from "../env/index.ts";
import { definePlugin } from "./define.ts";
import type { LaunchCommand, PluginContext, TrainerPlugin } from "./types.ts";
import { BUILTIN_FRAMEWORKS, builtinPlugin, isBuiltinFramework, type BuiltinFramework } from "./builtin/index.ts";

export interface ResolvePluginOptions {
  /** A built-in (`pytorch`, `tensorflow`, `python`) or the name of the plugin given by `plugin`. Default `python`. */
  framework?: string | undefined;
  /** A file path (relative to `cwd`) or an installed package name whose default export is a plugin or a factory. */
  plugin?: string | undefined;
  cwd: string;
  /** Machine facts for the built-ins; the real system by default. */
  probe?: HostProbe;
}

/** Errors a hook may raise that already name the fault for the user (bad environment, bad command line). */
const PASS_THROUGH: readonly ErrorCode[] = ["ENV_INVALID", "CONFIG_INVALID", "USAGE", "CHILD_SPAWN_FAILED"];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export async function resolvePlugin(options: ResolvePluginOptions): Promise<TrainerPlugin> {
  const given = options.framework?.trim() || undefined;
  // Built-in names are matched case-insensitively (`--framework PyTorch`); plugin names are lower-case by definition.
  const framework = given !== undefined && isBuiltinFramework(given.toLowerCase()) ? given.toLowerCase() : given;
  const builtinOptions = options.probe === undefined ? {} : { probe: options.probe };
  if (options.plugin === undefined || options.plugin.trim() === "") {
    const name = framework ?? "python";
    const bundled = isBuiltinFramework(name) ? undefined : await bundledPlugin(name);
    if (bundled !== undefined) return guard(bundled, builtinPlugin("python", builtinOptions));
    if (!isBuiltinFramework(name))
      throw new AgentError(
        "PLUGIN_NOT_FOUND",
        `framework "${name}" is not a built-in (${BUILTIN_FRAMEWORKS.join(", ")}); load other frameworks with --plugin PATH_OR_MODULE`,
      );
    return guard(builtinPlugin(name, builtinOptions), undefined);
  }

  const spec = options.plugin.trim();
  const external = (await bundledPlugin(spec)) ?? (await loadPlugin(spec, options.cwd, framework));
  let fallback: BuiltinFramework = "python";
  if (framework !== undefined && framework !== external.name) {
    if (!isBuiltinFramework(framework))
      throw new AgentError(
        "PLUGIN_NOT_FOUND",
        `framework "${framework}" is neither a built-in (${BUILTIN_FRAMEWORKS.join(", ")}) nor the plugin loaded from ` +
          `"${spec}" (named "${external.name}")`,
      );
    fallback = framework;
  } else if (framework !== undefined && isBuiltinFramework(framework)) {
    fallback = framework;
  }
  return guard(external, builtinPlugin(fallback, builtinOptions));
}

/**
 * The example plugins shipped with the agent (`keras`, `ultralytics`), by bare name: they work from the single
 * file and an installed package alike. A bare name that is not one of them is looked up as a package.
 */
async function bundledPlugin(spec: string): Promise<TrainerPlugin | undefined> {
  if (!/^[a-z][a-z0-9._-]*$/.test(spec)) return undefined;
  const { EXAMPLE_PLUGINS } = await import("./examples/index.ts");
  const factory = Object.hasOwn(EXAMPLE_PLUGINS, spec) ? EXAMPLE_PLUGINS[spec] : undefined;
  return factory === undefined ? undefined : definePlugin(factory());
}

/** Imports a plugin module and validates its default export (a plugin, or a factory returning one). */
export async function loadPlugin(spec: string, cwd: string, framework?: string): Promise<TrainerPlugin> {
  const url = locate(spec, cwd);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    throw new AgentError("PLUGIN_INVALID", `plugin "${spec}" could not be loaded: ${oneLine(error)}`, {
      cause: error,
    });
  }
  let value: unknown = mod.default ?? mod.plugin;
  if (value === undefined)
    throw new AgentError(
      "PLUGIN_INVALID",
      `plugin "${spec}" has no default export; export default definePlugin({ name, ...hooks }) or a factory returning one`,
    );
  if (typeof value === "function") {
    try {
      value = await (value as (o: { framework?: string; cwd: string }) => unknown)({ framework, cwd });
    } catch (error) {
      if (isAgentError(error) && error.code === "PLUGIN_INVALID") throw error;
      throw new AgentError("PLUGIN_INVALID", `plugin "${spec}": its factory threw: ${oneLine(error)}`, {
        cause: error,
      });
    }
  }
  try {
    return definePlugin(value as TrainerPlugin);
  } catch (error) {
    if (isAgentError(error))
      throw new AgentError(error.code, `${error.message} (loaded from "${spec}")`, { cause: error });
    throw error;
  }
}

function isPathSpec(spec: string): boolean {
  return (
    spec.startsWith(".") ||
    isAbsolute(spec) ||
    spec.startsWith("file:") ||
    /\.(m|c)?(j|t)s$/.test(spec) ||
    (spec.includes("/") && !spec.startsWith("@") && spec.split("/").length > 2)
  );
}

/** A file URL for the plugin module, or PLUGIN_NOT_FOUND saying where it looked. */
function locate(spec: string, cwd: string): string {
  if (isPathSpec(spec)) {
    const file = spec.startsWith("file:") ? fileURLToPath(spec) : resolvePath(cwd, spec);
    if (!existsSync(file))
      throw new AgentError("PLUGIN_NOT_FOUND", `plugin file "${spec}" not found (looked at ${file})`);
    if (statSync(file).isDirectory()) {
      const entry = packageEntry(file, ".");
      if (entry === undefined)
        throw new AgentError("PLUGIN_NOT_FOUND", `plugin "${spec}" is a directory without a package.json entry point`);
      return pathToFileURL(entry).href;
    }
    return pathToFileURL(file).href;
  }
  const found = resolvePackage(spec, cwd);
  if (found === undefined)
    throw new AgentError(
      "PLUGIN_NOT_FOUND",
      `plugin package "${spec}" is not installed (searched node_modules from ${cwd} upwards); ` +
        `install it or pass a file path such as ./my-plugin.ts`,
    );
  return pathToFileURL(found).href;
}

/** Node's resolution from `cwd` (CommonJS conditions), then the ESM `import` condition read from package.json. */
function resolvePackage(spec: string, cwd: string): string | undefined {
  try {
    return createRequire(join(cwd, "__trainer_plugin__.js")).resolve(spec);
  } catch {
    // ESM-only packages (exports with only an "import" condition) land here.
  }
  const parts = spec.split("/");
  const nameLength = spec.startsWith("@") ? 2 : 1;
  const name = parts.slice(0, nameLength).join("/");
  const subpath = parts.length > nameLength ? `./${parts.slice(nameLength).join("/")}` : ".";
  for (let dir = resolvePath(cwd); ; dir = dirname(dir)) {
    const pkgDir = join(dir, "node_modules", name);
    if (existsSync(join(pkgDir, "package.json"))) {
      const entry = packageEntry(pkgDir, subpath);
      if (entry !== undefined) return entry;
    }
    if (dirname(dir) === dir) return undefined;
  }
}

function packageEntry(pkgDir: string, subpath: string): string | undefined {
  let pkg: { exports?: unknown; main?: unknown };
  try {
    pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as typeof pkg;
  } catch {
    pkg = {};
  }
  let target: unknown = pkg.exports;
  if (isRecord(target)) {
    const keys = Object.keys(target);
    if (keys.some((k) => k.startsWith("."))) target = target[subpath];
    else if (subpath !== ".") target = undefined;
  } else if (subpath !== ".") target = undefined;
  const fromExports = pickCondition(target);
  const candidates =
    fromExports !== undefined
      ? [fromExports]
      : subpath === "."
        ? [typeof pkg.main === "string" ? pkg.main : undefined, "index.js", "index.mjs", "index.ts"]
        : [subpath, `${subpath}.js`];
  for (const c of candidates) {
    if (c === undefined) continue;
    const file = resolvePath(pkgDir, c);
    if (existsSync(file) && statSync(file).isFile()) return file;
  }
  return undefined;
}

function pickCondition(target: unknown): string | undefined {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) {
    for (const t of target) {
      const hit = pickCondition(t);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }
  if (typeof target === "object" && target !== null) {
    const conditions = target as Record<string, unknown>;
    for (const c of ["import", "node", "default"]) {
      if (c in conditions) {
        const hit = pickCondition(conditions[c]);
        if (hit !== undefined) return hit;
      }
    }
  }
  return undefined;
}

/**
 * The plugin the agent runs: `primary`'s hooks, `fallback`'s env/command where `primary` has none, every call
 * guarded. `fallback` is undefined for a built-in used directly.
 */
function guard(primary: TrainerPlugin, fallback: TrainerPlugin | undefined): TrainerPlugin {
  const name = primary.name;
  const fail = (plugin: TrainerPlugin, hook: string, problem: string, cause?: unknown): AgentError =>
    new AgentError("PLUGIN_HOOK_FAILED", `plugin "${plugin.name}": hook ${hook} ${problem}`, { cause });
  const run = async <T>(plugin: TrainerPlugin, hook: string, call: () => T | Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      if (isAgentError(error) && PASS_THROUGH.includes(error.code)) throw error;
      throw fail(plugin, hook, `failed: ${oneLine(error)}`, error);
    }
  };
  const checkEnv = (plugin: TrainerPlugin, value: unknown): Record<string, string> => {
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw fail(plugin, "env", `must return an object of variable names to strings, got ${describe(value)}`);
    for (const [k, v] of Object.entries(value)) {
      if (!ENV_NAME.test(k)) throw fail(plugin, "env", `returned an invalid variable name ${JSON.stringify(k)}`);
      if (typeof v !== "string") throw fail(plugin, "env", `returned a non-string value for ${k} (${kindOf(v)})`);
    }
    return { ...(value as Record<string, string>) };
  };
  const checkCommand = (plugin: TrainerPlugin, value: unknown): LaunchCommand => {
    const argv = (value as { argv?: unknown } | null)?.argv;
    if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== "string"))
      throw fail(plugin, "command", `must return { argv: [command, ...args] } with strings, got ${describe(value)}`);
    if ((argv[0] as string) === "") throw fail(plugin, "command", "returned an empty command (argv[0])");
    return { argv: [...(argv as string[])] };
  };

  const envOwners = [fallback, primary].filter((p): p is TrainerPlugin => p?.env !== undefined);
  const commandOwner = primary.command !== undefined ? primary : fallback?.command !== undefined ? fallback : undefined;
  const parseOwner =
    primary.parseLine !== undefined ? primary : fallback?.parseLine !== undefined ? fallback : undefined;

  const plugin: TrainerPlugin = {
    name,
    ...(primary.description !== undefined && { description: primary.description }),
    ...(primary.version !== undefined && { version: primary.version }),
    ...(envOwners.length > 0 && {
      async env(ctx: PluginContext) {
        let merged: Record<string, string> = {};
        for (const owner of envOwners) {
          const view: PluginContext = { ...ctx, env: { ...ctx.env, ...merged } };
          const out = await run(owner, "env", () => owner.env!(view));
          merged = { ...merged, ...checkEnv(owner, out) };
        }
        return merged;
      },
    }),
    ...(commandOwner !== undefined && {
      async command(argv: readonly string[], ctx: PluginContext) {
        const out = await run(commandOwner, "command", () => commandOwner.command!(argv, ctx));
        return checkCommand(commandOwner, out);
      },
    }),
    ...(parseOwner !== undefined && {
      parseLine(line: string, source: { stream: "stdout" | "stderr" }) {
        let out: unknown;
        try {
          out = parseOwner.parseLine!(line, source);
        } catch (error) {
          throw fail(parseOwner, "parseLine", `failed: ${oneLine(error)}`, error);
        }
        if (out === undefined || out === null) return undefined;
        if (!Array.isArray(out) || out.some((r) => typeof r !== "object" || r === null || !("kind" in r)))
          throw fail(parseOwner, "parseLine", `must return an array of reports or undefined, got ${describe(out)}`);
        return out;
      },
    }),
  };
  return definePlugin(plugin);
}

/** A thrown error as one line of a PLUGIN_INVALID message: a stack-like multi-line message would bury the hook name. */
function oneLine(error: unknown): string {
  const text = messageOf(error);
  const line = text.split("\n")[0] ?? "";
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}
