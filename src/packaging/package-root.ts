/**
 * Where this package's own files (python/, examples/, backend-stub/public/) are. Found by walking up from a module
 * URL to the package.json named like ours, so the same call answers from the TypeScript sources (src/...), the
 * built library of an installed package (dist/lib/...) and any nesting. Undefined in the single-file build, which
 * carries what it needs as embedded assets.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pkg from "../../package.json" with { type: "json" };

export function packageRoot(fromUrl: string = import.meta.url): string | undefined {
  let dir: string;
  try {
    dir = dirname(fileURLToPath(fromUrl));
  } catch {
    return undefined;
  }
  for (;;) {
    try {
      const found = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown };
      if (found.name === pkg.name) return dir;
    } catch {
      // no package.json here, or not ours: keep climbing
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** A path inside the package (`packagePath("python", "trainer_agent.py")`), or undefined when it has no folder. */
export function packagePath(...segments: string[]): string | undefined {
  const root = packageRoot();
  return root === undefined ? undefined : join(root, ...segments);
}
