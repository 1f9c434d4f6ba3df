/**
 * Keeps Dockerfiles honest where no Docker engine runs: every COPY/ADD source is in the build context (present and
 * not excluded by .dockerignore), every `--from` names an earlier stage or an ARG-named image, every variable a
 * Dockerfile expands is declared, and every `npm run X` a RUN calls is a script of package.json (and `npm ci` has
 * its lock file copied in first). The context is the repository root for every Dockerfile of this repo.
 */
import { readdir, readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import { parseDockerIgnore, globToRegex, type DockerIgnore } from "./ignore.ts";
import { flag, parseDockerfile, splitWords, type Instruction } from "./parse.ts";

export interface DockerContext {
  root: string;
  ignore: DockerIgnore;
  /** Files sent to the builder: context-relative posix paths, .dockerignore applied. */
  files: ReadonlySet<string>;
  /** npm scripts of the context's package.json. */
  scripts: Readonly<Record<string, string>>;
}

export interface Problem {
  file: string;
  line: number;
  message: string;
}

/** Build args every builder defines for FROM lines without an ARG (BuildKit's automatic platform args). */
const AUTOMATIC_FROM_ARGS = new Set(["BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM"]);
/** Instructions whose arguments the builder expands ($VAR); RUN/CMD/ENTRYPOINT are left to the shell. */
const EXPANDED = new Set(["ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"]);
const SKIP_DIRS = new Set([".git", "node_modules"]);

export async function loadDockerContext(root: string): Promise<DockerContext> {
  const ignoreText = await readFile(join(root, ".dockerignore"), "utf8").catch(() => "");
  const ignore = parseDockerIgnore(ignoreText);
  const files = new Set<string>();
  const mayReinclude = (dir: string): boolean =>
    ignore.patterns.some((p) => {
      if (!p.exclusion) return false;
      const literal = literalPrefix(p.source.replace(/^!\s*/, "").replace(/^\/+/, ""));
      return literal === "" || literal.startsWith(`${dir}/`) || `${dir}/`.startsWith(literal);
    });
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(join(root, dir), { withFileTypes: true })) {
      const rel = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (SKIP_DIRS.has(entry.name) && ignore.ignores(rel)) continue; // never walk what is never sent
        if (ignore.ignores(rel) && !mayReinclude(rel)) continue;
        await walk(rel);
      } else if (!ignore.ignores(rel)) {
        files.add(rel);
      }
    }
  };
  await walk("");
  let scripts: Record<string, string> = {};
  try {
    const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { scripts?: Record<string, string> };
    scripts = pkg.scripts ?? {};
  } catch {
    // no package.json: every npm script reference is a problem
  }
  return { root, ignore, files, scripts };
}

/** Every Dockerfile under root (Dockerfile, *.Dockerfile, Dockerfile.*), skipping node_modules, .git and dist. */
export async function findDockerfiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!SKIP_DIRS.has(entry.name) && entry.name !== "dist") await walk(path);
      } else if (/^Dockerfile(\..+)?$|\.Dockerfile$/.test(entry.name)) {
        found.push(path);
      }
    }
  };
  await walk(root);
  return found.sort();
}

interface Stage {
  name: string | undefined;
  index: number;
  env: Map<string, string | undefined>;
  /** Context paths COPY/ADD put into this stage (and its parent stage), for `npm ci`'s lock file. */
  copied: string[];
}

export function checkDockerfile(file: string, text: string, context: DockerContext): Problem[] {
  const problems: Problem[] = [];
  const where = relative(context.root, file) || file;
  const report = (instruction: Instruction, message: string): void => {
    problems.push({ file: where, line: instruction.line, message: `${instruction.keyword}: ${message}` });
  };
  const parsed = parseDockerfile(text);
  // Every stage's name by index, known up front so a reference to a later stage reads as such, not as an image.
  const stageNames = parsed.instructions
    .filter((i) => i.keyword === "FROM")
    .map((i) => {
      const words = splitWords(i.rest);
      return words[1]?.toUpperCase() === "AS" ? (words[2]?.toLowerCase() ?? "") : "";
    });
  const globalArgs = new Map<string, string | undefined>();
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  let args = new Map<string, string | undefined>(); // ARGs visible in the current stage

  const scope = (): Map<string, string | undefined> =>
    stage === undefined ? globalArgs : new Map([...args, ...stage.env]);
  const expand = (instruction: Instruction, value: string, vars = scope()): string | undefined =>
    expandVariables(value, vars, (name) =>
      report(instruction, `uses \${${name}}, which no ARG or ENV declares before this line`),
    );

  for (const instruction of parsed.instructions) {
    const { keyword } = instruction;
    if (stage === undefined && keyword !== "FROM" && keyword !== "ARG") {
      report(instruction, "comes before the first FROM (only ARG may)");
      continue;
    }
    switch (keyword) {
      case "ARG": {
        for (const word of splitWords(instruction.rest)) {
          const eq = word.indexOf("=");
          const name = eq === -1 ? word : word.slice(0, eq);
          const value =
            eq === -1
              ? stage === undefined
                ? undefined
                : globalArgs.get(name)
              : expand(instruction, word.slice(eq + 1));
          (stage === undefined ? globalArgs : args).set(name, value);
        }
        break;
      }
      case "FROM": {
        const words = splitWords(instruction.rest);
        const image = words[0];
        if (image === undefined) {
          report(instruction, "names no image");
          break;
        }
        const fromVars = new Map([...globalArgs, ...[...AUTOMATIC_FROM_ARGS].map((n) => [n, undefined] as const)]);
        const platform = flag(instruction, "platform");
        if (platform !== undefined) expand(instruction, platform, fromVars);
        const resolved = expand(instruction, image, fromVars);
        const alias = words[1]?.toUpperCase() === "AS" ? words[2] : undefined;
        if (words.length > 1 && alias === undefined)
          report(instruction, `expected "FROM image [AS name]", got "${instruction.rest}"`);
        if (alias !== undefined && stages.some((s) => s.name === alias.toLowerCase())) {
          report(instruction, `stage name "${alias}" is used twice`);
        }
        const parent = stages.find((s) => s.name !== undefined && s.name === resolved?.toLowerCase());
        stage = {
          name: alias?.toLowerCase(),
          index: stages.length,
          env: new Map(parent?.env ?? []),
          copied: [...(parent?.copied ?? [])],
        };
        stages.push(stage);
        args = new Map();
        break;
      }
      case "ENV": {
        const words = splitWords(instruction.rest);
        const pairs: Array<[string, string]> =
          words.length >= 2 && !(words[0] ?? "").includes("=")
            ? [
                [
                  words[0] ?? "",
                  instruction.rest.slice(instruction.rest.indexOf(words[0] ?? "") + (words[0] ?? "").length).trim(),
                ],
              ]
            : words.map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)] as [string, string]);
        for (const [name, value] of pairs) {
          if (name === "") report(instruction, `"${instruction.rest}" is not NAME=value`);
          else stage?.env.set(name, expand(instruction, value));
        }
        break;
      }
      case "COPY":
      case "ADD":
        if (stage !== undefined) checkCopy(instruction, stage);
        break;
      case "RUN":
        if (stage !== undefined) checkRun(instruction, stage);
        break;
      case "CMD":
      case "ENTRYPOINT":
      case "SHELL":
        if (instruction.rest.startsWith("[") && instruction.json === undefined) {
          report(instruction, "starts like the exec form but is not a JSON array of strings (check the quotes)");
        }
        break;
      default:
        if (EXPANDED.has(keyword)) expand(instruction, instruction.rest);
    }
  }
  if (stages.length === 0) problems.push({ file: where, line: 1, message: "no FROM: not a Dockerfile" });
  return problems;

  function checkFrom(instruction: Instruction, current: Stage, value: string, what: string): boolean {
    const resolved = expand(instruction, value);
    if (value.includes("$")) return true; // an ARG-named image (declared: expand() checked it)
    if (resolved === undefined) return true;
    const named = stageNames.indexOf(resolved.toLowerCase());
    if (named !== -1) {
      if (named >= current.index) report(instruction, `${what} "${value}" is this stage or a later one`);
      return false;
    }
    if (/^\d+$/.test(resolved)) {
      if (Number(resolved) >= current.index)
        report(instruction, `${what} stage index ${resolved} is not an earlier stage`);
      return false;
    }
    if (!/[:@]/.test(resolved)) {
      report(instruction, `${what} "${value}" is neither an earlier stage nor an ARG-named or tagged image`);
    }
    return true;
  }

  function checkCopy(instruction: Instruction, current: Stage): void {
    const from = flag(instruction, "from");
    if (from !== undefined) {
      checkFrom(instruction, current, from, "--from");
      for (const word of instruction.json ?? splitWords(instruction.rest)) expand(instruction, word);
      return;
    }
    const words = instruction.json ?? splitWords(instruction.rest);
    if (words.length < 2) {
      report(instruction, "needs at least one source and a destination");
      return;
    }
    for (const source of words.slice(0, -1)) {
      if (source.startsWith("<<")) continue; // heredoc
      if (instruction.keyword === "ADD" && /^(https?:\/\/|git@|[a-z]+:\/\/)/.test(source)) continue;
      const resolved = expand(instruction, source);
      if (resolved === undefined) continue; // depends on a build arg without default
      const missing = missingSource(resolved);
      if (missing !== undefined) report(instruction, missing);
      else current.copied.push(normalize(resolved));
    }
    expand(instruction, words.at(-1) ?? "");
  }

  function missingSource(source: string): string | undefined {
    const path = normalize(source);
    if (path.startsWith("../")) return `source "${source}" is outside the build context`;
    if (path === "") return context.files.size > 0 ? undefined : `source "${source}": the build context is empty`;
    if (/[*?[]/.test(path)) {
      const regex = globToRegex(path);
      const hit = [...context.files].some((f) => regex.test(f) || parentsOf(f).some((d) => regex.test(d)));
      return hit ? undefined : `no file of the build context matches "${source}"`;
    }
    if (context.files.has(path) || [...context.files].some((f) => f.startsWith(`${path}/`))) return undefined;
    if (existsSync(join(context.root, path))) {
      return `source "${source}" exists but .dockerignore leaves it out of the build context`;
    }
    return `source "${source}" does not exist in the build context (${context.root})`;
  }

  function checkRun(instruction: Instruction, current: Stage): void {
    for (const mount of instruction.flags.filter((f) => f.name === "mount")) {
      const from = /(?:^|,)from=([^,]+)/.exec(mount.value)?.[1];
      if (from !== undefined) checkFrom(instruction, current, from, "--mount from");
    }
    const script = [instruction.json?.join(" ") ?? instruction.rest, ...instruction.heredocs].join("\n");
    for (const match of script.matchAll(/\bnpm\s+(?:run|run-script)\s+(?:--\S+\s+)*([A-Za-z0-9:_.-]+)/g)) {
      const name = match[1] ?? "";
      if (!(name in context.scripts))
        report(instruction, `runs "npm run ${name}" but package.json has no "${name}" script`);
    }
    for (const match of script.matchAll(/\bnpm\s+(test|start)\b/g)) {
      const name = match[1] ?? "";
      if (!(name in context.scripts))
        report(instruction, `runs "npm ${name}" but package.json has no "${name}" script`);
    }
    if (/\bnpm\s+ci\b/.test(script)) {
      const lock = ["package-lock.json", "npm-shrinkwrap.json"].find((f) => context.files.has(f));
      if (lock === undefined) report(instruction, "runs npm ci, but the build context has no package-lock.json");
      else if (!current.copied.some((c) => covers(c, lock))) {
        report(instruction, `runs npm ci before any COPY brings ${lock} into the stage`);
      }
      if (!current.copied.some((c) => covers(c, "package.json"))) {
        report(instruction, "runs npm ci before any COPY brings package.json into the stage");
      }
    }
  }
}

/** Replaces $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word}; undefined when a value is unknown (ARG without default). */
export function expandVariables(
  text: string,
  vars: ReadonlyMap<string, string | undefined>,
  undeclared: (name: string) => void,
): string | undefined {
  let unknown = false;
  const out = text.replace(
    /\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, braced: string | undefined, op: string | undefined, word: string | undefined, bare: string | undefined) => {
      if (whole === "\\$") return "$";
      const name = braced ?? bare ?? "";
      if (!vars.has(name)) {
        undeclared(name);
        unknown = true;
        return "";
      }
      const value = vars.get(name);
      if (op?.endsWith("-")) return value === undefined || value === "" ? (word ?? "") : value;
      if (op?.endsWith("+")) return value === undefined || value === "" ? "" : (word ?? "");
      if (value === undefined) unknown = true;
      return value ?? "";
    },
  );
  return unknown ? undefined : out;
}

function normalize(path: string): string {
  const cleaned = path
    .replaceAll("\\", "/")
    .replace(/^(\.\/)+/, "")
    .replace(/^\/+/, "")
    .replace(/\/+$/, "");
  return cleaned === "." ? "" : cleaned;
}

function parentsOf(file: string): string[] {
  const parts = file.split("/");
  return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join("/"));
}

/** Whether a COPY source (context-relative, maybe a glob or a directory) brings `file` along. */
export function covers(copied: string, file: string): boolean {
  if (copied === "" || copied === file || file.startsWith(`${copied}/`)) return true;
  return /[*?[]/.test(copied) && globToRegex(copied).test(file);
}

function literalPrefix(pattern: string): string {
  const index = pattern.search(/[*?[\\]/);
  return index === -1 ? pattern : pattern.slice(0, index);
}

/** Checks every Dockerfile under root against root as the build context. */
export async function checkRepositoryDockerfiles(root: string): Promise<{ files: string[]; problems: Problem[] }> {
  const context = await loadDockerContext(root);
  const files = await findDockerfiles(root);
  const problems: Problem[] = [];
  for (const file of files) problems.push(...checkDockerfile(file, await readFile(file, "utf8"), context));
  return { files, problems };
}
