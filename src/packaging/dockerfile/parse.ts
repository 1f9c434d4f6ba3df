/**
 * A small Dockerfile parser: enough of the syntax (parser directives, escape character, line continuations,
 * comments, heredocs, flags, exec/JSON form) to let ./check.ts verify what a build would need, without Docker.
 * Reference: https://docs.docker.com/reference/dockerfile/
 */

export interface Instruction {
  /** Upper-case keyword: FROM, COPY, RUN, ... */
  keyword: string;
  /** `--name=value` flags before the arguments (a flag given twice keeps every value). */
  flags: Array<{ name: string; value: string }>;
  /** The arguments after the flags, as written (continuations joined with a space). */
  rest: string;
  /** JSON (exec) form arguments when `rest` is a JSON array of strings. */
  json: string[] | undefined;
  /** Heredoc bodies (`RUN <<EOF`), in order. */
  heredocs: string[];
  /** 1-based line of the keyword. */
  line: number;
}

export interface Dockerfile {
  escape: string;
  directives: Record<string, string>;
  instructions: Instruction[];
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$/;
const HEREDOC = /<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const directives: Record<string, string> = {};
  let index = 0;
  // Parser directives: only at the very top, before any instruction, comment or blank line.
  for (; index < lines.length; index++) {
    const match = DIRECTIVE.exec(lines[index] ?? "");
    if (match === null) break;
    const name = (match[1] ?? "").toLowerCase();
    if (name in directives) break;
    directives[name] = match[2] ?? "";
  }
  const escape = directives.escape === "`" ? "`" : "\\";
  const instructions: Instruction[] = [];

  while (index < lines.length) {
    const first = lines[index] ?? "";
    const trimmed = first.trim();
    if (trimmed === "" || trimmed.startsWith("#")) {
      index++;
      continue;
    }
    const startLine = index + 1;
    let logical = "";
    let current = first;
    index++;
    for (;;) {
      const stripped = current.replace(/\s+$/, "");
      if (stripped.endsWith(escape) && !stripped.endsWith(escape + escape)) {
        logical += stripped.slice(0, -1) + " ";
        // Comment and empty lines inside a continuation are dropped by Docker.
        while (index < lines.length && /^\s*(#.*)?$/.test(lines[index] ?? "")) index++;
        if (index >= lines.length) break;
        current = lines[index] ?? "";
        index++;
        continue;
      }
      logical += current;
      break;
    }
    const heredocs: string[] = [];
    for (const match of logical.matchAll(HEREDOC)) {
      const strip = match[1] === "-";
      const word = match[3] ?? "";
      const body: string[] = [];
      while (index < lines.length) {
        const line = lines[index] ?? "";
        index++;
        if ((strip ? line.replace(/^\t+/, "") : line) === word) break;
        body.push(line);
      }
      heredocs.push(body.join("\n"));
    }
    instructions.push(parseInstruction(logical.trim(), startLine, heredocs));
  }
  return { escape, directives, instructions };
}

function parseInstruction(text: string, line: number, heredocs: string[]): Instruction {
  const space = text.search(/\s/);
  const keyword = (space === -1 ? text : text.slice(0, space)).toUpperCase();
  let rest = space === -1 ? "" : text.slice(space).trim();
  const flags: Array<{ name: string; value: string }> = [];
  for (;;) {
    const match = /^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?(?:\s+|$)/.exec(rest);
    if (match === null) break;
    flags.push({ name: match[1] ?? "", value: match[2] ?? "" });
    rest = rest.slice(match[0].length);
  }
  return { keyword, flags, rest, json: parseJsonForm(rest), heredocs, line };
}

function parseJsonForm(rest: string): string[] | undefined {
  if (!rest.startsWith("[")) return undefined;
  try {
    const value: unknown = JSON.parse(rest);
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value;
  } catch {
    // shell form that happens to start with "["
  }
  return undefined;
}

/** Splits shell-form arguments on whitespace, honouring simple quotes (enough for COPY/ADD/ARG/ENV/LABEL). */
export function splitWords(rest: string): string[] {
  const words: string[] = [];
  let word = "";
  let quote: string | undefined;
  let inWord = false;
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i] ?? "";
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < rest.length) word += rest[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      if (c === "\\" && i + 1 < rest.length) word += c + (rest[++i] ?? "");
      else word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** `--name=value` of an instruction, the last one given. */
export function flag(instruction: Instruction, name: string): string | undefined {
  return instruction.flags.findLast((f) => f.name === name)?.value;
}
