/**
 * Kubernetes resource quantities (`500m`, `2`, `16Gi`, `1e3`): the syntax of the CRDs' pattern, and a numeric value
 * for comparing a request with its limit.
 */
export const QUANTITY_PATTERN =
  /^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/** Numeric value of a quantity in base units (cores, bytes), or undefined when the text is not a quantity. */
export function parseQuantity(text: string): number | undefined {
  if (!QUANTITY_PATTERN.test(text)) return undefined;
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(.*)$/.exec(text);
  if (m === null) return undefined;
  const base = Number(m[1]);
  const suffix = m[2] ?? "";
  if (suffix in BINARY) return base * BINARY[suffix]!;
  if (suffix in DECIMAL) return base * DECIMAL[suffix]!;
  if (/^[eE]/.test(suffix)) return base * 10 ** Number(suffix.slice(1));
  return undefined;
}
