/**
 * Reading values of unknown shape (parsed JSON, a plugin hook's return, a child's report line), shared by the
 * modules that validate them so each names a bad value the same way. Not part of the public API.
 */
import { maskUrlCredentials } from "../config/secret.ts";

/** A plain object (not null, not an array): the shape every JSON body and report must have at its top. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value's kind without its content, for values that may be secret (an environment variable's). */
export function kindOf(value: unknown): string {
  if (Array.isArray(value)) return "a list";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  if (typeof value === "function") return "a function";
  return typeof value;
}

/**
 * How an error message names a value it did not expect: strings quoted and cut at 80 characters (a pasted
 * secret or a whole file must not fill the message) with any URL's userinfo and query masked (a git URL's token, a
 * presigned URL pasted into the wrong field), containers and functions by kind, other scalars as written.
 */
export function describe(value: unknown): string {
  if (typeof value === "string") {
    const shown = maskUrlCredentials(value);
    return JSON.stringify(shown.length > 80 ? shown.slice(0, 77) + "..." : shown);
  }
  if (typeof value === "object" || typeof value === "function") return kindOf(value);
  return String(value);
}
