/**
 * `git`: the training code from a repository, `{url, revision?, subdir?, credentials_secret?}` or the URL alone.
 * Checked with the agent's own rules (src/git/source.ts), so what the submitter accepts the agent can fetch.
 */
import {
  gitRevisionProblem,
  gitSubdirProblem,
  gitUrlProblem,
  isHttpGitUrl,
  normalizeSubdir,
} from "../../git/source.ts";
import { CONFIG_KEY, DNS1123_SUBDOMAIN } from "../names.ts";
import type { GitSpec } from "../spec.ts";
import { describe, isRecord } from "../../internal/values.ts";
import type { Reader } from "./reader.ts";

const INLINE_CREDENTIALS = ["token", "password", "username", "access_token", "accessToken"];

export function readGit(r: Reader, raw: unknown): GitSpec | undefined {
  if (raw === undefined || raw === null) return undefined;
  const git = typeof raw === "string" ? { url: raw } : raw;
  if (!isRecord(git)) {
    r.problem("git", `must be a repository URL or an object {"url", "revision", "subdir", ...}, got ${describe(raw)}`);
    return undefined;
  }
  const f = "git.";
  for (const key of INLINE_CREDENTIALS) {
    if (git[key] !== undefined)
      r.problem(
        `git.${key}`,
        "credentials are never put in the TrainJob: give credentials_secret, the name of a Secret holding them",
      );
  }
  const url = r.string(git, ["url", "repo", "repository"], f);
  if (url === undefined) {
    r.problem("git.url", "is required: the repository URL (https://, ssh://, git://, file:// or user@host:path)");
    return undefined;
  }
  const urlProblem = gitUrlProblem(url.value);
  if (urlProblem !== undefined) r.problem(url.field, `${urlProblem}, got ${describe(url.value)}`);
  const revision = r.string(git, ["revision", "ref", "branch", "tag", "commit"], f);
  if (revision !== undefined && gitRevisionProblem(revision.value) !== undefined)
    r.problem(revision.field, `${gitRevisionProblem(revision.value)!}, got ${describe(revision.value)}`);
  const subdir = r.string(git, ["subdir", "subdirectory", "path"], f);
  if (subdir !== undefined && gitSubdirProblem(subdir.value) !== undefined)
    r.problem(subdir.field, `${gitSubdirProblem(subdir.value)!}, got ${describe(subdir.value)}`);
  const secret = r.string(git, ["credentials_secret", "credentialsSecret", "secret"], f);
  if (secret !== undefined && !DNS1123_SUBDOMAIN.test(secret.value))
    r.problem(secret.field, `must be a Secret name, got ${describe(secret.value)}`);
  if (secret !== undefined && urlProblem === undefined && !isHttpGitUrl(url.value))
    r.problem(
      secret.field,
      "is used only with an https:// (or http://) URL; ssh takes a key from the image or a volume",
    );
  const key = (names: string[], fallback: string): string => {
    const got = r.string(git, names, f);
    if (got !== undefined && !CONFIG_KEY.test(got.value))
      r.problem(got.field, `must be a Secret key (letters, digits, "-", "_", "."), got ${describe(got.value)}`);
    return got?.value ?? fallback;
  };
  const usernameKey = key(["username_key", "usernameKey"], "username");
  const passwordKey = key(["password_key", "passwordKey"], "password");
  const tokenKey = key(["token_key", "tokenKey"], "token");
  const sub = subdir === undefined ? "" : normalizeSubdir(subdir.value);
  return {
    url: url.value,
    ...(revision === undefined ? {} : { revision: revision.value }),
    ...(sub === "" ? {} : { subdir: sub }),
    ...(secret === undefined ? {} : { credentialsSecret: { name: secret.value, usernameKey, passwordKey, tokenKey } }),
  };
}
