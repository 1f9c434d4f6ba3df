/**
 * What a git source may be, checked the same way by the submitter (request fields) and the agent (CODE_GIT_*):
 * the repository URL, the revision and the subdirectory. Each check answers why a value is refused, or undefined.
 */

/**
 * Transports git may use for the job's code. `ext::` and `fd::` run commands or read descriptors, and a bare path
 * or `-x` could be read as an option: only these URL forms (and scp-like `user@host:path`, which is ssh) pass.
 */
export const GIT_PROTOCOLS = ["https", "http", "ssh", "git", "file"] as const;

/** scp-like ssh syntax: `git@github.com:org/repo.git` (no scheme, a `:` before the first `/`). */
const SCP_LIKE = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$/;

/** Why `url` is not an acceptable repository URL, or undefined. */
export function gitUrlProblem(url: string): string | undefined {
  if (/\s/.test(url)) return "must not contain whitespace";
  if (SCP_LIKE.test(url) && !url.includes("://")) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `must be a URL with scheme ${GIT_PROTOCOLS.join(", ")} (or user@host:path for ssh)`;
  }
  const scheme = parsed.protocol.slice(0, -1);
  if (!(GIT_PROTOCOLS as readonly string[]).includes(scheme))
    return `must use scheme ${GIT_PROTOCOLS.join(", ")} (or user@host:path for ssh), not ${scheme}:`;
  // A URL is logged and shown in events and done: a password or token goes in the credentials Secret.
  if (parsed.password !== "") return "must not hold a password (user:password@): give the credentials in a Secret";
  if (scheme === "file" ? parsed.pathname === "/" : parsed.hostname === "") return "must name a repository";
  return undefined;
}

/** Whether git sends HTTP credentials to this URL (basic auth goes only over http(s)). */
export function isHttpGitUrl(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

/**
 * Why `revision` is not a branch, tag, full ref or commit id git can be asked for, or undefined. Refspec and
 * revision syntax (`a:b`, `^`, `~`, `..`, `@{`) and a leading `-` are refused: the value reaches git's argv.
 */
export function gitRevisionProblem(revision: string): string | undefined {
  if (
    !/^[A-Za-z0-9._/+-]+$/.test(revision) ||
    revision.startsWith("-") ||
    revision.startsWith("/") ||
    revision.endsWith("/") ||
    revision.endsWith(".") ||
    revision.endsWith(".lock") ||
    revision.includes("..") ||
    revision.includes("//") ||
    revision.length > 255
  )
    return 'must be a branch, tag, ref or commit id (letters, digits, ".", "_", "-", "+", "/"; no "..", no leading "-")';
  return undefined;
}

/** Why `subdir` is not a relative folder inside the checkout, or undefined. */
export function gitSubdirProblem(subdir: string): string | undefined {
  if (subdir.startsWith("/")) return "must be a relative path inside the repository, not an absolute one";
  if (subdir.includes("\\") || [...subdir].some((c) => c.charCodeAt(0) < 32)) return "must be a plain relative path";
  if (subdir.split("/").some((part) => part === "..")) return 'must stay inside the repository: ".." is not allowed';
  return undefined;
}

/** `subdir` without `.` parts and trailing slashes ("" is the repository root). */
export function normalizeSubdir(subdir: string): string {
  return subdir
    .split("/")
    .filter((p) => p !== "" && p !== ".")
    .join("/");
}

/**
 * The URL as it may be shown: any userinfo password replaced (the agent accepts none, but never shows one), and over
 * http(s) a user name given alone, the way a token often is (`https://ghp_...@github.com/...`); an ssh user
 * (`ssh://git@host`, `git@host:path`) is a login name and stays.
 */
export function displayGitUrl(url: string): string {
  if (isHttpGitUrl(url)) url = url.replace(/^(https?:\/\/)[^/@:]*@/i, "$1***@");
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, "$1:***@");
}
