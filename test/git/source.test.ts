/**
 * What a git source may be: the shared rules (src/git/source.ts), the agent's CODE_GIT_* configuration and the
 * submitter's `git` request field, each refusal naming the variable or field, the expected form and what it got.
 */
import { describe, expect, it } from "vitest";
import { loadAgentConfig, secretValues } from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { gitEnv } from "../../src/git/fetch.ts";
import { displayGitUrl, gitRevisionProblem, gitSubdirProblem, gitUrlProblem } from "../../src/git/source.ts";
import { renderJob } from "../../src/submitter/render.ts";
import { normalizeJobRequest } from "../../src/submitter/request/index.ts";
import { Secret } from "../../src/config/index.ts";

describe("the shared rules", () => {
  it.each([
    "https://github.com/org/repo.git",
    "http://gitea.local:3000/org/repo",
    "ssh://git@github.com/org/repo.git",
    "git@github.com:org/repo.git",
    "git://127.0.0.1:9418/repo.git",
    "file:///srv/git/repo.git",
  ])("accepts the URL %s", (url) => expect(gitUrlProblem(url)).toBeUndefined());

  it.each([
    ["ext::sh -c touch% /tmp/x", /whitespace/],
    ["ext::ssh", /scheme/],
    ["fd::3", /scheme/],
    ["/srv/git/repo.git", /scheme/],
    ["-uhelp", /scheme/],
    ["ftp://host/repo", /not ftp:/],
    ["https://user:tok3n@github.com/org/repo", /password .* Secret/],
    ["file:///", /name a repository/],
  ])("refuses the URL %s", (url, why) => expect(gitUrlProblem(url)).toMatch(why));

  it.each(["main", "v1.2.0", "feature/x", "refs/heads/main", "refs/pull/12/head", "0a1b2c3", "release-2025+1"])(
    "accepts the revision %s",
    (rev) => expect(gitRevisionProblem(rev)).toBeUndefined(),
  );

  it.each(["-upload-pack=x", "main:refs/heads/x", "a..b", "HEAD~1", "HEAD^", "main@{1}", "x y", "/main", "a.lock", ""])(
    "refuses the revision %j",
    (rev) => expect(gitRevisionProblem(rev)).toBeDefined(),
  );

  it.each([
    ["src/train", undefined],
    ["./src/", undefined],
    ["/etc", /absolute/],
    ["../x", /".."/],
    ["a/../../x", /".."/],
    ["a\\b", /plain/],
  ])("subdir %j", (subdir, why) =>
    why === undefined
      ? expect(gitSubdirProblem(subdir)).toBeUndefined()
      : expect(gitSubdirProblem(subdir)).toMatch(why),
  );

  it("shows a URL without its password", () => {
    expect(displayGitUrl("https://u:secret-pass@h/r.git")).toBe("https://u:***@h/r.git");
    expect(displayGitUrl("https://ghp_token123@github.com/o/r.git")).toBe("https://***@github.com/o/r.git");
    expect(displayGitUrl("ssh://u:secret-pass@h/r.git")).toBe("ssh://u:***@h/r.git");
    expect(displayGitUrl("ssh://git@h/r.git")).toBe("ssh://git@h/r.git");
    expect(displayGitUrl("git@github.com:org/r.git")).toBe("git@github.com:org/r.git");
  });

  it("gives git the credentials as an origin-scoped header in its environment, nowhere else", () => {
    const env = gitEnv(
      { repo: "https://git.example.com/org/r.git", username: undefined, password: new Secret("tok-123456") },
      { PATH: "/bin", GIT_CONFIG_COUNT: "3", GIT_CONFIG_KEY_2: "url.x.insteadOf" },
    );
    expect(env).toMatchObject({
      PATH: "/bin",
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "http.https://git.example.com/.extraHeader",
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from("x-access-token:tok-123456").toString("base64")}`,
    });
    expect(env).not.toHaveProperty("GIT_CONFIG_KEY_2");
    expect(gitEnv({ repo: "git@h:r.git", username: undefined, password: undefined }, {})).not.toHaveProperty(
      "GIT_CONFIG_COUNT",
    );
  });
});

describe("CODE_GIT_* in the agent's configuration", () => {
  const load = (env: Record<string, string>) =>
    loadAgentConfig({ DATASET_DIR: "/w/dataset", CHECKPOINT_DIR: "/w/checkpoints", ...env });
  const problems = (env: Record<string, string>): string => {
    try {
      load(env);
    } catch (error) {
      if (isAgentError(error, "CONFIG_INVALID")) return error.message;
      throw error;
    }
    throw new Error("accepted");
  };

  it("reads a source with its defaults, the token as a secret masked in what leaves the agent", () => {
    const config = load({ CODE_GIT_REPO: "https://h/r.git", CODE_GIT_SUBDIR: "./src/", CODE_GIT_TOKEN: "tok-abcdef" });
    expect(config.git).toMatchObject({
      repo: "https://h/r.git",
      revision: undefined,
      subdir: "src",
      dir: "/workspace/code",
      timeoutSeconds: 600,
    });
    expect(JSON.stringify(config)).not.toContain("tok-abcdef");
    expect(secretValues(config)).toContain("tok-abcdef");
    expect(load({}).git).toBeUndefined();
  });

  it.each([
    [{ CODE_GIT_REPO: "ext::sh" }, /CODE_GIT_REPO must be a git repository URL that must use scheme .* got "ext::sh"/],
    [{ CODE_GIT_REPO: "https://h/r", CODE_GIT_REVISION: "a:b" }, /CODE_GIT_REVISION must be a revision .* got "a:b"/],
    [
      { CODE_GIT_REPO: "https://h/r", CODE_GIT_SUBDIR: "../up" },
      /CODE_GIT_SUBDIR must be a folder that .* got "..\/up"/,
    ],
    [{ CODE_GIT_REVISION: "main" }, /CODE_GIT_REPO must be set when CODE_GIT_REVISION is set/],
    [{ CODE_GIT_REPO: "git@h:r.git", CODE_GIT_TOKEN: "tok-abcdef" }, /only with an http\(s\) CODE_GIT_REPO/],
    [{ CODE_GIT_REPO: "https://h/r", CODE_GIT_DIR: "/w" }, /CODE_GIT_DIR .* and DATASET_DIR .* separate folders/],
    [{ CODE_GIT_REPO: "https://h/r", CODE_GIT_TIMEOUT_SECONDS: "0" }, /CODE_GIT_TIMEOUT_SECONDS must be a number/],
    [{ CODE_GIT_REPO: "https://h/r", CODE_GIT_DIR: "/usr" }, /CODE_GIT_DIR must be a folder of its own, not a system/],
    [{ CODE_GIT_REPO: "https://h/r", CODE_GIT_DIR: "/" }, /CODE_GIT_DIR must be a folder of its own, not the root/],
    // A blank is refused like DATASET_DIR's: most likely a template left empty, and the checkout folder is cleaned.
    [
      { CODE_GIT_REPO: "https://h/r", CODE_GIT_DIR: " " },
      /CODE_GIT_DIR must be a folder path \(unset for the default\), got " "/,
    ],
  ])("refuses %j", (env, why) => expect(problems(env)).toMatch(why));

  it("never shows the token in a refusal", () => {
    expect(problems({ CODE_GIT_REPO: "git@h:r.git", CODE_GIT_PASSWORD: "pw-secret-1" })).not.toContain("pw-secret-1");
  });
});

describe("the submitter's git field", () => {
  const base = { name: "tj", framework: "pytorch" };
  const fields = (req: Record<string, unknown>): Array<{ field: string; message: string }> => {
    try {
      normalizeJobRequest({ ...base, ...req });
    } catch (error) {
      if (isAgentError(error, "SPEC_INVALID")) return error.details!.problems as never;
      throw error;
    }
    throw new Error("accepted");
  };

  it("refuses a URL with a password without showing the password", () => {
    const [problem] = fields({ git: "https://u:pw-secret-1@h/org/r.git" });
    expect(problem).toMatchObject({ field: "git.url" });
    expect(problem!.message).toContain("must not hold a password");
    expect(problem!.message).not.toContain("pw-secret-1");
  });

  it("takes the URL alone, defaults the command to train.py in the checkout, and renders CODE_GIT_*", () => {
    const spec = normalizeJobRequest({ ...base, git: "https://h/org/r.git" });
    expect(spec.git).toEqual({ url: "https://h/org/r.git" });
    expect(spec.command).toEqual(["python3", "train.py"]);
    const env = (renderJob(spec).trainJob.spec as { trainer: { env: Array<{ name: string }> } }).trainer.env;
    expect(env.filter((e) => e.name.startsWith("CODE_GIT_"))).toEqual([
      { name: "CODE_GIT_REPO", value: "https://h/org/r.git" },
    ]);
  });

  it("passes the credentials by optional secretKeyRef, with the keys given", () => {
    const spec = normalizeJobRequest({
      ...base,
      git: { url: "https://h/r.git", branch: "dev", credentials_secret: "gh", token_key: "pat" },
    });
    const rendered = renderJob(spec);
    const env = (rendered.trainJob.spec as { trainer: { env: Array<Record<string, unknown>> } }).trainer.env;
    expect(env).toEqual(
      expect.arrayContaining([
        { name: "CODE_GIT_REVISION", value: "dev" },
        { name: "CODE_GIT_TOKEN", valueFrom: { secretKeyRef: { name: "gh", key: "pat", optional: true } } },
        { name: "CODE_GIT_PASSWORD", valueFrom: { secretKeyRef: { name: "gh", key: "password", optional: true } } },
      ]),
    );
    expect(rendered.secret).toBeUndefined();
  });

  it.each([
    [{ git: { url: "https://h/r", token: "ghp_x" } }, "git.token", /never put in the TrainJob/],
    [{ git: { revision: "main" } }, "git.url", /is required/],
    [{ git: { url: "ftp://h/r" } }, "git.url", /scheme .* got "ftp:\/\/h\/r"/],
    [{ git: { url: "https://h/r", commit: "-x" } }, "git.commit", /leading "-".* got "-x"/],
    [{ git: { url: "https://h/r", subdir: "/abs" } }, "git.subdir", /absolute/],
    [{ git: { url: "https://h/r", path: "a/../../b" } }, "git.path", /".." is not allowed/],
    [{ git: { url: "git@h:r.git", secret: "creds" } }, "git.secret", /only with an https/],
    [{ git: { url: "https://h/r", secret: "Bad_Name" } }, "git.secret", /Secret name/],
    [{ git: 42 }, "git", /repository URL or an object/],
    [{ git: "https://h/r", training_code: "print(1)" }, "git", /not both/],
  ])("refuses %j naming %s", (req, field, why) => {
    const problem = fields(req).find((p) => p.field === field);
    expect(problem?.message, JSON.stringify(fields(req))).toMatch(why);
  });
});
