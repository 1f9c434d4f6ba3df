/** PLUGIN_GUIDE.md's worked example is real code: extract it, load it as the agent would, run it through the kit. */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolvePlugin } from "../../../src/plugins/index.ts";
import { checkPluginConformance, expectReports, runPluginOnOutput } from "../../../src/plugins/testkit.ts";

describe("PLUGIN_GUIDE.md", () => {
  it("its progress-plugin.mjs loads with --plugin semantics, parses its sample lines and passes conformance", async () => {
    const guide = await readFile(new URL("../../../PLUGIN_GUIDE.md", import.meta.url), "utf8");
    const block = /`progress-plugin\.mjs`[^\n]*\n\n```js\n([\s\S]*?)```/.exec(guide);
    expect(block, "the guide's progress-plugin.mjs code block").not.toBeNull();
    const dir = await mkdtemp(join(tmpdir(), "guide-plugin-"));
    try {
      await writeFile(join(dir, "progress-plugin.mjs"), block![1]!);
      const plugin = await resolvePlugin({ plugin: "./progress-plugin.mjs", cwd: dir });
      expect(plugin.name).toBe("progress-lines");
      const reports = runPluginOnOutput(plugin, [
        "starting",
        "[train] epoch 1 of 2 | loss 0.9312 | top1 41.5",
        "[train] epoch 2 of 2 | loss 0.5127 | top1 63.2",
      ]);
      expectReports(reports, [
        { kind: "epoch", epoch: 1, totalEpochs: 2, metrics: { loss: 0.9312, top1: 41.5 } },
        { kind: "epoch", epoch: 2, totalEpochs: 2, metrics: { loss: 0.5127, top1: 63.2 } },
      ]);
      await checkPluginConformance(plugin);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
