/**
 * Jobs outlive their callback token: the real agent renews it with the real backend stub before it expires.
 * The stub issues 3-second tokens here; the training reports for about 6 s, so without renewal every report
 * after the third second, and `done`, would be refused with 401. On a busy machine the agent may miss the last
 * quarter of a token's life (0.75 s here): the stub then still renews the just-expired token (a grace the test
 * sets well above any scheduling delay), and the agent sends the refused report again with the new token.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStub, type Running } from "./helpers.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));

let s: Running;
beforeAll(async () => {
  s = await startStub({ tokenTtlSeconds: 3, renewGraceSeconds: 60 });
});
afterAll(async () => {
  await s.stop();
});

describe("callback token renewal", () => {
  it("a run longer than the token's life keeps reporting and its done is accepted", async () => {
    const job = await s.stub.createJob({ name: "long job" });
    const script =
      "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do " +
      'echo "::trainer::{\\"epoch\\":$i,\\"total_epochs\\":12,\\"metrics\\":{\\"loss\\":0.5}}"; sleep 0.5; done';
    const child = spawn(process.execPath, [BIN, "run", "--", "/bin/sh", "-c", script], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        BACKEND_BASE_URL: s.url,
        JOB_ID: job.id,
        CALLBACK_TOKEN: job.token,
        HEARTBEAT_INTERVAL_SECONDS: "60",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    const code = await new Promise<number | null>((r) => child.on("close", r));
    expect(code, output).toBe(0);
    expect(output).toContain("callback token renewed");
    expect(output).not.toContain('"status":401');
    expect(output).not.toContain(job.token);
    const view = await s.stub.getJob(job.id);
    expect(view?.state).toBe("SUCCEEDED");
    expect(view?.heartbeats.map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  }, 60_000);
});
