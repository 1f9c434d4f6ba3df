/**
 * The single-file agent as CI builds it: the npm script the top-level Dockerfile runs builds it once, then the file
 * is copied ALONE into an empty folder and run with `env -i` (no PATH, so no node to fall back on) to show it
 * carries everything: the CLI, the lazily imported implementations, the Python helper.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleAgent } from "../../src/packaging/build/bundle.ts";
import { AGENT_ENTRY, HELPER_PATH, REPO_ROOT } from "../../src/packaging/build/build-agent.ts";
import { parseDockerfile } from "../../src/packaging/dockerfile/parse.ts";
import { DASHBOARD_ASSETS } from "../../backend-stub/src/http/static.ts";

const exec = promisify(execFile);

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

let work: string;
let agent: string; // the built file, alone in its folder

/** Runs `env -i [NAME=value...] FILE args` in `cwd`: an empty environment plus exactly the given variables. */
function runBare(file: string, args: string[], vars: Record<string, string> = {}, cwd = work): Promise<Result> {
  return new Promise((resolve, reject) => {
    const assignments = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
    const child = spawn("/usr/bin/env", ["-i", ...assignments, file, ...args], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
  });
}

/** The npm script the Dockerfile's build stage runs, so CI builds exactly what the image holds. */
async function dockerBuildScript(): Promise<string> {
  const dockerfile = parseDockerfile(await readFile(join(REPO_ROOT, "Dockerfile"), "utf8"));
  for (const instruction of dockerfile.instructions) {
    const match = instruction.keyword === "RUN" ? /\bnpm run (build:\S+)/.exec(instruction.rest) : null;
    if (match?.[1] !== undefined) return match[1];
  }
  throw new Error("the Dockerfile runs no npm run build:* script");
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "single-file-"));
  const script = await dockerBuildScript();
  const built = join(work, "build", "trainer-agent");
  const npm = join(REPO_ROOT, "node_modules", ".bin");
  // About 3 s on 2 cores (esbuild ~0.1 s, blob ~0.1 s, copy + strip + postject ~3 s).
  await exec("npm", ["run", "--silent", script, "--", "--out", built], {
    cwd: REPO_ROOT,
    env: { ...process.env, PATH: `${npm}:${process.env.PATH ?? ""}` },
    maxBuffer: 16 << 20,
  });
  const alone = join(work, "alone");
  await mkdir(alone);
  agent = join(alone, "trainer-agent");
  await copyFile(built, agent);
  await copyFile(`${built}.sha256`, join(work, "trainer-agent.sha256"));
  await rm(join(work, "build"), { recursive: true });
}, 180_000);

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("dist/trainer-agent, alone in an empty folder with an empty environment", () => {
  it("is one executable ELF file, the only file in its folder", async () => {
    expect(await readdir(join(work, "alone"))).toEqual(["trainer-agent"]);
    const info = await stat(agent);
    expect(info.mode & 0o111).toBe(0o111);
    const head = await readFile(agent).then((b) => b.subarray(0, 4));
    expect(head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))).toBe(true);
  });

  it("comes with its SHA-256 in sha256sum format", async () => {
    const line = await readFile(join(work, "trainer-agent.sha256"), "utf8");
    const digest = createHash("sha256")
      .update(await readFile(agent))
      .digest("hex");
    expect(line).toBe(`${digest}  trainer-agent\n`);
  });

  it("prints --help and --version without node on PATH", async () => {
    const help = await runBare(agent, ["--help"]);
    expect(help.code).toBe(0);
    for (const command of ["run", "env", "local", "helper", "install"]) expect(help.stdout).toContain(command);
    const version = await runBare(agent, ["--version"]);
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
    expect(version.stdout.trim()).toBe(pkg.version);
    expect(version.stderr).toBe(""); // no SEA experimental warning
  });

  it.each(["run", "env", "local", "helper", "install"])("has --help for %s", async (command) => {
    const result = await runBare(agent, [command, "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Usage: trainer-agent ${command}`);
  });

  it("translates PET_* into ranks with env --format json", async () => {
    const result = await runBare(agent, ["env", "--format", "json"], {
      PET_NNODES: "4",
      PET_NODE_RANK: "2",
      PET_NPROC_PER_NODE: "1",
      PET_MASTER_ADDR: "trainjob-node-0-0.trainjob",
      PET_MASTER_PORT: "29500",
    });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const env = JSON.parse(result.stdout) as Record<string, string>;
    expect(env).toMatchObject({
      RANK: "2",
      WORLD_SIZE: "4",
      NODE_RANK: "2",
      LOCAL_RANK: "0",
      MASTER_ADDR: "trainjob-node-0-0.trainjob",
      MASTER_PORT: "29500",
    });
  });

  it("rejects a bad PET_* variable with its name and exit status 78", async () => {
    const result = await runBare(agent, ["env", "--format", "json"], { PET_NNODES: "two" });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain("PET_NNODES");
  });

  it("runs a command: relays its output and exits with its exit code", async () => {
    const result = await runBare(agent, ["run", "--", "/bin/sh", "-c", "echo from-child; exit 3"]);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain("from-child\n");
  });

  it("ignores NODE_OPTIONS itself and passes it on to the command unchanged", async () => {
    const result = await runBare(agent, ["run", "--", "/bin/sh", "-c", 'echo "child sees $NODE_OPTIONS"'], {
      NODE_OPTIONS: "--require=/nonexistent/preload.js",
    });
    expect(result.stderr).not.toContain("Cannot find module");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("child sees --require=/nonexistent/preload.js\n");
  });

  it("exits 128+signal when the command dies of a signal", async () => {
    const result = await runBare(agent, ["run", "--", "/bin/sh", "-c", "kill -TERM $$"]);
    expect(result.code).toBe(143);
  });

  it("forwards SIGTERM to the command, which saves and exits on its own (pod termination)", async () => {
    const script = 'trap "echo got-TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done';
    const child = spawn("/usr/bin/env", ["-i", agent, "run", "--", "/bin/sh", "-c", script], {
      cwd: work,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString("utf8");
        if (out.includes("ready\n")) resolve();
      });
    });
    child.kill("SIGTERM"); // env exec()s the agent, so this is the agent's pid
    expect(await closed).toBe(0);
    expect(out).toContain("got-TERM\n");
  }, 120_000);

  it("runs local end to end from the one file: dataset pull, helper reports, checkpoint upload (bundled S3 SDK)", async () => {
    const dataset = join(work, "dataset");
    await mkdir(dataset);
    await writeFile(join(dataset, "a.txt"), "data\n");
    const train = join(work, "train.py");
    await writeFile(
      train,
      [
        "import os, trainer_agent",
        'd = os.environ["CHECKPOINT_DIR"]',
        'print("rank", os.environ["RANK"], "dataset", open(os.path.join(os.environ["DATASET_DIR"], "a.txt")).read().strip())',
        'p = os.path.join(d, "epoch-1.pt")',
        "os.makedirs(d, exist_ok=True)",
        'open(p, "wb").write(b"weights" * 1000)',
        "trainer_agent.report(epoch=1, total_epochs=1, loss=0.5)",
        "trainer_agent.checkpoint(p)",
      ].join("\n"),
    );
    const result = await runBare(agent, [
      "local",
      "--nodes",
      "2",
      "--dataset",
      dataset,
      "--",
      "/usr/bin/python3",
      train,
    ]);
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("rank 0 dataset data");
    expect(result.stdout).toContain("rank 1 dataset data");
    expect(result.stdout).toMatch(/s3:\/\/trainer-local\/checkpoints\/.*\/epoch-1\.pt\s+\(6\.8 KiB\)/);
  }, 120_000); // real subprocesses on a shared 2-core machine

  it("serves the backend stub's dashboard from its embedded assets (local --keep)", async () => {
    const child = spawn("/usr/bin/env", ["-i", agent, "local", "--keep", "--nodes", "1", "--", "/bin/true"], {
      cwd: work,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    try {
      let out = "";
      const origin = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString("utf8");
          const match = /--keep: .*?(http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
          if (match?.[1] !== undefined) resolve(match[1]);
        });
        child.on("close", () => reject(new Error(`local ended before --keep:\n${out}`)));
      });
      for (const asset of DASHBOARD_ASSETS) {
        const response = await fetch(`${origin}${asset.url}`);
        expect(response.status, asset.url).toBe(200);
        const body = Buffer.from(await response.arrayBuffer());
        expect(body.equals(await readFile(join(REPO_ROOT, asset.source))), asset.url).toBe(true);
      }
    } finally {
      child.kill("SIGINT");
      await closed;
    }
  }, 120_000); // real subprocesses on a shared 2-core machine

  it("prints the Python helper it carries, byte for byte", async () => {
    const result = await runBare(agent, ["helper", "--print"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(await readFile(join(REPO_ROOT, HELPER_PATH), "utf8"));
  });

  it.each([["helper", "--print"], ["--help"], ["env", "--format", "sh"]])(
    "writes into a pipe the reader closes early without an error: %s ... | true",
    async (...args) => {
      const result = await runBare("/bin/bash", ["-c", 'set -o pipefail; "$0" "$@" | true', agent, ...args]);
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
    },
  );

  it("installs itself and the helper into a directory, twice, and the copy runs", async () => {
    const target = join(work, "volume", "agent");
    for (let round = 0; round < 2; round++) {
      const result = await runBare(agent, ["install", target]);
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(join(target, "trainer-agent"));
    }
    expect((await readdir(target)).sort()).toEqual(["trainer-agent", "trainer_agent.py"]); // no temp files left
    expect((await stat(join(target, "trainer-agent"))).mode & 0o777).toBe(0o755);
    expect((await stat(join(target, "trainer_agent.py"))).mode & 0o777).toBe(0o644);
    expect((await readFile(join(target, "trainer-agent"))).equals(await readFile(agent))).toBe(true);
    const copy = await runBare(join(target, "trainer-agent"), ["--version"]);
    expect(copy.code).toBe(0);
    // the stock-image path: python imports the helper from the volume
    const py = await runBare("/usr/bin/python3", ["-c", "import trainer_agent; print(trainer_agent.__file__)"], {
      PYTHONPATH: target,
    });
    expect(py.stdout.trim()).toBe(join(target, "trainer_agent.py"));
  }, 120_000); // real subprocesses on a shared 2-core machine

  it.each(["images/pytorch/Dockerfile", "images/tensorflow/Dockerfile"])(
    "%s: its RUN step, run as written, puts an importable helper in python's site-packages",
    async (dockerfile) => {
      // A venv stands in for the framework image's python (its site-packages is the first one on sys.path),
      // and the single file is `trainer-agent` on PATH, as COPY --from=agent puts it in /usr/local/bin.
      const venv = join(work, `venv-${dockerfile.split("/")[1]}`);
      await exec("/usr/bin/python3", ["-m", "venv", "--without-pip", venv]);
      const { instructions } = parseDockerfile(await readFile(join(REPO_ROOT, dockerfile), "utf8"));
      const runs = instructions.filter((i) => i.keyword === "RUN");
      expect(runs).toHaveLength(1);
      const result = await runBare("/bin/sh", ["-c", runs[0]!.rest], {
        PATH: `${join(work, "alone")}:${join(venv, "bin")}:/usr/bin:/bin`,
      });
      expect(result.stderr).toContain("trainer-agent: wrote");
      expect(result.code).toBe(0);
      const site = (await readdir(join(venv, "lib"))).map((d) => join(venv, "lib", d, "site-packages"));
      expect(await readFile(join(site[0]!, "trainer_agent.py"), "utf8")).toBe(
        await readFile(join(REPO_ROOT, HELPER_PATH), "utf8"),
      );
    },
  );

  it("fails install with INSTALL_FAILED (73) when the target is a file", async () => {
    const file = join(work, "not-a-dir");
    await writeFile(file, "x");
    const result = await runBare(agent, ["install", file]);
    expect(result.code).toBe(73);
    expect(result.stderr).toMatch(/^trainer-agent: INSTALL_FAILED: cannot create .*not-a-dir/);
  });

  it("loads a TypeScript plugin file given with --plugin", async () => {
    // TypeScript, as the plugin docs suggest: the single file strips types like node does
    const plugin = join(work, "my-plugin.ts");
    await writeFile(
      plugin,
      'const name: string = "myfw";\nexport default { name, env: (): Record<string, string> => ({ MYFW_WORLD: "set" }) };\n',
    );
    const result = await runBare(agent, ["env", "--format", "json", "--plugin", plugin], { PET_NNODES: "1" });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toHaveProperty("MYFW_WORLD");
  });
});

describe("the bundle inside it", () => {
  it("inlines every package, so the only runtime require()s are node built-ins", async () => {
    const out = join(work, "bundle.cjs");
    const result = await bundleAgent(join(REPO_ROOT, AGENT_ENTRY), out);
    const code = await readFile(out, "utf8");
    expect(result.external).toEqual([]);
    // and the dynamic import() of the lazy parts became bundled initialisers, not imports of files
    expect(code).not.toMatch(/\bimport\("\.{1,2}\//);
    expect(code).not.toMatch(/\bimport\.meta\b/);
    expect(result.packages.map((p) => p.name)).toContain("commander");
    expect(result.packages.map((p) => p.name)).toContain("@aws-sdk/client-s3"); // bundled, yet lazy (below)
  }, 120_000); // real subprocesses on a shared 2-core machine

  it.each([
    ["--version", ["--version"]],
    ["run with no storage or backend configured", ["run", "--", "/bin/true"]],
  ])(
    "keeps the HTTP and S3 stacks unloaded at %s: lazy import() survives bundling",
    async (_what, args) => {
      // Which node built-ins the process loaded, printed at exit by a preload; the AWS SDK and undici load http,
      // https, tls, zlib and http2 at their top level, so none of these may appear.
      const preload = join(work, "print-builtins.cjs");
      await writeFile(
        preload,
        'process.on("exit", () => require("node:fs").writeSync(2, "BUILTINS " + JSON.stringify(' +
          'process.moduleLoadList.filter((m) => m.startsWith("NativeModule ")).map((m) => m.slice(13))) + "\\n"));\n',
      );
      const bundle = join(work, "bundle.cjs");
      if (!(await stat(bundle).catch(() => undefined))) await bundleAgent(join(REPO_ROOT, AGENT_ENTRY), bundle);
      const result = await runBare(process.execPath, ["-r", preload, bundle, ...args]);
      expect(result.code).toBe(0);
      const line = /^BUILTINS (.*)$/m.exec(result.stderr)?.[1];
      expect(line).toBeDefined();
      const loaded = JSON.parse(line!) as string[];
      expect(loaded).toContain("child_process"); // the preload saw the agent's own modules
      expect(loaded.filter((m) => ["http", "https", "tls", "zlib", "http2"].includes(m))).toEqual([]);
    },
    120_000,
  ); // real subprocesses on a shared 2-core machine
});
