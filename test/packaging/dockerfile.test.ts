/**
 * No Docker engine runs here, so the Dockerfiles are kept honest by reading them: every one in the repository is
 * parsed and checked against the repository root as build context (COPY sources present and not .dockerignored,
 * `--from` stages defined, ARGs declared, npm scripts present), and the checker itself is shown to catch each
 * kind of mistake on small Dockerfiles in a temporary context.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_ENTRY, DEFAULT_OUTPUT, HELPER_PATH, REPO_ROOT } from "../../src/packaging/build/build-agent.ts";
import { agentAssets } from "../../src/packaging/build/assets.ts";
import { bundleAgent } from "../../src/packaging/build/bundle.ts";
import {
  checkDockerfile,
  checkRepositoryDockerfiles,
  covers,
  expandVariables,
  loadDockerContext,
  type DockerContext,
} from "../../src/packaging/dockerfile/check.ts";
import { parseDockerIgnore } from "../../src/packaging/dockerfile/ignore.ts";
import { IMAGES } from "../../src/packaging/images.ts";
import { DEFAULT_INSTALL_DIR } from "../../src/packaging/install.ts";
import { AGENT_DIR } from "../../src/submitter/spec.ts";
import { parseAllDocuments } from "yaml";
import { flag, parseDockerfile, splitWords } from "../../src/packaging/dockerfile/parse.ts";

describe("the repository's Dockerfiles", () => {
  it("pass the check: sources in the context, stages defined, ARGs declared, npm scripts present", async () => {
    const { files, problems } = await checkRepositoryDockerfiles(REPO_ROOT);
    expect(files.map((f) => f.slice(REPO_ROOT.length))).toEqual(
      expect.arrayContaining(["Dockerfile", "images/pytorch/Dockerfile", "images/tensorflow/Dockerfile"]),
    );
    expect(problems).toEqual([]);
  });

  it("agent image: builds with npm run build:agent and ships exactly the file that script writes", async () => {
    const { instructions } = parseDockerfile(await readFile(join(REPO_ROOT, "Dockerfile"), "utf8"));
    const froms = instructions.filter((i) => i.keyword === "FROM");
    expect(froms).toHaveLength(2);
    const buildStart = instructions.indexOf(froms[0]!);
    const finalStart = instructions.indexOf(froms[1]!);
    const buildStage = instructions.slice(buildStart, finalStart);
    expect(buildStage.some((i) => i.keyword === "RUN" && /\bnpm ci\b/.test(i.rest))).toBe(true);
    expect(buildStage.some((i) => i.keyword === "RUN" && /\bnpm run build:agent\b/.test(i.rest))).toBe(true);
    const workdir = buildStage.findLast((i) => i.keyword === "WORKDIR")?.rest;
    const copy = instructions.slice(finalStart).find((i) => i.keyword === "COPY" && flag(i, "from") === "build");
    expect(copy).toBeDefined();
    const [source, dest] = splitWords(copy!.rest);
    expect(source).toBe(`${workdir}/${DEFAULT_OUTPUT}`);
    expect(dest).toBe("/usr/local/bin/trainer-agent");
    const entrypoint = instructions.findLast((i) => i.keyword === "ENTRYPOINT");
    expect(entrypoint?.json).toEqual(["/usr/local/bin/trainer-agent", "install", "/opt/agent"]);
  });

  it("agent image: its build stage copies in every file the bundle and its assets are made of, .dockerignore keeps them", async () => {
    const context = await loadDockerContext(REPO_ROOT);
    const { instructions } = parseDockerfile(await readFile(join(REPO_ROOT, "Dockerfile"), "utf8"));
    const froms = instructions.filter((i) => i.keyword === "FROM");
    const buildStage = instructions.slice(instructions.indexOf(froms[0]!), instructions.indexOf(froms[1]!));
    const sources = buildStage
      .filter((i) => i.keyword === "COPY" && flag(i, "from") === undefined)
      .flatMap((i) => splitWords(i.rest).slice(0, -1))
      .map((s) => s.replace(/^\.\//, "").replace(/\/$/, ""));
    const outDir = await mkdtemp(join(tmpdir(), "bundle-inputs-"));
    try {
      const bundle = await bundleAgent(join(REPO_ROOT, AGENT_ENTRY), join(outDir, "bundle.cjs"));
      const needed = [
        ...bundle.inputs.map((p) => relative(REPO_ROOT, p)).filter((p) => !p.startsWith("node_modules/")),
        ...Object.values(await agentAssets(REPO_ROOT, join(REPO_ROOT, HELPER_PATH)))
          .map((p) => relative(REPO_ROOT, p))
          .filter((p) => !p.startsWith("node_modules/")),
        "scripts/build-agent.ts",
        "package-lock.json",
      ];
      expect(needed.length).toBeGreaterThan(20);
      const notCopied = needed.filter((file) => !sources.some((source) => covers(source, file)));
      const notSent = needed.filter((file) => !context.files.has(file));
      expect({ notCopied, notSent }).toEqual({ notCopied: [], notSent: [] });
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  });

  it.each([
    ["images/pytorch/Dockerfile", "pytorch/pytorch:2.2.2-cuda11.8-cudnn8-runtime"],
    ["images/tensorflow/Dockerfile", "tensorflow/tensorflow:2.15.0-gpu"],
  ])(
    "%s: FROM the seed image (build arg), agent from AGENT_IMAGE, helper importable, no ENTRYPOINT",
    async (path, base) => {
      const { instructions } = parseDockerfile(await readFile(join(REPO_ROOT, path), "utf8"));
      const args = instructions.filter((i) => i.keyword === "ARG").map((i) => i.rest);
      expect(args).toContain(`BASE_IMAGE=${base}`);
      expect(args).toContain("AGENT_IMAGE=astrago/trainer-agent:0.1.0");
      expect(instructions.map((i) => i.keyword === "FROM" && i.rest).filter(Boolean)).toEqual([
        "${AGENT_IMAGE} AS agent",
        "${BASE_IMAGE}",
      ]);
      const copy = instructions.find((i) => i.keyword === "COPY" && flag(i, "from") === "agent");
      expect(splitWords(copy?.rest ?? "")).toEqual(["/usr/local/bin/trainer-agent", "/usr/local/bin/trainer-agent"]);
      const run = instructions.find((i) => i.keyword === "RUN")?.rest ?? "";
      expect(run).toContain("trainer-agent helper --write");
      expect(run).toContain("import trainer_agent");
      expect(instructions.some((i) => i.keyword === "ENTRYPOINT" || i.keyword === "CMD")).toBe(false);
    },
  );
});

describe("image names", () => {
  it("every astrago/* image: of the runtimes is built here, tagged with the package version", async () => {
    const { version } = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
    const files = (await readdir(join(REPO_ROOT, "runtimes"), { recursive: true })).filter((f) => /\.ya?ml$/.test(f));
    const used = new Set<string>();
    for (const file of files) {
      const text = await readFile(join(REPO_ROOT, "runtimes", file), "utf8");
      for (const match of text.matchAll(/^\s*-?\s*image:\s*["']?(astrago\/[a-z0-9-]+)(?::([\w.-]+))?/gm)) {
        used.add(match[1]!);
        expect(Object.keys(IMAGES), `${file} uses ${match[0]}`).toContain(match[1]);
        expect(match[2], `${file} uses ${match[0]}`).toBe(version);
      }
    }
    expect([...used]).toContain("astrago/trainer-agent");
    for (const dockerfile of Object.values(IMAGES)) {
      const text = await readFile(join(REPO_ROOT, dockerfile), "utf8");
      expect(text).toMatch(/^FROM /m);
      if (dockerfile !== "Dockerfile") expect(text).toContain(`ARG AGENT_IMAGE=astrago/trainer-agent:${version}`);
    }
  });
});

describe("runtimes and the agent image agree", () => {
  it("each init container of astrago/trainer-agent runs the image's install into the volume the node mounts", async () => {
    const { instructions } = parseDockerfile(await readFile(join(REPO_ROOT, "Dockerfile"), "utf8"));
    const entrypoint = instructions.findLast((i) => i.keyword === "ENTRYPOINT")?.json ?? [];
    const [, ...installArgs] = entrypoint;
    const installDir = installArgs.at(-1)!;
    expect(installDir).toBe(DEFAULT_INSTALL_DIR);
    expect(AGENT_DIR).toBe(DEFAULT_INSTALL_DIR); // where trainjob's rendered pods expect the agent
    const files = (await readdir(join(REPO_ROOT, "runtimes"), { recursive: true })).filter((f) => /\.ya?ml$/.test(f));
    let seen = 0;
    for (const file of files) {
      for (const doc of parseAllDocuments(await readFile(join(REPO_ROOT, "runtimes", file), "utf8"))) {
        for (const pod of podSpecs(doc.toJS())) {
          for (const init of pod.initContainers ?? []) {
            if (!init.image?.startsWith("astrago/trainer-agent:")) continue;
            seen++;
            // no command: the image's ENTRYPOINT; a command: the same program (by name, on PATH) and arguments
            if (init.command !== undefined) {
              expect(init.command[0]?.split("/").at(-1), file).toBe("trainer-agent");
              expect([...init.command.slice(1), ...(init.args ?? [])], file).toEqual(installArgs);
            }
            const volume = init.volumeMounts?.find((m) => m.mountPath === installDir)?.name;
            expect(volume, `${file}: init container mounts ${installDir}`).toBeDefined();
            for (const container of pod.containers ?? []) {
              if (container.command?.[0]?.startsWith(`${installDir}/`)) {
                expect(container.volumeMounts, file).toContainEqual({ name: volume, mountPath: installDir });
              }
            }
          }
        }
      }
    }
    expect(seen).toBeGreaterThanOrEqual(2); // pytorch and tensorflow
  });
});

interface ContainerSpec {
  image?: string;
  command?: string[];
  args?: string[];
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodSpec {
  initContainers?: ContainerSpec[];
  containers?: ContainerSpec[];
}

/** Every object with a `containers` array, wherever the runtime nests its pod templates. */
function podSpecs(value: unknown, found: PodSpec[] = []): PodSpec[] {
  if (Array.isArray(value)) for (const v of value) podSpecs(v, found);
  else if (typeof value === "object" && value !== null) {
    if (Array.isArray((value as PodSpec).containers)) found.push(value as PodSpec);
    for (const v of Object.values(value)) podSpecs(v, found);
  }
  return found;
}

describe("the checker catches what a docker build would trip on", () => {
  let root: string;
  let context: DockerContext;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "dockerfile-check-"));
    const files: Record<string, string> = {
      "package.json": JSON.stringify({ scripts: { "build:agent": "node build.js" } }),
      "package-lock.json": "{}",
      "src/main.ts": "",
      "src/secret.env": "TOKEN=x",
      "docs/readme.md": "",
      "node_modules/x/index.js": "",
    };
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), text);
    }
    await writeFile(join(root, ".dockerignore"), "node_modules\ndocs/\n**/*.env\n");
    context = await loadDockerContext(root);
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const check = (text: string): string[] =>
    checkDockerfile(join(root, "Dockerfile"), text, context).map((p) => `${p.line}: ${p.message}`);

  it("accepts a correct multi-stage file with ARG-named images, continuations and a heredoc", () => {
    const text = [
      "# syntax=docker/dockerfile:1",
      "ARG BASE=node:24-slim",
      "ARG AGENT_IMAGE",
      "FROM ${BASE} AS build",
      "WORKDIR /src",
      "COPY package.json package-lock.json ./",
      "RUN --mount=type=cache,target=/root/.npm \\",
      "    # a comment inside a continuation",
      "    npm ci",
      "COPY src ./src",
      "COPY ./src/*.ts /tmp/",
      "RUN <<EOF",
      "npm run build:agent",
      "EOF",
      "FROM $AGENT_IMAGE AS agent",
      "FROM debian:bookworm-slim",
      "ARG VERSION=1",
      'ENV APP_HOME=/app PATH="/app/bin:$PATH"',
      'LABEL version="${VERSION}"',
      "WORKDIR $APP_HOME",
      "COPY --from=build /src/dist/app /app/bin/app",
      "COPY --from=agent /usr/local/bin/trainer-agent /app/bin/",
      "COPY --from=0 /src/package.json /app/",
      'ENTRYPOINT ["/app/bin/app"]',
    ].join("\n");
    // PATH is not declared: ENV PATH=...$PATH uses the base image's PATH, which the builder does know.
    expect(check(text)).toEqual([expect.stringContaining("${PATH}")]);
  });

  it.each([
    ["a missing COPY source", "FROM a:1\nCOPY lib ./lib", /2: COPY: source "lib" does not exist/],
    ["a source .dockerignore drops", "FROM a:1\nCOPY docs/readme.md /x", /exists but \.dockerignore leaves it out/],
    ["an ignored file pattern", "FROM a:1\nCOPY src/secret.env /x", /\.dockerignore leaves it out/],
    ["a glob matching nothing", "FROM a:1\nCOPY src/*.py /x/", /no file of the build context matches "src\/\*\.py"/],
    ["a path outside the context", "FROM a:1\nCOPY ../etc/passwd /x", /outside the build context/],
    [
      "an unknown --from stage",
      "FROM a:1 AS build\nFROM b:1\nCOPY --from=bulid /x /x",
      /"bulid" is neither an earlier stage/,
    ],
    [
      "a --from of a later stage",
      "FROM a:1 AS one\nCOPY --from=two /x /x\nFROM b:1 AS two",
      /"two" is this stage or a later one/,
    ],
    ["a --from stage index ahead", "FROM a:1\nCOPY --from=1 /x /x\nFROM b:1", /stage index 1 is not an earlier stage/],
    ["an undeclared ARG in FROM", "FROM ${BASE_IMAGE}", /uses \$\{BASE_IMAGE\}, which no ARG or ENV declares/],
    ["a global ARG not redeclared in the stage", "ARG V=1\nFROM a:1\nLABEL v=$V", /3: LABEL: uses \$\{V\}/],
    ["an undeclared ARG in --from", "FROM a:1\nCOPY --from=${AGENT} /x /x", /uses \$\{AGENT\}/],
    ["a missing npm script", "FROM a:1\nCOPY package*.json ./\nRUN npm ci && npm run build", /no "build" script/],
    [
      "npm ci before the lock file",
      "FROM a:1\nCOPY package.json ./\nRUN npm ci",
      /before any COPY brings package-lock\.json/,
    ],
    ["a broken exec form", "FROM a:1\nENTRYPOINT [\"app\", 'x']", /not a JSON array of strings/],
    ["a duplicate stage name", "FROM a:1 AS x\nFROM b:1 AS x", /stage name "x" is used twice/],
    ["an instruction before FROM", "RUN true\nFROM a:1", /1: RUN: comes before the first FROM/],
    ["a file with no FROM", "ARG X=1", /no FROM/],
  ])("reports %s", (_what, text, expected) => {
    const problems = check(text);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  it("honours the escape directive and keeps an image tag that names no stage", () => {
    const text = "# escape=`\nFROM a:1\nRUN echo one `\n  two\nCOPY --from=busybox:1.36 /bin/busybox /bin/";
    const parsed = parseDockerfile(text);
    expect(parsed.escape).toBe("`");
    expect(parsed.instructions[1]?.rest).toBe("echo one    two");
    expect(check(text)).toEqual([]);
  });
});

describe(".dockerignore matching", () => {
  const ignore = parseDockerIgnore(
    ["# comment", "*", "!package.json", "!src/", "src/**/*.test.ts", "!python/helper.py", "**/__pycache__", ""].join(
      "\n",
    ),
  );
  it.each([
    ["package.json", false],
    ["package-lock.json", true],
    ["src/cli/main.ts", false],
    ["src/cli/main.test.ts", true],
    ["src/main.test.ts", true],
    ["python/helper.py", false],
    ["python/other.py", true],
    ["src/__pycache__/x.pyc", true],
    ["node_modules/a/index.js", true],
    ["./package.json", false],
  ])("%s ignored: %s", (path, ignored) => {
    expect(ignore.ignores(path)).toBe(ignored);
  });
});

describe("variable expansion", () => {
  const vars = new Map<string, string | undefined>([
    ["A", "x"],
    ["EMPTY", ""],
    ["NODEF", undefined],
  ]);
  it.each([
    ["$A/b", "x/b"],
    ["${A}b", "xb"],
    ["${EMPTY:-d}", "d"],
    ["${A:+set}", "set"],
    ["\\$A", "$A"],
    ["${NODEF}", undefined],
  ])("%s expands to %s", (text, expected) => {
    expect(expandVariables(text, vars, () => {})).toBe(expected);
  });

  it("reports an undeclared name", () => {
    const seen: string[] = [];
    expandVariables("${A}-$MISSING", vars, (name) => seen.push(name));
    expect(seen).toEqual(["MISSING"]);
  });
});
