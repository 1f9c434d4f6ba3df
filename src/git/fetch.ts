/**
 * Fetching one revision of a repository into a folder with the `git` binary of the image: list the remote's refs
 * (which also proves it reachable), then a shallow fetch of the one ref or commit, else a full fetch for an
 * abbreviated commit id. A revision the reachable remote does not have fails at once with GIT_REVISION_NOT_FOUND,
 * and so does a server that refuses the credentials or has no such repository (GIT_FETCH_FAILED); what may pass
 * (the network, the server) is retried under the project's retry policy within the timeout.
 *
 * Credentials reach git through GIT_CONFIG_* variables (an http.<origin>.extraHeader scoped to the repository's
 * origin), never through argv or a file; whatever git prints is masked before it reaches an error message.
 */
import { spawn } from "node:child_process";
import { mkdir, readdir, realpath, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { maskSecrets, secretList } from "../config/mask.ts";
import type { GitSourceConfig } from "../config/git.ts";
import { AgentError } from "../errors/index.ts";
import { signalGroup } from "../process/group.ts";
import { DEFAULT_RETRY_POLICY, retry, type RetryDeps, type RetryPolicy } from "../retry/index.ts";
import { displayGitUrl, GIT_PROTOCOLS, isHttpGitUrl } from "./source.ts";

/** What to fetch and where: the agent's CODE_GIT_* configuration (config/git.ts says what each field is). */
export type GitFetchRequest = GitSourceConfig;

export interface FetchedCode {
  /** The checkout's folder joined with the subdirectory: where the command runs. */
  workdir: string;
  /** Full commit id checked out. */
  commit: string;
  /** The ref the revision named (`refs/heads/main`), when it named one. */
  ref: string | undefined;
  /** Whether only the one commit was fetched. */
  shallow: boolean;
  seconds: number;
}

export interface GitFetchDeps {
  /** Cancels the fetch (the agent's SIGTERM). */
  signal?: AbortSignal;
  /** Values masked out of git's output before it is put in an error. */
  secrets?: readonly string[];
  /** `git` by default (found on PATH). */
  gitBin?: string;
  /** The environment git starts from (the agent's, less its secrets); the fetch adds its own settings. */
  env: Readonly<Record<string, string | undefined>>;
  retryPolicy?: Omit<RetryPolicy, "retryOn" | "deadlineMs">;
  sleep?: RetryDeps["sleep"];
  onRetry?: (info: { what: string; attempt: number; delayMs: number; error: string }) => void;
}

/**
 * What git prints (LC_ALL=C, no prompt) when the server answered 401 (no credentials, or refused ones: git then
 * wants a user name it may not ask for), 403, or 404 / "repository not found": asking again gets the same answer.
 */
const REFUSED =
  /could not read (?:Username|Password) for|Authentication failed for|returned error: 40[134]\b|repository '[^']*' not found/;

/** A git command that ran and exited non-zero: the last lines of its stderr, masked. */
class GitCommandFailed extends Error {
  /** The server refused the credentials or has no such repository: not worth another try. */
  readonly refused: boolean;
  constructor(command: string, exitCode: number, stderr: string) {
    super(`git ${command} exited with code ${exitCode}${stderr === "" ? "" : `: ${stderr}`}`);
    this.refused = REFUSED.test(stderr);
  }
}

const KEPT_STDERR_LINES = 3;
/** File inside .git that marks a checkout as the agent's own. */
const OWN_MARKER = "trainer-agent-checkout";
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;
const SHA_PREFIX = /^[0-9a-f]{4,63}$/i;

/** Fetches and checks out the revision; throws GIT_* errors (see the README's exit-code table). */
export async function fetchGitRevision(req: GitFetchRequest, deps: GitFetchDeps): Promise<FetchedCode> {
  const started = performance.now();
  const timeout = AbortSignal.timeout(req.timeoutSeconds * 1000);
  const signal = deps.signal === undefined ? timeout : AbortSignal.any([deps.signal, timeout]);
  // The last failure of a git command, for a timeout's message: what kept failing until time ran out.
  let lastFailure: GitCommandFailed | undefined;
  const git = gitRunner(req, deps, signal, (failure) => (lastFailure = failure));
  const repo = displayGitUrl(req.repo);
  // Every other failure of git is worth another try: the network or the server.
  const retried = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
    retry(
      fn,
      {
        ...(deps.retryPolicy ?? DEFAULT_RETRY_POLICY),
        deadlineMs: req.timeoutSeconds * 1000,
        retryOn: (error) => error instanceof GitCommandFailed && !error.refused,
      },
      {
        signal,
        ...(deps.sleep !== undefined && { sleep: deps.sleep }),
        onRetry: ({ error, attempt, delayMs }) =>
          deps.onRetry?.({ what, attempt, delayMs, error: (error as Error).message }),
      },
    );

  try {
    await prepareDir(req.dir);
    await git(["init", "--quiet"]);
    await writeFile(path.join(req.dir, ".git", OWN_MARKER), "");
    let refs: Map<string, string>;
    try {
      refs = parseLsRemote(await retried("ls-remote", () => git(["ls-remote", "--", req.repo])));
    } catch (error) {
      throw unreachable(repo, error);
    }
    const revision = req.revision ?? "HEAD";
    const ref = resolveRef(refs, revision);
    let shallow = true;
    let target = "FETCH_HEAD";
    if (ref !== undefined) {
      await retried("fetch", () => git(["fetch", "--quiet", "--depth", "1", "--no-tags", "--", req.repo, ref]));
    } else if (SHA_PREFIX.test(revision)) {
      // A full commit id is fetched alone where the server allows it (protocol v2 servers, GitHub, GitLab);
      // an abbreviated one (or a refusing server) needs the history to be resolved against.
      const alone =
        FULL_SHA.test(revision) &&
        (await git(["fetch", "--quiet", "--depth", "1", "--no-tags", "--", req.repo, revision]).then(
          () => true,
          (error: unknown) => {
            if (error instanceof GitCommandFailed) return false;
            throw error;
          },
        ));
      if (!alone) {
        shallow = false;
        // A checkout reused from a shallow fetch (a restarted container) would stay cut at its old depth.
        const cut = (await git(["rev-parse", "--is-shallow-repository"])).trim() === "true";
        await retried("fetch", () =>
          git([
            "fetch",
            "--quiet",
            "--no-tags",
            ...(cut ? ["--unshallow"] : []),
            "--",
            req.repo,
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
          ]),
        );
        target = await git(["rev-parse", "--verify", "--quiet", "--end-of-options", `${revision}^{commit}`]).then(
          (out) => out.trim(),
          () => {
            throw notFound(repo, revision, refs, "no branch, tag or commit of that name");
          },
        );
      }
    } else throw notFound(repo, revision, refs, "no branch or tag of that name");

    await git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", target]);
    // A reused checkout (container restart) keeps no file of the previous revision.
    await git(["clean", "-ffdxq"]);
    const commit = (await git(["rev-parse", "HEAD"])).trim();
    const workdir = await checkSubdir(req, repo, revision, commit);
    return { workdir, commit, ref, shallow, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    if (timeout.aborted && !(deps.signal?.aborted ?? false))
      throw new AgentError(
        "GIT_FETCH_FAILED",
        `fetching ${repo} timed out after ${req.timeoutSeconds} s (CODE_GIT_TIMEOUT_SECONDS)` +
          (lastFailure === undefined ? "" : `; last failure: ${lastFailure.message}`),
        { cause: error },
      );
    if (error instanceof GitCommandFailed)
      throw new AgentError("GIT_FETCH_FAILED", `fetching ${repo}: ${error.message}`, { cause: error });
    throw error;
  }
}

/** The folder made, or found empty, or found holding a checkout; anything else is not the agent's to replace. */
async function prepareDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const entries = await readdir(dir);
  if (entries.length === 0) return;
  // The reuse cleans every untracked file: only a checkout the agent made itself (its marker inside .git, which
  // no clean touches) is reused, never a person's working copy.
  const ours = await stat(path.join(dir, ".git", OWN_MARKER)).then(
    () => true,
    () => false,
  );
  if (!ours)
    throw new AgentError(
      "CONFIG_INVALID",
      `CODE_GIT_DIR must be an empty folder or a checkout the agent made, got ${JSON.stringify(dir)} holding ${entries.length} file(s)`,
    );
}

/** `sha<TAB>ref` lines into ref -> sha (peeled `^{}` entries left out). */
function parseLsRemote(out: string): Map<string, string> {
  const refs = new Map<string, string>();
  for (const line of out.split("\n")) {
    const [sha, ref] = line.split("\t");
    if (sha !== undefined && ref !== undefined && !ref.endsWith("^{}")) refs.set(ref, sha);
  }
  return refs;
}

/** The ref the revision names, as git itself looks a short name up: exact, then a branch, then a tag. */
function resolveRef(refs: Map<string, string>, revision: string): string | undefined {
  return [revision, `refs/heads/${revision}`, `refs/tags/${revision}`].find((r) => refs.has(r));
}

function listed(refs: Map<string, string>, prefix: string): string {
  const names = [...refs.keys()].filter((r) => r.startsWith(prefix)).map((r) => r.slice(prefix.length));
  if (names.length === 0) return "none";
  return names.length > 5 ? `${names.slice(0, 5).join(", ")} and ${names.length - 5} more` : names.join(", ");
}

function notFound(repo: string, revision: string, refs: Map<string, string>, why: string): AgentError {
  return new AgentError(
    "GIT_REVISION_NOT_FOUND",
    `revision ${JSON.stringify(revision)} not found in ${repo}: ${why} (branches: ${listed(refs, "refs/heads/")}; tags: ${listed(refs, "refs/tags/")})`,
    { details: { repo, revision } },
  );
}

function unreachable(repo: string, error: unknown): unknown {
  if (!(error instanceof GitCommandFailed)) return error;
  const why = error.refused
    ? `${repo} refused the fetch or has no such repository (not retried; check CODE_GIT_TOKEN, or CODE_GIT_USERNAME and CODE_GIT_PASSWORD, and CODE_GIT_REPO)`
    : `cannot list the refs of ${repo}`;
  return new AgentError("GIT_FETCH_FAILED", `${why}: ${error.message}`, {
    cause: error,
    details: { repo },
  });
}

async function checkSubdir(req: GitFetchRequest, repo: string, revision: string, commit: string): Promise<string> {
  if (req.subdir === "") return req.dir;
  const workdir = path.join(req.dir, req.subdir);
  const missing = (why: string): AgentError =>
    new AgentError(
      "GIT_SUBDIR_NOT_FOUND",
      `CODE_GIT_SUBDIR ${JSON.stringify(req.subdir)} ${why} in ${repo} at ${JSON.stringify(revision)} (${commit.slice(0, 12)})`,
      { details: { repo, revision, subdir: req.subdir } },
    );
  const isDir = await stat(workdir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) throw missing("is not a folder");
  // A symbolic link in the repository must not lead the command out of the checkout.
  const [root, real] = await Promise.all([realpath(req.dir), realpath(workdir)]);
  if (real !== root && !real.startsWith(`${root}/`)) throw missing("leads outside the checkout");
  return workdir;
}

/** The environment of every git command: no prompt, only the allowed transports, the credentials as config. */
export function gitEnv(
  req: Pick<GitFetchRequest, "repo" | "username" | "password">,
  base: Readonly<Record<string, string | undefined>>,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    GIT_TERMINAL_PROMPT: "0",
    GIT_ALLOW_PROTOCOL: GIT_PROTOCOLS.join(":"),
    // No user or system configuration may redirect the fetch (url.<base>.insteadOf, credential helpers).
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    LC_ALL: "C",
  };
  for (const k of Object.keys(env)) if (/^GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+|PARAMETERS)$/.test(k)) delete env[k];
  if (req.password !== undefined && isHttpGitUrl(req.repo)) {
    const basic = basicCredential(req);
    // Scoped to the repository's origin: a redirect to another host does not get the header.
    env.GIT_CONFIG_COUNT = "1";
    env.GIT_CONFIG_KEY_0 = `http.${new URL(req.repo).origin}/.extraHeader`;
    env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
  }
  return env;
}

function basicCredential(req: Pick<GitFetchRequest, "username" | "password">): string {
  return Buffer.from(`${req.username ?? "x-access-token"}:${req.password?.reveal() ?? ""}`).toString("base64");
}

/** Runs git in the checkout folder in its own process group, killed whole on abort; resolves with stdout. */
function gitRunner(
  req: GitFetchRequest,
  deps: GitFetchDeps,
  signal: AbortSignal,
  onFailure: (failure: GitCommandFailed) => void,
): (args: string[]) => Promise<string> {
  const env = gitEnv(req, deps.env);
  const bin = deps.gitBin ?? "git";
  // The header's base64 form too: git prints it when a user turns curl tracing on with redaction off.
  const secrets = secretList([
    ...(deps.secrets ?? []),
    ...(req.password === undefined ? [] : [req.password.reveal(), basicCredential(req)]),
  ]);
  return (args) =>
    new Promise((resolve, reject) => {
      signal.throwIfAborted();
      const child = spawn(bin, args, { cwd: req.dir, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => {
        if (stdout.length < MAX_OUTPUT_BYTES) stdout += c.toString();
      });
      child.stderr.on("data", (c: Buffer) => {
        stderr = (stderr + c.toString()).slice(-MAX_OUTPUT_BYTES);
      });
      // git runs helpers (git-remote-https, ssh) in its group: all of them go.
      const onAbort = (): void => {
        if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
      };
      signal.addEventListener("abort", onAbort, { once: true });
      child.on("error", (error: NodeJS.ErrnoException) => {
        signal.removeEventListener("abort", onAbort);
        if (error.code === "ENOENT")
          reject(
            new AgentError(
              "GIT_NOT_INSTALLED",
              `the git program was not found on PATH; CODE_GIT_REPO needs an image with git installed`,
              { cause: error },
            ),
          );
        else reject(error);
      });
      child.on("close", (code) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) reject(signal.reason);
        else if (code === 0) resolve(stdout);
        else {
          const tail = stderr.trim().split("\n").slice(-KEPT_STDERR_LINES).join(" / ");
          const failure = new GitCommandFailed(args[0] ?? "", code ?? -1, maskSecrets(tail, secrets));
          onFailure(failure);
          reject(failure);
        }
      });
    });
}
