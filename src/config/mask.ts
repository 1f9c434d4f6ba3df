/**
 * Masking the secret values the agent holds in text it sends out (done's log_tail and reason, event messages).
 * The values come from secretValues() in agent.ts; the relay of the child's output is never masked.
 */
/** Shorter values are not masked: replacing every "abc" of a log would garble it and hide nothing of worth. */
const MIN_MASKED = 6;

/**
 * Replaces every occurrence of the secret values in text with `***`; `values` as secretList gives them, longest
 * first, so a value that holds another is masked whole. For text that leaves the agent (done's log_tail and reason, event messages), never for the relay.
 */
export function maskSecrets(text: string, values: readonly string[]): string {
  let out = text;
  for (const v of values) if (v.length >= MIN_MASKED && out.includes(v)) out = out.split(v).join("***");
  return out;
}

/** The same for every string inside a JSON-like value (an event's data). */
export function maskSecretsDeep(value: unknown, values: readonly string[]): unknown {
  if (typeof value === "string") return maskSecrets(value, values);
  if (Array.isArray(value)) return value.map((v) => maskSecretsDeep(v, values));
  if (typeof value === "object" && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecretsDeep(v, values)]));
  return value;
}

/** Distinct values, longest first, as maskSecrets wants them. */
export function secretList(values: Iterable<string | undefined>): string[] {
  const set = new Set<string>();
  for (const v of values) if (v !== undefined && v.length >= MIN_MASKED) set.add(v);
  return [...set].sort((a, b) => b.length - a.length);
}
