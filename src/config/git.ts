/**
 * CODE_GIT_*: the training code from a git repository, fetched by the agent before the command runs. Read apart
 * from the rest of the configuration so that the git block stays one piece (src/agent/code.ts uses it).
 */
import { gitRevisionProblem, gitSubdirProblem, gitUrlProblem, isHttpGitUrl, normalizeSubdir } from "../git/source.ts";
import { readWorkDir } from "./dirs.ts";
import type { Env, EnvReader } from "./parse.ts";
import type { Secret } from "./secret.ts";

/** Variables holding the git credentials: never shown, never passed to the child. */
export const GIT_SECRET_ENV_NAMES = ["CODE_GIT_PASSWORD", "CODE_GIT_TOKEN"] as const;

export interface GitSourceConfig {
  /** CODE_GIT_REPO: https, http, ssh, git or file URL, or scp-like user@host:path. */
  repo: string;
  /** CODE_GIT_REVISION: branch, tag, full ref or commit id (abbreviated too); undefined = the remote's HEAD. */
  revision: string | undefined;
  /** CODE_GIT_SUBDIR: the folder of the checkout the command runs in ("" = the root). */
  subdir: string;
  /** CODE_GIT_DIR: where the checkout goes (absolute): created, or reused when it holds one (a restarted container). */
  dir: string;
  /** CODE_GIT_USERNAME: basic-auth user name over http(s); default `x-access-token` when only a token is given. */
  username: string | undefined;
  /** CODE_GIT_PASSWORD, or CODE_GIT_TOKEN: the password or access token. */
  password: Secret | undefined;
  /** CODE_GIT_TIMEOUT_SECONDS: bound on the whole fetch, retries included. */
  timeoutSeconds: number;
}

export const DEFAULT_GIT_DIR = "/workspace/code";

/** Undefined when CODE_GIT_REPO is unset; problems go to `r` naming the variable. */
export function readGitSource(r: EnvReader, env: Env, cwd = process.cwd()): GitSourceConfig | undefined {
  const repo = r.raw("CODE_GIT_REPO");
  const others = ["CODE_GIT_REVISION", "CODE_GIT_SUBDIR", "CODE_GIT_USERNAME", ...GIT_SECRET_ENV_NAMES];
  if (repo === undefined) {
    const stray = others.filter((n) => r.raw(n) !== undefined);
    if (stray.length > 0) r.problems.push(`CODE_GIT_REPO must be set when ${stray.join(", ")} is set`);
    return undefined;
  }
  const urlProblem = gitUrlProblem(repo);
  if (urlProblem !== undefined) r.problem("CODE_GIT_REPO", `a git repository URL that ${urlProblem}`, repo);
  const revision = r.raw("CODE_GIT_REVISION");
  if (revision !== undefined && gitRevisionProblem(revision) !== undefined)
    r.problem("CODE_GIT_REVISION", `a revision that ${gitRevisionProblem(revision)!}`, revision);
  const subdir = r.raw("CODE_GIT_SUBDIR") ?? "";
  if (gitSubdirProblem(subdir) !== undefined)
    r.problem("CODE_GIT_SUBDIR", `a folder that ${gitSubdirProblem(subdir)!}`, subdir);
  // The checkout is cleaned on reuse, like a dataset folder is replaced: the same folders (and a blank) are refused.
  const dir = readWorkDir(r, env, "CODE_GIT_DIR", DEFAULT_GIT_DIR, cwd);
  const password = r.secret("CODE_GIT_PASSWORD") ?? r.secret("CODE_GIT_TOKEN");
  const username = r.raw("CODE_GIT_USERNAME");
  if ((password !== undefined || username !== undefined) && urlProblem === undefined && !isHttpGitUrl(repo))
    r.problems.push(
      "CODE_GIT_USERNAME/CODE_GIT_PASSWORD/CODE_GIT_TOKEN are used only with an http(s) CODE_GIT_REPO (ssh takes a key)",
    );
  return {
    repo,
    revision,
    subdir: normalizeSubdir(subdir),
    dir,
    username,
    password,
    timeoutSeconds: r.number("CODE_GIT_TIMEOUT_SECONDS", { min: 1, max: 86_400, fallback: 600 }),
  };
}
