/**
 * `npm run bench [-- area ...]`: runs each area's benchmark in turn and prints its table. Every area compares the
 * project against the tools a user would otherwise use, measured side by side in this one run.
 * Areas: agent (log relay, start-up, RSS), storage (pull/upload vs aws-cli, boto3, rclone), backend (reports/s),
 * startup (the single-file agent).
 */
const AREAS = ["agent", "storage", "backend", "startup"] as const;

const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const unknown = wanted.filter((a) => !(AREAS as readonly string[]).includes(a));
if (unknown.length > 0) {
  console.error(`unknown bench area(s): ${unknown.join(", ")}; known: ${AREAS.join(", ")}`);
  process.exit(64);
}
const areas = wanted.length > 0 ? wanted : AREAS;
let failed = 0;
for (const area of areas) {
  console.log(`\n=== bench: ${area} ===`);
  try {
    const mod = (await import(`./${area}.ts`)) as { default: () => Promise<void> };
    await mod.default();
  } catch (error) {
    failed += 1;
    console.error(`bench ${area} failed:`, error);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
