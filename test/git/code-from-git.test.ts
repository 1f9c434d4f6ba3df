/**
 * Code from git, end to end: a repository made here (`git init` in a temporary folder) served as a file:// URL, by
 * `git daemon` (git://) and by `git http-backend` behind a Basic-auth HTTP server; a TrainJob rendered by the
 * submitter; its node container's command and env taken from the rendered object (secretKeyRefs resolved from a
 * Secret given here, as the kubelet would) and run as the pod would, by the real agent against the real backend
 * stub: the agent fetches the revision, the training script runs in the checkout, and `done` tells what happened.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderJob } from "../../src/submitter/render.ts";
import { normalizeJobRequest } from "../../src/submitter/request/index.ts";
import { startStub, type Running } from "../backend-stub/helpers.ts";
import { freePort } from "../callbacks/backend.ts";
import { AGENT_BIN, finished, nodeContainer } from "../submitter/helpers/pod.ts";
import { startGitHttpServer, type GitHttpServer } from "./git-http-server.ts";

const TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";

let root: string;
let repoDir: string;
let v1: string;
/** An untagged commit between v1 and v2: only main's history reaches it. */
let mid: string;
let v2: string;
let stub: Running;
let daemon: ChildProcess | undefined;
let daemonUrl: string | undefined;
let http: GitHttpServer;

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" },
  }).trim();
}

async function commit(message: string, version: string): Promise<string> {
  await writeFile(
    join(repoDir, "trainer", "train.py"),
    [
      "import os, pathlib",
      `print("training ${version} in", pathlib.Path.cwd().name, "at", os.environ["CODE_GIT_COMMIT"][:12])`,
      `print('::trainer::{"epoch": 1, "total_epochs": 1, "metrics": {"loss": 0.5}}')`,
      "",
    ].join("\n"),
  );
  git(repoDir, "add", ".");
  git(repoDir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", message);
  return git(repoDir, "rev-parse", "HEAD");
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "code-from-git-"));
  repoDir = join(root, "repos", "project.git");
  await mkdir(join(repoDir, "trainer"), { recursive: true });
  git(repoDir, "init", "--quiet", "--initial-branch=main");
  v1 = await commit("first", "v1");
  git(repoDir, "tag", "v1");
  mid = await commit("middle", "mid");
  v2 = await commit("second", "v2");
  stub = await startStub();
  http = await startGitHttpServer(join(root, "repos"), "ci-bot", TOKEN);

  // git daemon when the git package has it (Debian's does); it says "Ready to rumble" once listening.
  const port = await freePort();
  const d = spawn(
    "git",
    ["daemon", "--verbose", "--export-all", "--reuseaddr", `--base-path=${join(root, "repos")}`].concat([
      "--listen=127.0.0.1",
      `--port=${port}`,
      join(root, "repos"),
    ]),
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const ready = await new Promise<boolean>((resolve) => {
    let err = "";
    d.stderr!.on("data", (c: Buffer) => {
      err += c.toString();
      if (err.includes("Ready to rumble")) resolve(true);
    });
    d.on("error", () => resolve(false));
    d.on("exit", () => resolve(false));
  });
  if (ready) {
    daemon = d;
    daemonUrl = `git://127.0.0.1:${port}/project.git`;
  }
});

afterAll(async () => {
  daemon?.kill();
  await http?.close();
  await stub?.stop();
  await rm(root, { recursive: true, force: true });
});

interface PodRun {
  code: number | null;
  output: string;
  jobId: string;
  token: string;
}

/**
 * Renders the request with the submitter and runs the node container as the pod would: its command (the agent
 * binary of the init container replaced by this checkout's), its env with secretKeyRefs resolved from `secrets`.
 */
async function runPod(
  request: Record<string, unknown>,
  secrets: Record<string, Record<string, string>> = {},
  extraEnv: Record<string, string> = {},
  onOutput?: (output: string, kill: (signal: NodeJS.Signals) => void) => void,
): Promise<PodRun> {
  const job = await stub.stub.createJob({ name: String(request.name) });
  const rendered = renderJob(
    normalizeJobRequest({
      framework: "pytorch",
      callback: { base_url: stub.url, job_id: job.id, token: job.token },
      ...request,
    }),
  );
  // The job's own Secret (the callback token) as the submitter would create it, and the user's.
  const { args, env } = nodeContainer(rendered, secrets);
  // Where the pod has /workspace: a folder of this test.
  const work = await mkdtemp(join(root, "pod-"));
  Object.assign(env, {
    CODE_GIT_DIR: join(work, "code"),
    DATASET_DIR: join(work, "dataset"),
    CHECKPOINT_DIR: join(work, "checkpoints"),
    ...extraEnv,
  });
  const { code, output } = await finished(
    spawn(process.execPath, [AGENT_BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"], cwd: work }),
    onOutput,
  );
  return { code, output, jobId: job.id, token: job.token };
}

/** Pids of the processes whose command line holds `text`. */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text)) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const view = async (id: string) => (await stub.stub.getJob(id))!;

describe("code from git in a rendered pod's command flow", () => {
  it("file:// URL, a tag and a subdirectory: the tag's commit runs in the subdirectory", async () => {
    const run = await runPod({
      name: "git-file",
      git: { url: `file://${repoDir}`, revision: "v1", subdir: "trainer" },
    });
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain(`training v1 in trainer at ${v1.slice(0, 12)}`);
    const job = await view(run.jobId);
    expect(job.state).toBe("SUCCEEDED");
    const ready = job.events.find((e) => e.type === "code_ready");
    expect(ready?.data).toMatchObject({ commit: v1, ref: "refs/tags/v1", subdir: "trainer", shallow: true });
  });

  it("git:// from git daemon, the default branch", async (ctx) => {
    if (daemonUrl === undefined) ctx.skip("git daemon did not start here");
    const run = await runPod({ name: "git-daemon", git: { url: daemonUrl, subdir: "trainer" } });
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain(`training v2 in trainer at ${v2.slice(0, 12)}`);
    expect((await view(run.jobId)).state).toBe("SUCCEEDED");
  });

  it("a full commit id is fetched alone; an abbreviated one through the whole history", async () => {
    const full = await runPod({ name: "git-sha", git: { url: `file://${repoDir}`, revision: v1, subdir: "trainer" } });
    expect(full.code, full.output).toBe(0);
    expect((await view(full.jobId)).events.find((e) => e.type === "code_ready")?.data).toMatchObject({
      commit: v1,
      shallow: true,
    });
    const short = await runPod({
      name: "git-short",
      git: { url: `file://${repoDir}`, revision: v1.slice(0, 8), subdir: "trainer" },
    });
    expect(short.code, short.output).toBe(0);
    expect(short.output).toContain(`training v1 in trainer at ${v1.slice(0, 12)}`);
    expect((await view(short.jobId)).events.find((e) => e.type === "code_ready")?.data).toMatchObject({
      commit: v1,
      shallow: false,
    });
  });

  it("a revision that does not exist: done failed, exit 66, the reason names the revision and the repository", async () => {
    const run = await runPod({ name: "git-bad", git: { url: `file://${repoDir}`, revision: "no-such-branch" } });
    expect(run.code).toBe(66);
    expect(run.output).not.toContain("training v");
    const job = await view(run.jobId);
    expect(job.state).toBe("FAILED");
    expect(job.done).toMatchObject({ status: "failed", exit_code: 66 });
    expect(job.done?.reason).toMatch(/^GIT_REVISION_NOT_FOUND: /);
    expect(job.done?.reason).toContain('"no-such-branch"');
    expect(job.done?.reason).toContain(`file://${repoDir}`);
    expect(job.done?.reason).toContain("branches: main; tags: v1");
    // An unknown commit id too, after the full fetch found nothing.
    const sha = await runPod({ name: "git-bad-sha", git: { url: `file://${repoDir}`, revision: "deadbeef" } });
    expect(sha.code).toBe(66);
    expect((await view(sha.jobId)).done?.reason).toMatch(/^GIT_REVISION_NOT_FOUND: revision "deadbeef"/);
  });

  it("a subdirectory the revision lacks: GIT_SUBDIR_NOT_FOUND, exit 66", async () => {
    const run = await runPod({ name: "git-subdir", git: { url: `file://${repoDir}`, subdir: "nowhere" } });
    expect(run.code).toBe(66);
    expect((await view(run.jobId)).done?.reason).toMatch(/^GIT_SUBDIR_NOT_FOUND: CODE_GIT_SUBDIR "nowhere"/);
  });

  it("credentials from a Secret: the fetch authenticates, the token appears in no log, event or done", async () => {
    const before = http.refused;
    const secret = { "git-creds": { username: "ci-bot", token: TOKEN } };
    const request = {
      name: "git-auth",
      git: { url: `${http.url}/project.git`, revision: "main", subdir: "trainer", credentials_secret: "git-creds" },
      // The script prints the env it got: the credentials are the agent's, not the script's.
      command: ["python3", "-c", "import os; print('child sees token:', 'CODE_GIT_TOKEN' in os.environ)"],
    };
    const rendered = JSON.stringify(renderJob(normalizeJobRequest({ framework: "pytorch", ...request })));
    expect(rendered).not.toContain(TOKEN);
    const run = await runPod(request, secret);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain("child sees token: False");
    expect(http.refused).toBe(before);
    const job = await view(run.jobId);
    expect(job.state).toBe("SUCCEEDED");
    expect(job.events.find((e) => e.type === "code_ready")?.data).toMatchObject({ commit: v2 });

    // A wrong token: the server refuses, the fetch fails with GIT_FETCH_FAILED (69) at once, not after retries
    // until CODE_GIT_TIMEOUT_SECONDS (asking again gets the same 401), and the token is still nowhere.
    const wrong = `${TOKEN.slice(0, -4)}WXYZ`;
    const refusedBefore = http.refused;
    const bad = await runPod(request, { "git-creds": { token: wrong } }, { CODE_GIT_TIMEOUT_SECONDS: "60" });
    expect(bad.code).toBe(69);
    expect(http.refused).toBeGreaterThan(refusedBefore);
    expect(bad.output).not.toContain("retrying");
    const badJob = await view(bad.jobId);
    expect(badJob.done?.reason).toMatch(/^GIT_FETCH_FAILED: .*refused the fetch .*not retried; check CODE_GIT_TOKEN/);
    for (const text of [run.output, bad.output, JSON.stringify(job), JSON.stringify(badJob)]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(wrong);
      expect(text).not.toContain(Buffer.from(`ci-bot:${TOKEN}`).toString("base64"));
    }
  });

  it("a server that stops answering: the timeout ends the fetch (69); SIGTERM cancels it, no git left", async () => {
    http.hang = true;
    try {
      const request = { name: "git-hang", git: { url: `${http.url}/project.git`, credentials_secret: "git-creds" } };
      const secret = { "git-creds": { token: TOKEN } };
      const timedOut = await runPod(request, secret, { CODE_GIT_TIMEOUT_SECONDS: "2" });
      expect(timedOut.code, timedOut.output).toBe(69);
      expect((await view(timedOut.jobId)).done?.reason).toMatch(
        /^GIT_FETCH_FAILED: fetching .* timed out after 2 s \(CODE_GIT_TIMEOUT_SECONDS\)/,
      );

      let sent = false;
      const cancelled = await runPod(request, secret, {}, (output, kill) => {
        if (!sent && output.includes('"msg":"fetching the code"')) {
          sent = true;
          kill("SIGTERM");
        }
      });
      expect(cancelled.code).toBe(143);
      const job = await view(cancelled.jobId);
      expect(job.done).toMatchObject({ status: "cancelled", reason: "SIGTERM received before the command started" });
      // git and its helpers ran in their own process group, killed with it: none still talks to the server.
      expect(processesMentioning(new URL(http.url).host)).toEqual([]);
    } finally {
      http.hang = false;
    }
  });

  it("no git in the image: GIT_NOT_INSTALLED, exit 69", async () => {
    const empty = await mkdtemp(join(root, "no-git-"));
    const run = await runPod({ name: "git-none", git: { url: `file://${repoDir}` } }, {}, { PATH: empty });
    expect(run.code).toBe(69);
    expect((await view(run.jobId)).done?.reason).toMatch(/^GIT_NOT_INSTALLED: /);
  });

  it("a restarted pod reuses its (shallow) checkout: the new revision, no old file; other folders are refused", async () => {
    const dir = join(await mkdtemp(join(root, "restart-")), "code");
    const first = await runPod(
      { name: "git-r1", git: { url: `file://${repoDir}`, subdir: "trainer" } },
      {},
      {
        CODE_GIT_DIR: dir,
      },
    );
    expect(first.code, first.output).toBe(0);
    await writeFile(join(dir, "trainer", "stale.txt"), "left by the first run");
    const second = await runPod(
      {
        name: "git-r2",
        // An abbreviated id behind main's tip: the first run's shallow checkout must be deepened to find it.
        git: { url: `file://${repoDir}`, revision: mid.slice(0, 8), subdir: "trainer" },
        command: ["python3", "-c", "import os; print('files:', sorted(os.listdir('.')))"],
      },
      {},
      { CODE_GIT_DIR: dir },
    );
    expect(second.code, second.output).toBe(0);
    expect(second.output).toContain("files: ['train.py']");
    expect((await view(second.jobId)).events.find((e) => e.type === "code_ready")?.data).toMatchObject({
      commit: mid,
    });

    // A folder with files, and a person's own checkout: neither is the agent's to clean.
    const foreign = join(root, "foreign");
    await mkdir(foreign, { recursive: true });
    await writeFile(join(foreign, "keep.txt"), "not the agent's");
    const own = join(root, "own-checkout");
    await mkdir(own);
    git(own, "init", "--quiet");
    await writeFile(join(own, "work-in-progress.py"), "untracked, precious");
    for (const [i, dir] of [foreign, own].entries()) {
      const refused = await runPod(
        { name: `git-r3-${i}`, git: { url: `file://${repoDir}` } },
        {},
        { CODE_GIT_DIR: dir },
      );
      expect(refused.code).toBe(78);
      expect((await view(refused.jobId)).done?.reason).toMatch(
        /^CONFIG_INVALID: CODE_GIT_DIR must be an empty folder or a checkout the agent made/,
      );
    }
    expect(readFileSync(join(own, "work-in-progress.py"), "utf8")).toBe("untracked, precious");
  });

  it("trainer-agent local: every node fetches its own checkout and runs the script in it", async () => {
    const workdir = join(await mkdtemp(join(root, "local-")), "run");
    const { code, output } = await finished(
      spawn(process.execPath, [AGENT_BIN, "local", "--nodes", "2", "--workdir", workdir, "--", "python3", "train.py"], {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: process.env.HOME ?? "/tmp",
          CODE_GIT_REPO: `file://${repoDir}`,
          CODE_GIT_SUBDIR: "trainer",
        },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    expect(code, output).toBe(0);
    for (const node of ["node0", "node1"])
      expect(output).toContain(`[${node}] training v2 in trainer at ${v2.slice(0, 12)}`);
  }, 60_000);
});
