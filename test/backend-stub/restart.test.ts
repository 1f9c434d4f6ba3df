/**
 * The stub as a real process (`node backend-stub/src/main.ts`, what `npm run backend` runs), killed with SIGKILL
 * while reports are in flight and started again on the same data dir: every report it acknowledged is still
 * there, retries of acknowledged reports are not applied twice, and the state machine carries on.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { callbackPath } from "../../src/contract/index.ts";
import { SECRET, call, doneBody, eventBody, heartbeatBody } from "./helpers.ts";

const MAIN = path.resolve("backend-stub/src/main.ts");

interface Proc {
  child: ChildProcess;
  url: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

const children = new Set<ChildProcess>();

/** Starts main.ts and resolves once it logs its URL (or rejects with its stderr when it exits first). */
function startProcess(env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? "", BACKEND_PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let out = "";
  let err = "";
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return new Promise<Proc>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m) resolve({ child, url: m[1]!, stdout: () => out, stderr: () => err, exited });
    });
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
    void exited.then((code) => reject(new Error(`stub exited with ${code} before listening: ${err}`)));
  });
}

async function kill(proc: Proc): Promise<void> {
  proc.child.kill("SIGKILL");
  await proc.exited;
}

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "backend-restart-"));
});
afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("kill -9 and restart", () => {
  it("loses no acknowledged report, applies retries once, and keeps the state machine", async () => {
    const env = { BACKEND_DATA_DIR: dataDir, CALLBACK_JWT_SECRET: SECRET };
    const first = await startProcess(env);
    const created = await call(first.url, "POST", "/v1/jobs", { body: { id: "crash-1", name: "crash test" } });
    expect(created.status).toBe(201);
    const token = created.body.token as string;
    const started = await call(first.url, "POST", callbackPath("crash-1", "event"), {
      token,
      body: eventBody("crash-1", "started"),
      headers: { "idempotency-key": "ev-started" },
    });
    expect(started.body.state).toBe("RUNNING");

    // 16 senders post heartbeats as fast as they can; the stub is killed once 150 have been acknowledged.
    const TOTAL = 400;
    const acked = new Set<number>();
    let next = 0;
    let killed = false;
    const body = (step: number) =>
      heartbeatBody("crash-1", { step, epoch: Math.floor(step / 10), metrics: { loss: 1 / (step + 1) } });
    const sender = async (): Promise<void> => {
      while (next < TOTAL && !killed) {
        const step = next++;
        try {
          const res = await call(first.url, "POST", callbackPath("crash-1", "heartbeat"), {
            token,
            body: body(step),
            headers: { "idempotency-key": `hb-${step}` },
          });
          if (res.status === 200) acked.add(step);
          if (acked.size >= 150 && !killed) {
            killed = true;
            first.child.kill("SIGKILL");
          }
        } catch {
          // in flight when the process died: not acknowledged, so the agent would retry it
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, sender));
    await first.exited;
    expect(killed).toBe(true);
    expect(acked.size).toBeGreaterThanOrEqual(150);

    const second = await startProcess(env);
    const view = (await call(second.url, "GET", "/v1/jobs/crash-1")).body;
    expect(view.state).toBe("RUNNING");
    expect(view.events.map((e: { type: string }) => e.type)).toEqual(["started"]);
    const steps = new Set<number>(view.heartbeats.map((h: { step: number }) => h.step));
    for (const step of acked) expect(steps.has(step), `acknowledged heartbeat ${step} survived`).toBe(true);
    expect(steps.size).toBe(view.heartbeats.length); // nothing doubled

    // The agent retries everything it sent (same keys): acknowledged ones are answered again, not re-applied.
    for (let step = 0; step < TOTAL; step++) {
      const res = await call(second.url, "POST", callbackPath("crash-1", "heartbeat"), {
        token,
        body: body(step),
        headers: { "idempotency-key": `hb-${step}` },
      });
      expect(res.status).toBe(200);
      if (acked.has(step)) expect(res.headers.get("idempotent-replayed")).toBe("true");
    }
    const retried = (await call(second.url, "GET", "/v1/jobs/crash-1")).body;
    expect(retried.heartbeats).toHaveLength(TOTAL);
    expect(new Set(retried.heartbeats.map((h: { step: number }) => h.step)).size).toBe(TOTAL);

    const done = await call(second.url, "POST", callbackPath("crash-1", "done"), {
      token,
      body: doneBody("crash-1"),
      headers: { "idempotency-key": "done-1" },
    });
    expect(done.body.state).toBe("SUCCEEDED");
    await kill(second);

    const third = await startProcess(env);
    const final = (await call(third.url, "GET", "/v1/jobs/crash-1")).body;
    expect(final.state).toBe("SUCCEEDED");
    expect(final.heartbeats).toHaveLength(TOTAL);
    expect(final.transitions.map((t: { to: string }) => t.to)).toEqual(["PENDING", "RUNNING", "SUCCEEDED"]);
    const lateRetry = await call(third.url, "POST", callbackPath("crash-1", "done"), {
      token,
      body: doneBody("crash-1"),
      headers: { "idempotency-key": "done-1" },
    });
    expect(lateRetry).toMatchObject({ status: 200, body: { state: "SUCCEEDED" } });
    const late = await call(third.url, "POST", callbackPath("crash-1", "heartbeat"), { token, body: body(1) });
    expect(late.status).toBe(409);

    // Tokens and the secret never reach the logs.
    for (const proc of [first, second, third]) {
      expect(proc.stdout() + proc.stderr()).not.toContain(token);
      expect(proc.stdout() + proc.stderr()).not.toContain(SECRET);
    }
    await kill(third);
  }, 60_000);
});

describe("main.ts configuration", () => {
  it("names the bad variable and exits 78", async () => {
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? "", BACKEND_PORT: "eighty", BACKEND_TOKEN_TTL_SECONDS: "-1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(78);
    expect(err).toContain('BACKEND_PORT must be a TCP port from 0 to 65535, got "eighty"');
    expect(err).toContain("BACKEND_TOKEN_TTL_SECONDS");
  });

  it("beyond loopback without BACKEND_ADMIN_TOKEN: refuses to start unless told to run open", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "backend-open-"));
    try {
      const env = { PATH: process.env.PATH ?? "", BACKEND_PORT: "0", BACKEND_HOST: "0.0.0.0", BACKEND_DATA_DIR: dir };
      const child = spawn(process.execPath, [MAIN], { env, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.on("data", (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      expect(code).toBe(78);
      expect(err).toContain("BACKEND_HOST=0.0.0.0 listens beyond loopback: set BACKEND_ADMIN_TOKEN");
      const open = await startProcess({
        BACKEND_HOST: "0.0.0.0",
        BACKEND_INSECURE_NO_AUTH: "1",
        BACKEND_DATA_DIR: dir,
      });
      expect(open.url).toMatch(/^http:\/\//);
      await kill(open);
      const guarded = await startProcess({
        BACKEND_HOST: "0.0.0.0",
        BACKEND_ADMIN_TOKEN: "t0ken",
        BACKEND_DATA_DIR: dir,
      });
      await kill(guarded);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("without CALLBACK_JWT_SECRET generates one, prints it once, and reuses it after a restart", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "backend-secret-"));
    try {
      const first = await startProcess({ BACKEND_DATA_DIR: dir });
      const printed = /CALLBACK_JWT_SECRET=(\S+)/.exec(first.stderr())?.[1];
      expect(printed).toBeDefined();
      expect(first.stdout()).not.toContain(printed!);
      const job = await call(first.url, "POST", "/v1/jobs", { body: { id: "s1" } });
      await kill(first);
      const second = await startProcess({ BACKEND_DATA_DIR: dir });
      expect(second.stderr()).not.toContain(printed!);
      const hb = await call(second.url, "POST", callbackPath("s1", "heartbeat"), {
        token: job.body.token,
        body: heartbeatBody("s1"),
      });
      expect(hb.status).toBe(200);
      await kill(second);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
