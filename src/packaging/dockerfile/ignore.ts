/**
 * .dockerignore semantics (moby/patternmatcher): patterns are Go filepath.Match globs plus `**`, relative to the
 * context root; `!` re-includes; the last matching pattern wins; a pattern that matches a directory matches
 * everything under it.
 */
import { posix } from "node:path";

interface Pattern {
  exclusion: boolean;
  regex: RegExp;
  source: string;
}

export interface DockerIgnore {
  patterns: readonly Pattern[];
  /** Whether a context-relative path (posix separators) is left out of the build context. */
  ignores(path: string): boolean;
}

export function parseDockerIgnore(text: string): DockerIgnore {
  const patterns: Pattern[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    let exclusion = false;
    if (line.startsWith("!")) {
      exclusion = true;
      line = line.slice(1).trim();
    }
    const cleaned = clean(line);
    if (cleaned === "") continue;
    patterns.push({ exclusion, regex: globToRegex(cleaned), source: raw.trim() });
  }
  return {
    patterns,
    ignores(path: string): boolean {
      const target = clean(path);
      const parents = target.split("/");
      let ignored = false;
      for (const pattern of patterns) {
        let matched = pattern.regex.test(target);
        for (let i = 1; !matched && i < parents.length; i++) {
          matched = pattern.regex.test(parents.slice(0, i).join("/"));
        }
        if (matched) ignored = !pattern.exclusion;
      }
      return ignored;
    },
  };
}

function clean(path: string): string {
  const normalized = posix.normalize(path.replaceAll("\\", "/")).replace(/^(\.\/|\/)+/, "");
  return normalized === "." ? "" : normalized.replace(/\/+$/, "");
}

/** Go filepath.Match syntax with `**` for any number of directories. */
export function globToRegex(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? "";
    if (c === "*") {
      if (glob[i + 1] === "*") {
        i++;
        if (glob[i + 1] === "/") {
          i++;
          out += "(?:.*/)?";
        } else {
          out += ".*";
        }
      } else {
        out += "[^/]*";
      }
    } else if (c === "?") {
      out += "[^/]";
    } else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end === -1) {
        out += "\\[";
      } else {
        let body = glob.slice(i + 1, end);
        if (body.startsWith("^") || body.startsWith("!")) body = `^${body.slice(1)}`;
        out += `[${body.replaceAll("\\", "\\\\")}]`;
        i = end;
      }
    } else if (c === "\\" && i + 1 < glob.length) {
      out += escapeRegex(glob[++i] ?? "");
    } else {
      out += escapeRegex(c);
    }
  }
  return new RegExp(`^${out}$`);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
