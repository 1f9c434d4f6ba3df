/**
 * Small typed readers over an env record. Each collects a problem instead of throwing, so loadConfig can report
 * every bad variable at once: `PET_NNODES must be a positive integer, got "two"`.
 */
import { maskUrlCredentials, Secret } from "./secret.ts";

export type Env = Readonly<Record<string, string | undefined>>;

export class EnvReader {
  readonly problems: string[] = [];
  readonly #env: Env;
  readonly #secretNames: Set<string>;

  constructor(env: Env, secretNames: Iterable<string> = []) {
    this.#env = env;
    this.#secretNames = new Set(secretNames);
  }

  /** Raw value, with empty strings read as unset. */
  raw(name: string): string | undefined {
    const v = this.#env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  /** First set variable of a list of aliases, with the name that supplied it. */
  firstOf(names: readonly string[]): { name: string; value: string } | undefined {
    for (const name of names) {
      const value = this.raw(name);
      if (value !== undefined) return { name, value };
    }
    return undefined;
  }

  problem(name: string, expected: string, got: string): void {
    // Credentials inside a URL (`https://user:pass@host`, a presigned URL's query) are masked like a secret variable.
    const shown = this.#secretNames.has(name) ? "***" : JSON.stringify(maskUrlCredentials(got));
    this.problems.push(`${name} must be ${expected}, got ${shown}`);
  }

  string(name: string, fallback: string): string;
  string(name: string): string | undefined;
  string(name: string, fallback?: string): string | undefined {
    return this.raw(name) ?? fallback;
  }

  secret(name: string): Secret | undefined {
    const v = this.#env[name];
    // A blank token (a stray newline from a secret file, a template that rendered nothing) counts as unset.
    return v === undefined || v.trim() === "" ? undefined : new Secret(v.trim());
  }

  int(name: string, opts: { min?: number; max?: number; fallback: number; expected?: string }): number {
    const v = this.raw(name);
    if (v === undefined) return opts.fallback;
    const expected = opts.expected ?? describeRange(opts.min, opts.max);
    if (!/^[+-]?\d+$/.test(v)) {
      this.problem(name, expected, v);
      return opts.fallback;
    }
    const n = Number(v);
    if (
      !Number.isSafeInteger(n) ||
      (opts.min !== undefined && n < opts.min) ||
      (opts.max !== undefined && n > opts.max)
    ) {
      this.problem(name, expected, v);
      return opts.fallback;
    }
    return n;
  }

  number(name: string, opts: { min?: number; max?: number; fallback: number; expected?: string }): number {
    const v = this.raw(name);
    if (v === undefined) return opts.fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
      this.problem(name, opts.expected ?? `a number${describeBounds(opts.min, opts.max)}`, v);
      return opts.fallback;
    }
    return n;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T;
  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined;
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback?: T): T | undefined {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const lower = v.toLowerCase();
    const hit = allowed.find((a) => a === lower);
    if (hit === undefined) {
      this.problem(name, `one of ${allowed.join(", ")}`, v);
      return fallback;
    }
    return hit;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (/^(1|true|yes|on)$/i.test(v)) return true;
    if (/^(0|false|no|off)$/i.test(v)) return false;
    this.problem(name, "a boolean (true/false/1/0)", v);
    return fallback;
  }

  url(name: string, protocols: readonly string[] = ["http:", "https:"]): URL | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    try {
      const u = new URL(v);
      if (!protocols.includes(u.protocol)) throw new Error("protocol");
      if (u.username !== "" || u.password !== "") {
        // A URL is logged and shown in events; credentials belong in their own (secret) variables.
        this.problem(name, "a URL without user:password@ (credentials go in their own variables)", v);
        return undefined;
      }
      return u;
    } catch {
      this.problem(name, `a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}`, v);
      return undefined;
    }
  }
}

function describeRange(min?: number, max?: number): string {
  if (min === 1 && max === undefined) return "a positive integer";
  if (min === 0 && max === undefined) return "a non-negative integer";
  return `an integer${describeBounds(min, max)}`;
}

function describeBounds(min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return ` from ${min} to ${max}`;
  if (min !== undefined) return ` >= ${min}`;
  if (max !== undefined) return ` <= ${max}`;
  return "";
}
