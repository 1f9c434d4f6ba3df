/**
 * The run's code from git (CODE_GIT_REPO): fetched before the storage is prepared, so that a revision that does not
 * exist fails in seconds, before a dataset pull, with GIT_REVISION_NOT_FOUND in `done`. The command then runs in
 * the checkout (CODE_GIT_SUBDIR within it), and the child learns where it is and which commit it runs.
 */
import type { CallbackClient } from "../callbacks/client.ts";
import type { AgentConfig } from "../config/index.ts";
import { fetchGitRevision, type FetchedCode } from "../git/fetch.ts";
import { displayGitUrl } from "../git/source.ts";
import type { Logger } from "../log/logger.ts";
import { withoutAgentSecrets } from "./child-env.ts";

export async function prepareCode(input: {
  config: AgentConfig;
  log: Logger;
  callbacks: CallbackClient | undefined;
  secrets: readonly string[];
  signal: AbortSignal;
}): Promise<FetchedCode | undefined> {
  const { config, log, callbacks } = input;
  const git = config.git;
  if (git === undefined) return undefined;
  const repo = displayGitUrl(git.repo);
  log.info({ repo, revision: git.revision ?? "HEAD", dir: git.dir }, "fetching the code");
  const code = await fetchGitRevision(git, {
    signal: input.signal,
    secrets: input.secrets,
    // git needs PATH, HOME, proxies and GIT_SSH_COMMAND; not the callback token nor its own credentials as such.
    env: withoutAgentSecrets(config.baseEnv),
    onRetry: ({ what, attempt, delayMs, error }) =>
      log.warn({ repo, attempt, delay_ms: delayMs, err: error }, `git ${what} failed; retrying`),
  });
  log.info(
    { repo, commit: code.commit, ref: code.ref, workdir: code.workdir, shallow: code.shallow, seconds: code.seconds },
    "code ready",
  );
  callbacks?.event("code_ready", `${repo} at ${code.commit.slice(0, 12)}`, {
    repo,
    revision: git.revision ?? "HEAD",
    commit: code.commit,
    ...(code.ref !== undefined && { ref: code.ref }),
    ...(git.subdir !== "" && { subdir: git.subdir }),
    shallow: code.shallow,
    seconds: code.seconds,
  });
  return code;
}

/** What the child learns of its code: the folder it runs in and the commit. */
export function codeChildEnv(code: FetchedCode | undefined): Record<string, string> {
  return code === undefined ? {} : { CODE_DIR: code.workdir, CODE_GIT_COMMIT: code.commit };
}
