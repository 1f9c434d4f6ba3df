/**
 * Issue 15's fault suite: real `trainer-agent run` processes (with a small Python training that prints
 * ::trainer:: reports) against the real backend stub over HTTP, with a fault-injecting proxy in front where the
 * row needs one. Each row asserts that the backend ends with every epoch 1..N exactly once, every event, nothing
 * lost or counted as dropped, and the right final state; the suite prints one table at its end.
 *
 * No sleeps and no timing margins: the training's epochs are gated by files the test creates once a condition
 * holds (the stub has epoch 2, the proxy saw the agent fail, a token expired); deadlines (DONE_DEADLINE_SECONDS,
 * CALLBACK_RETRY_MAX_SECONDS) are short only so that a broken guarantee fails fast.
 */
import { writeFileSync } from "node:fs";
import jwt from "jsonwebtoken";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SECRET, startStub } from "../backend-stub/helpers.ts";
import { startFaultProxy, type Fault, type FaultProxy } from "./fault-proxy.ts";
import { check, fetchJob, printTable, scratch, startAgent, startStubProcess, until, type Agent } from "./harness.ts";

const EPOCHS = 5;
const ALL = [...Array.from({ length: EPOCHS }, (_, i) => `go-${i + 1}`), "go-exit"];

afterAll(() => printTable());

/** The agent's environment for a job behind the proxy: gated epochs, the first pod's checkpoint folder. */
function agentEnv(
  url: string,
  job: { id: string; token: string },
  dir: { dir: string; gate: string },
): Record<string, string> {
  return {
    BACKEND_BASE_URL: url,
    JOB_ID: job.id,
    CALLBACK_TOKEN: job.token,
    EPOCHS: String(EPOCHS),
    GATE_DIR: dir.gate,
    CHECKPOINT_DIR: join(dir.dir, "pod-0"),
  };
}

/** One row's world: a stub, a proxy in front of it, a job, a scratch dir. */
async function world(options: Parameters<typeof startStub>[0] = {}, job: { max_restarts?: number } = {}) {
  const stub = await startStub(options);
  const proxy = await startFaultProxy(stub.url);
  const created = await stub.stub.createJob(job);
  const dir = await scratch();
  const env = (extra: Record<string, string> = {}) => ({ ...agentEnv(proxy.url, created, dir), ...extra });
  return {
    stub,
    proxy,
    job: created,
    dir,
    env,
    view: () => fetchJob(stub.url, created.id),
    async heartbeatOf(epoch: number) {
      return (await fetchJob(stub.url, created.id)).heartbeats.some((h) => h.epoch === epoch);
    },
    async close(agents: Agent[] = []) {
      for (const a of agents) a.kill();
      await proxy.close();
      await stub.stop();
      await dir.cleanup();
    },
  };
}

type World = Awaited<ReturnType<typeof world>>;

async function finish(w: World, agent: Agent): Promise<void> {
  const code = await agent.exited;
  expect(code, agent.stderr()).toBe(0);
}

/**
 * The shape of most rows: open the first gates, start one agent, let `during` drive the fault, wait for the
 * agent's clean exit, let `after` check what is particular to the row, then the common checks.
 */
async function runRow(
  fault: string,
  w: World,
  gates: string[],
  during: (agent: Agent) => Promise<void>,
  options: { env?: Record<string, string>; after?: (agent: Agent) => void } = {},
): Promise<void> {
  await w.dir.open(...gates);
  const agent = startAgent(w.env(options.env));
  try {
    await during(agent);
    await finish(w, agent);
    options.after?.(agent);
    check(fault, await w.view(), [agent], { epochs: EPOCHS, state: "SUCCEEDED" });
  } finally {
    await w.close([agent]);
  }
}

const failedAttempts = (proxy: FaultProxy, pred: (path: string) => boolean = () => true) =>
  proxy.seen.filter((s) => s.fault !== "pass" && pred(s.path)).length;

// Generous per-row limits: they only turn a hang into a failure; nothing waits for them on a working agent.
describe("nothing the training reports is lost", { timeout: 90_000 }, () => {
  it("backend down at start", async () => {
    const w = await world();
    await w.proxy.down();
    // The whole run happens while the backend is down; it comes back while the agent winds down.
    await runRow("backend down at start", w, ALL, async () => {
      await until("the training to finish", () => w.dir.did(EPOCHS));
      await w.proxy.up();
    });
  });

  it("backend down mid-run", async () => {
    const w = await world();
    await runRow("backend down mid-run", w, ["go-1", "go-2"], async () => {
      await until("epoch 2 at the stub", () => w.heartbeatOf(2));
      w.proxy.rule = () => "reset";
      await w.dir.open("go-3", "go-4");
      await until("the agent to fail twice", () => w.dir.did(4) && failedAttempts(w.proxy) >= 2);
      w.proxy.rule = () => "pass";
      await w.dir.open("go-5", "go-exit");
    });
  });

  it("backend down at done", async () => {
    const w = await world();
    await runRow("backend down at done", w, ALL.slice(0, EPOCHS), async () => {
      await until(`epoch ${EPOCHS} at the stub`, () => w.heartbeatOf(EPOCHS));
      w.proxy.rule = () => "reset";
      await w.dir.open("go-exit");
      await until("a refused done", () => failedAttempts(w.proxy, (p) => p.endsWith("/done")) >= 1);
      w.proxy.rule = () => "pass";
    });
  });

  it.each([
    { fault: "500 for the first 6 requests", times: 6, answer: { status: 500 } },
    { fault: "429 Retry-After: 1 (x2)", times: 2, answer: { status: 429, retryAfter: "1" } },
    { fault: "accepts and never answers (x3)", times: 3, answer: "hang" },
  ] as { fault: string; times: number; answer: Fault }[])("$fault", async ({ fault, times, answer }) => {
    const w = await world();
    w.proxy.rule = ({ n }) => (n <= times ? answer : "pass");
    await runRow(fault, w, ALL, async () => {}, { after: () => expect(failedAttempts(w.proxy)).toBe(times) });
  });

  it("a token that expires mid-run (3 s tokens)", async () => {
    const w = await world({ tokenTtlSeconds: 3, renewGraceSeconds: 60 });
    const during = async () => {
      await until("epoch 2 at the stub", () => w.heartbeatOf(2));
      await until("the first token to expire", () => Date.now() > Date.parse(w.job.expires_at), 10_000);
      await w.dir.open(...ALL.slice(2));
    };
    await runRow("token expires mid-run", w, ["go-1", "go-2"], during, {
      after: (agent) => {
        expect(agent.stderr()).toContain("callback token renewed");
        expect(agent.stderr()).not.toContain(w.job.token);
      },
    });
  });

  it("a rotated token file", async () => {
    // A backend that does not renew tokens (404): only the rotated file can carry the reports on once the first
    // token expired. The operator rotates the Secret while the agent's first request with the expired token is on
    // its way (whenever that is: the agent may start after the 3 s are over on a busy machine).
    const w = await world({ tokenTtlSeconds: 3 });
    const file = join(w.dir.dir, "token");
    writeFileSync(file, `${w.job.token}\n`);
    const expired = () => Date.now() >= Date.parse(w.job.expires_at);
    let rotated = false;
    w.proxy.rule = ({ path, authorization }) => {
      if (path.endsWith("/token")) return { status: 404 };
      if (!rotated && authorization === `Bearer ${w.job.token}` && expired()) {
        rotated = true;
        const iat = Math.floor(Date.now() / 1000);
        writeFileSync(file, `${jwt.sign({ job_id: w.job.id, iat, exp: iat + 3600 }, SECRET)}\n`);
      }
      return "pass";
    };
    const during = async () => {
      await until("the first token to expire", expired, 10_000);
      await w.dir.open(...ALL.slice(2));
    };
    await runRow("rotated token file", w, ["go-1", "go-2"], during, {
      env: { CALLBACK_TOKEN: "", CALLBACK_TOKEN_FILE: file },
      after: (agent) => {
        expect(rotated).toBe(true);
        expect(w.proxy.seen.filter((s) => s.upstream === 401)).toHaveLength(1);
        expect(agent.stderr()).not.toContain("backend rejected");
      },
    });
  });

  it("agent SIGKILLed mid-epoch, started again as attempt 1 from the checkpoint", async () => {
    const w = await world({}, { max_restarts: 3 });
    const storage = { STORAGE_PATH: join(w.dir.dir, "bucket") };
    await w.dir.open("go-1", "go-2");
    const first = startAgent(w.env(storage));
    let second: Agent | undefined;
    try {
      await until("epoch 2 and its checkpoint at the stub", async () => {
        const v = await w.view();
        return (
          v.heartbeats.some((h) => h.epoch === 2) &&
          v.events.some((e) => e.type === "checkpoint_uploaded" && (e.message ?? "").includes("epoch-2"))
        );
      });
      first.kill(); // mid-epoch: epoch 3 waits for its gate
      await first.exited;
      const beforeKill = await w.view();
      const extraSent = beforeKill.heartbeats.length + beforeKill.events.length;
      // A new pod: JobSet's next restart attempt, an empty checkpoint directory, the checkpoint in the bucket.
      second = startAgent(
        w.env({ ...storage, JOBSET_RESTART_ATTEMPT: "1", CHECKPOINT_DIR: join(w.dir.dir, "pod-1"), GATE_DIR: "" }),
      );
      await finish(w, second);
      const view = await w.view();
      expect(view.events.filter((e) => e.attempt === 1).map((e) => e.type)).toContain("checkpoint_restored");
      expect(view.heartbeats.filter((h) => h.attempt === 1).map((h) => h.epoch)).toEqual([3, 4, 5]);
      expect(view.attempts.map((a) => [a.attempt, a.status])).toEqual([
        [0, "superseded"],
        [1, "succeeded"],
      ]);
      check("agent SIGKILLed, attempt 1 resumes", view, [first, second], {
        epochs: EPOCHS,
        state: "SUCCEEDED",
        extraSent,
      });
    } finally {
      await w.close(second === undefined ? [first] : [first, second]);
    }
  });

  it("restart budget spent: 3 failed attempts end FAILED with the last reason", async () => {
    const w = await world({}, { max_restarts: 2 });
    const storage = { STORAGE_PATH: join(w.dir.dir, "bucket"), GATE_DIR: "" };
    const agents: Agent[] = [];
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const agent = startAgent(
          w.env({
            ...storage,
            JOBSET_RESTART_ATTEMPT: String(attempt),
            CHECKPOINT_DIR: join(w.dir.dir, `pod-${attempt}`),
            FAIL_AFTER_EPOCH: String(attempt + 1),
          }),
        );
        agents.push(agent);
        expect(await agent.exited).toBe(3);
        const view = await w.view();
        expect(view.state).toBe(attempt < 2 ? "RUNNING" : "FAILED");
      }
      const view = await w.view();
      expect(view.done).toMatchObject({ status: "failed", exit_code: 3, attempt: 2 });
      expect(view.done?.log_tail).toContain("boom at epoch 3");
      expect(view.attempts.map((a) => a.status)).toEqual(["failed", "failed", "failed"]);
      check("3 failed attempts (max_restarts 2)", view, agents, { epochs: 3, state: "FAILED" });
    } finally {
      await w.close(agents);
    }
  });

  it("the stub killed and restarted mid-job (journal)", async () => {
    const dir = await scratch();
    const dataDir = join(dir.dir, "journal");
    let stub = await startStubProcess(dataDir, SECRET);
    const proxy = await startFaultProxy(stub.url);
    const created = (await (await fetch(`${stub.url}/v1/jobs`, { method: "POST" })).json()) as {
      id: string;
      token: string;
    };
    await dir.open("go-1", "go-2");
    const agent = startAgent(agentEnv(proxy.url, created, dir));
    try {
      await until("epoch 2 at the stub", async () =>
        (await fetchJob(stub.url, created.id)).heartbeats.some((h) => h.epoch === 2),
      );
      await stub.kill();
      await dir.open("go-3", "go-4");
      await until(
        "the agent to find the stub gone",
        () => dir.did(4) && proxy.seen.some((s) => s.upstream === "unreachable"),
      );
      stub = await startStubProcess(dataDir, SECRET);
      proxy.upstream = stub.url;
      await dir.open("go-5", "go-exit");
      expect(await agent.exited, agent.stderr()).toBe(0);
      check("stub killed and restarted", await fetchJob(stub.url, created.id), [agent], {
        epochs: EPOCHS,
        state: "SUCCEEDED",
      });
    } finally {
      agent.kill();
      await proxy.close();
      await stub.kill();
      await dir.cleanup();
    }
  });
});
