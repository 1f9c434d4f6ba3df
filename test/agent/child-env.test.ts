import { describe, expect, it } from "vitest";
import { loadAgentConfig } from "../../src/config/index.ts";
import { childEnv, STRIPPED_FROM_CHILD } from "../../src/agent/child-env.ts";

const trace = { traceId: "t-1", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };
const config = (pod: Record<string, string>) => loadAgentConfig({ DATASET_DIR: "/d", CHECKPOINT_DIR: "/c", ...pod });

describe("childEnv: one precedence order", () => {
  it.each<
    [string, Record<string, string>, Record<string, string>, string | undefined, Record<string, string | undefined>]
  >([
    [
      "the pod's variables pass through",
      { HOME: "/root", MY_FLAG: "1" },
      {},
      undefined,
      { HOME: "/root", MY_FLAG: "1" },
    ],
    [
      "the callback token never reaches the child",
      { CALLBACK_TOKEN: "jwt" },
      {},
      undefined,
      { CALLBACK_TOKEN: undefined },
    ],
    [
      "the agent's common variables win over the pod's",
      { TRACE_ID: "pod-trace", PYTHONUNBUFFERED: "0" },
      {},
      undefined,
      { DATASET_DIR: "/d", CHECKPOINT_DIR: "/c", TRACE_ID: "t-1", PYTHONUNBUFFERED: "1" },
    ],
    [
      "the plugin's translation wins over the pod's",
      { RANK: "5" },
      { RANK: "0", WORLD_SIZE: "2" },
      undefined,
      { RANK: "0", WORLD_SIZE: "2" },
    ],
    [
      "the plugin's translation wins over the common variables",
      {},
      { PYTHONUNBUFFERED: "x" },
      undefined,
      { PYTHONUNBUFFERED: "x" },
    ],
    [
      "no restored checkpoint: the pod's RESUME_FROM stays",
      { RESUME_FROM: "/old" },
      {},
      undefined,
      { RESUME_FROM: "/old" },
    ],
    [
      "a restored checkpoint wins over the pod and the plugin",
      { RESUME_FROM: "/old" },
      { RESUME_FROM: "/p" },
      "/c/ckpt-3",
      { RESUME_FROM: "/c/ckpt-3" },
    ],
    [
      "the agent's markers win over everything",
      { TRACEPARENT: `00-${"1".repeat(32)}-${"2".repeat(16)}-01`, ASTRAGO_AGENT: "0" },
      { TRACEPARENT: "00-plugin", ASTRAGO_AGENT: "2" },
      undefined,
      { TRACEPARENT: trace.traceparent, ASTRAGO_AGENT: "1" },
    ],
  ])("%s", (_name, pod, translated, resumeFrom, expected) => {
    const env = childEnv({ config: config(pod), trace, translated, resumeFrom });
    for (const [name, value] of Object.entries(expected)) expect(env[name], name).toBe(value);
  });

  it("strips every name of STRIPPED_FROM_CHILD, whatever the layer below", () => {
    const pod = Object.fromEntries(STRIPPED_FROM_CHILD.map((n) => [n, "secret"]));
    // The git credentials are read only with a repository to fetch.
    const env = childEnv({
      config: config({ ...pod, CODE_GIT_REPO: "https://example.com/r.git" }),
      trace,
      translated: {},
    });
    for (const name of STRIPPED_FROM_CHILD) expect(env).not.toHaveProperty(name);
  });
});
