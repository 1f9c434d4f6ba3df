/**
 * The shape bound every JSON (or YAML) document from outside is held to before it is used: serialising and
 * hashing recurse, so a document nested 100,000 levels parses fine and then overflows the stack; and a
 * `__proto__` key is dropped by zod or reaches a prototype on copy, never kept as data.
 */

export interface JsonShapeProblem {
  /** Where, as `a.b[0].c` (`(body)` for the top level). */
  readonly field: string;
  readonly code: "too_deep" | "proto_key";
  readonly message: string;
}

/** Walks `value` without recursion; the first place nested deeper than `maxDepth` or holding `__proto__`. */
export function jsonShapeProblem(value: unknown, maxDepth: number): JsonShapeProblem | undefined {
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value, depth: 0, path: "" }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (item.value === null || typeof item.value !== "object") continue;
    const depth = item.depth + 1;
    if (depth > maxDepth) {
      const field = item.path === "" ? "(body)" : item.path;
      return {
        field,
        code: "too_deep",
        message: `nests deeper than ${maxDepth} levels of objects and arrays (at ${field})`,
      };
    }
    if (Array.isArray(item.value)) {
      item.value.forEach((v, i) => stack.push({ value: v, depth, path: `${item.path}[${i}]` }));
      continue;
    }
    for (const [key, v] of Object.entries(item.value)) {
      const path = item.path === "" ? key : `${item.path}.${key}`;
      if (key === "__proto__") {
        return {
          field: path,
          code: "proto_key",
          message: `key "__proto__" is not accepted (it would be dropped or reach a prototype)`,
        };
      }
      stack.push({ value: v, depth, path });
    }
  }
  return undefined;
}
