/** Reading a request field by field: each problem is collected with the field's name, none is thrown early. */
import { isSecretLookingName } from "../../config/index.ts";
import { AgentError } from "../../errors/index.ts";
import { describe } from "../../internal/values.ts";

export interface Problem {
  readonly field: string;
  readonly message: string;
}

/** The SPEC_INVALID error for a list of problems: one line per problem in the message, all in `details`. */
export function specInvalid(problems: readonly Problem[]): AgentError {
  const lines = problems.map((p) => `${p.field}: ${p.message}`);
  const message = problems.length === 1 ? lines[0]! : `invalid job spec:\n  ${lines.join("\n  ")}`;
  return new AgentError("SPEC_INVALID", message, { details: { problems, field: problems[0]?.field } });
}

export type Obj = Record<string, unknown>;

export class Reader {
  readonly problems: Problem[] = [];
  readonly warnings: string[] = [];

  problem(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  /** The first of several spellings present in `obj`, with the spelling used (for error messages). */
  pick(obj: Obj, names: readonly string[], prefix = ""): { field: string; value: unknown } | undefined {
    for (const name of names) {
      if (obj[name] !== undefined && obj[name] !== null) return { field: prefix + name, value: obj[name] };
    }
    return undefined;
  }

  string(obj: Obj, names: readonly string[], prefix = ""): { field: string; value: string } | undefined {
    const got = this.pick(obj, names, prefix);
    if (got === undefined) return undefined;
    if (typeof got.value === "number" && Number.isFinite(got.value))
      return { field: got.field, value: String(got.value) };
    if (typeof got.value !== "string") {
      // Never echo what was given for a credential field, whatever its type.
      const shown = isSecretLookingName(got.field) ? "a value of another type" : describe(got.value);
      this.problem(got.field, `must be a string, got ${shown}`);
      return undefined;
    }
    if (got.value.trim() === "") return undefined;
    return { field: got.field, value: got.value.trim() };
  }

  /** An integer from `min` to `max` (pass INT32_MAX for the API's int32 fields). */
  int(
    obj: Obj,
    names: readonly string[],
    min: number,
    prefix = "",
    max = Number.MAX_SAFE_INTEGER,
  ): { field: string; value: number } | undefined {
    const got = this.pick(obj, names, prefix);
    if (got === undefined) return undefined;
    const n = typeof got.value === "string" && /^\s*[+-]?\d+\s*$/.test(got.value) ? Number(got.value) : got.value;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
      this.problem(got.field, `must be an integer ${range}, got ${describe(got.value)}`);
      return undefined;
    }
    return { field: got.field, value: n };
  }

  bool(obj: Obj, names: readonly string[], prefix = ""): boolean | undefined {
    const got = this.pick(obj, names, prefix);
    if (got === undefined) return undefined;
    if (typeof got.value === "boolean") return got.value;
    if (got.value === "true" || got.value === "false") return got.value === "true";
    this.problem(got.field, `must be true or false, got ${describe(got.value)}`);
    return undefined;
  }
}
