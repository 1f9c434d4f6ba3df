/**
 * `npm run build:agent [-- --out FILE] [--no-strip] [--no-code-cache] [--allow-missing-helper] [--keep-work]`:
 * builds the single-file agent (dist/trainer-agent by default). The top-level Dockerfile runs this same script.
 */
import { parseArgs } from "node:util";
import { buildAgent } from "../src/packaging/build/build-agent.ts";

const USAGE = `usage: npm run build:agent [-- options]
  --out FILE               output file (default dist/trainer-agent)
  --no-strip               keep node's debug symbols (bigger file)
  --no-code-cache          leave the V8 code cache out of the blob (smaller, slower start)
  --allow-missing-helper   build even when python/trainer_agent.py is missing
  --keep-work              keep the bundle and blob, print their folder
  -h, --help               this text`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      out: { type: "string" },
      "no-strip": { type: "boolean" },
      "no-code-cache": { type: "boolean" },
      "allow-missing-helper": { type: "boolean" },
      "keep-work": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (error) {
  console.error(`build-agent: ${(error as Error).message}\n${USAGE}`);
  process.exit(64);
}
if (values.help === true) {
  console.log(USAGE);
  process.exit(0);
}

try {
  const result = await buildAgent({
    output: values.out,
    strip: values["no-strip"] !== true,
    useCodeCache: values["no-code-cache"] !== true,
    allowMissingHelper: values["allow-missing-helper"] === true,
    keepWork: values["keep-work"] === true,
    log: (line) => console.error(`build-agent: ${line}`),
  });
  if (result.workDir !== undefined) console.error(`build-agent: work files kept in ${result.workDir}`);
  const top = result.bundle.packages.slice(0, 8).map((p) => `${p.name} ${(p.bytes / 1024).toFixed(0)} KiB`);
  console.error(`build-agent: largest parts of the bundle: ${top.join(", ")}`);
} catch (error) {
  console.error(`build-agent: ${(error as Error).message}`);
  process.exit(1);
}
