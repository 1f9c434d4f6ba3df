/**
 * The user's command as an argv, never as text for `bash -c`. A command string is split with POSIX shell word
 * rules (whitespace, single and double quotes, backslash escapes) and nothing else: `;`, `&&`, `|`, `>`, `$VAR`,
 * `$(...)` and backticks are literal characters of a word. A `$(...)` or backtick group is kept in one word even
 * when it contains spaces, as a shell would, but it is never executed. Bad quoting is an error naming the field.
 */
import { AgentError } from "../errors/index.ts";

/** Characters that mean something to a shell; their presence earns a warning (they are passed literally). */
const SHELL_SYNTAX = /[;&|<>`]|\$\(|\$\{|\$[A-Za-z_]/;

/** Splits a command line into words with shell quoting rules; throws SPEC_INVALID naming `field` on bad quoting. */
export function splitCommand(line: string, field = "command"): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  const fail = (why: string): never => {
    throw new AgentError("SPEC_INVALID", `${field}: ${why}`, { details: { field } });
  };
  while (i < line.length) {
    const c = line[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i += 1;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) fail(`unterminated single quote at character ${i + 1}`);
      word += line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i += 1;
      let closed = false;
      while (i < line.length) {
        const d = line[i]!;
        if (d === '"') {
          closed = true;
          i += 1;
          break;
        }
        if (d === "\\" && i + 1 < line.length && '"\\$`\n'.includes(line[i + 1]!)) {
          if (line[i + 1] !== "\n") word += line[i + 1];
          i += 2;
          continue;
        }
        word += d;
        i += 1;
      }
      if (!closed) fail("unterminated double quote");
    } else if (c === "\\") {
      if (i + 1 >= line.length) fail("trailing backslash");
      if (line[i + 1] !== "\n") word += line[i + 1];
      i += 2;
    } else if (c === "$" && line[i + 1] === "(") {
      const end = closingParen(line, i + 1);
      if (end < 0) fail(`unterminated "$(" at character ${i + 1}`);
      word += line.slice(i, end + 1);
      i = end + 1;
    } else if (c === "`") {
      const end = line.indexOf("`", i + 1);
      if (end < 0) fail(`unterminated backtick at character ${i + 1}`);
      word += line.slice(i, end + 1);
      i = end + 1;
    } else {
      word += c;
      i += 1;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Index of the `)` closing the `(` at `open`, honouring nesting and quotes; -1 when there is none. */
function closingParen(line: string, open: number): number {
  let depth = 0;
  let quote: string | undefined;
  for (let i = open; i < line.length; i += 1) {
    const c = line[i]!;
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') i += 1;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    else if (c === "\\") i += 1;
    else if (c === "(") depth += 1;
    else if (c === ")") {
      depth -= 1;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** Whether a command string uses shell syntax that an argv passes literally (the caller warns about it). */
export function hasShellSyntax(line: string): boolean {
  return SHELL_SYNTAX.test(line);
}

/**
 * Escapes an argv element for a container's `command`/`args`, where the kubelet expands `$(VAR)` from the
 * container's env and turns `$$` into `$`. Doubling every `$` makes the element reach the process unchanged.
 */
export function escapeKubernetesExpansion(arg: string): string {
  return arg.replaceAll("$", () => "$$");
}

/** The kubelet's expansion of `$(VAR)` references (third_party/forked/golang/expansion): used to check escapes. */
export function expandKubernetes(input: string, env: Readonly<Record<string, string>>): string {
  let out = "";
  for (let i = 0; i < input.length; i += 1) {
    const c = input[i]!;
    if (c !== "$" || i + 1 >= input.length) {
      out += c;
      continue;
    }
    const next = input[i + 1]!;
    if (next === "$") {
      out += "$";
      i += 1;
    } else if (next === "(") {
      const end = input.indexOf(")", i + 2);
      if (end < 0) {
        out += "$(";
        i += 1;
      } else {
        const name = input.slice(i + 2, end);
        out += env[name] ?? `$(${name})`;
        i = end;
      }
    } else {
      out += "$" + next;
      i += 1;
    }
  }
  return out;
}
