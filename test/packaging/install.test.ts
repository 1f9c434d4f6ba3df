/**
 * `install` and `helper` from sources: real files in a temp folder (the single-file build runs the same code in
 * single-file.test.ts).
 */
import { chmod, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import { helperSourcePath, loadHelperSource } from "../../src/packaging/helper-source.ts";
import { runInstall } from "../../src/packaging/install-command.ts";
import { installAgent, writeHelper } from "../../src/packaging/install.ts";
import { isSingleExecutable, readEmbeddedText } from "../../src/packaging/sea.ts";
import { selfCommand } from "../../src/packaging/self-command.ts";

let dir: string;
let fakeAgent: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "install-"));
  fakeAgent = join(dir, "built-agent");
  await writeFile(fakeAgent, "#!/bin/sh\necho agent\n");
  await chmod(fakeAgent, 0o700);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("installAgent", () => {
  it("writes the agent (755) and the helper (644), creating the directory, and is idempotent", async () => {
    const target = join(dir, "opt", "agent");
    for (let round = 0; round < 2; round++) {
      const result = await installAgent({ dir: target, executable: fakeAgent, helperSource: "print('hi')\n" });
      expect(result.agent).toEqual({ path: join(target, "trainer-agent"), bytes: 21, copied: true });
      expect(result.helper?.path).toBe(join(target, "trainer_agent.py"));
    }
    expect((await readdir(target)).sort()).toEqual(["trainer-agent", "trainer_agent.py"]);
    expect((await stat(join(target, "trainer-agent"))).mode & 0o777).toBe(0o755);
    expect((await stat(join(target, "trainer_agent.py"))).mode & 0o777).toBe(0o644);
    expect(await readFile(join(target, "trainer_agent.py"), "utf8")).toBe("print('hi')\n");
  });

  it("replaces an older agent by rename: a process holding the old file keeps its inode", async () => {
    const target = join(dir, "agent");
    await installAgent({ dir: target, executable: fakeAgent, helperSource: undefined });
    const before = (await stat(join(target, "trainer-agent"))).ino;
    await writeFile(fakeAgent, "#!/bin/sh\necho newer agent\n");
    await installAgent({ dir: target, executable: fakeAgent, helperSource: undefined });
    const after = await stat(join(target, "trainer-agent"));
    expect(after.ino).not.toBe(before);
    expect(await readFile(join(target, "trainer-agent"), "utf8")).toContain("newer agent");
    expect(await readdir(target)).toEqual(["trainer-agent"]); // --no-helper: agent only
  });

  it("leaves a file that already is the agent in place (install into its own folder)", async () => {
    const target = join(dir, "bin");
    await installAgent({ dir: target, executable: fakeAgent, helperSource: undefined });
    const link = join(dir, "link-to-agent");
    await symlink(join(target, "trainer-agent"), link);
    const again = await installAgent({ dir: target, executable: link, helperSource: undefined });
    expect(again.agent.copied).toBe(false);
  });

  it.each([
    ["the target is a file", async () => ({ dir: fakeAgent, executable: fakeAgent }), /cannot create/],
    ["the executable is missing", async () => ({ dir: join(dir, "t"), executable: join(dir, "nope") }), /ENOENT/],
    ["the executable is a directory", async () => ({ dir: join(dir, "t"), executable: dir }), /not a regular file/],
  ])("fails with INSTALL_FAILED when %s", async (_what, input, message) => {
    const error = await installAgent({ ...(await input()), helperSource: undefined }).catch((e: unknown) => e);
    expect(isAgentError(error, "INSTALL_FAILED")).toBe(true);
    expect((error as Error).message).toMatch(message);
  });
});

describe("runInstall (the install command)", () => {
  it("refuses to copy node itself when running from sources without --from", async () => {
    const error = await runInstall({ dir, from: undefined, helper: true, singleExecutable: false }).catch(
      (e: unknown) => e,
    );
    expect(isAgentError(error, "USAGE")).toBe(true);
    expect((error as Error).message).toContain("--from dist/trainer-agent");
  });

  it("copies --from and the repo's helper, one line per file", async () => {
    const lines = await runInstall({ dir: join(dir, "out"), from: fakeAgent, helper: true, singleExecutable: false });
    expect(lines).toEqual([
      `installed ${join(dir, "out", "trainer-agent")} (21 bytes)`,
      expect.stringMatching(/^installed .*trainer_agent\.py \(\d+ bytes\)$/),
    ]);
    expect(await readFile(join(dir, "out", "trainer_agent.py"), "utf8")).toBe(
      await readFile(helperSourcePath(), "utf8"),
    );
  });
});

describe("the helper source", () => {
  it("comes from the embedded asset in the single-file build", async () => {
    const text = await loadHelperSource({ singleExecutable: true, readEmbedded: (n) => `# asset ${n}\n` });
    expect(text).toBe("# asset trainer_agent.py\n");
  });

  it("is an INTERNAL error when the build carries none", async () => {
    const error = await loadHelperSource({ singleExecutable: true, readEmbedded: () => undefined }).catch(
      (e: unknown) => e,
    );
    expect(isAgentError(error, "INTERNAL")).toBe(true);
    expect((error as Error).message).toContain("carries no Python helper");
  });

  it("names the path when a source checkout lacks it", async () => {
    const missing = join(dir, "nope.py");
    const error = await loadHelperSource({ singleExecutable: false, sourcePath: missing }).catch((e: unknown) => e);
    expect((error as Error).message).toContain(missing);
  });

  it("is written atomically by writeHelper, directory created", async () => {
    const path = await writeHelper(join(dir, "site-packages", "trainer_agent.py"), "x = 1\n");
    expect(await readFile(path, "utf8")).toBe("x = 1\n");
    expect(await readdir(join(dir, "site-packages"))).toEqual(["trainer_agent.py"]);
  });
});

describe("selfCommand", () => {
  it.each([
    [true, { command: "/opt/agent/trainer-agent", args: [] }],
    [false, { command: "/opt/agent/trainer-agent", args: ["--max-old-space-size=512", "/repo/bin/trainer-agent.js"] }],
  ])("single executable %s", (single, expected) => {
    const proc = {
      execPath: "/opt/agent/trainer-agent",
      execArgv: ["--max-old-space-size=512"],
      argv: ["/opt/agent/trainer-agent", "/repo/bin/trainer-agent.js", "run"],
    };
    expect(selfCommand(proc, single)).toEqual(expected);
  });
});

describe("embedded assets outside the single-file build", () => {
  it("are absent, not errors, when running from sources", () => {
    expect(isSingleExecutable()).toBe(false);
    expect(readEmbeddedText("trainer_agent.py")).toBeUndefined();
  });
});
