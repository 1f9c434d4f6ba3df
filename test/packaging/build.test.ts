/** Failures of the single-file build are clear and leave nothing half-made (the happy path: single-file.test.ts). */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { buildAgent } from "../../src/packaging/build/build-agent.ts";
import { seaConfig } from "../../src/packaging/build/sea-blob.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "build-agent-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

it("names the failing step when the node binary cannot write a SEA blob, and writes no output", async () => {
  const lines: string[] = [];
  const error = await buildAgent({
    output: join(dir, "out", "trainer-agent"),
    node: "/bin/false",
    log: (l) => lines.push(l),
  })
    .then(() => undefined)
    .catch((e: unknown) => e as Error);
  expect(error?.message).toMatch(/^node --experimental-sea-config failed/);
  expect(lines.some((l) => l.startsWith("bundle: "))).toBe(true); // the bundle step ran and passed
  expect(await readdir(dir)).toEqual([]); // no output folder content, no partial file
});

it("writes a SEA config with the code cache, no snapshot, no NODE_OPTIONS and the assets", () => {
  const config = seaConfig({
    node: "node",
    main: "/w/trainer-agent.cjs",
    output: "/w/blob",
    assets: { "trainer_agent.py": "/repo/python/trainer_agent.py" },
    useCodeCache: true,
    workDir: "/w",
  });
  expect(config).toMatchObject({
    main: "trainer-agent.cjs",
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    useSnapshot: false,
    execArgvExtension: "none",
    assets: { "trainer_agent.py": "/repo/python/trainer_agent.py" },
  });
});
