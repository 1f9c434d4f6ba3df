/**
 * Rank 0's progress to Kubeflow Trainer's status server, against a real HTTPS server on 127.0.0.1 with its own CA
 * (made with openssl for this test file) that plays pkg/statusserver: it checks the bearer token, validates the body
 * against the TrainJob CRD's status.trainerStatus schema (through the CRD helper) and answers as the real one does
 * (200, or metav1.Status 403 / 422 / 404).
 */
import { execFile } from "node:child_process";
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createTrainerStatusReporter,
  trainerStatusBody,
  type TrainerStatusReporter,
} from "../../src/progress/trainer-status.ts";
import { capturingLogger } from "../log/capture.ts";
import { loadCrd } from "../submitter/helpers/crd.ts";

const run = promisify(execFile);
const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const TRAIN_SH = fileURLToPath(new URL("../fixtures/children/train.sh", import.meta.url));
const STATUS_PATH = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs/mnist/status";
const GOOD = "projected-token-1";

let dir: string;
let serverKey: string;
let serverCert: string;
const crd = loadCrd("trainer.kubeflow.org_trainjobs.yaml");

/** A CA and a server certificate for 127.0.0.1 signed by it: what the Trainer's cert manager makes in a cluster. */
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "trainer-status-"));
  const f = (n: string) => path.join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run(
    "openssl",
    ["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "1"].concat([
      "-subj",
      "/CN=test-trainer-ca",
    ]),
  );
  await run("openssl", ["req", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1"]);
  await writeFile(f("ext"), "subjectAltName=IP:127.0.0.1\n");
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    f("ca.crt"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-out",
    f("server.crt"),
    "-days",
    "1",
    "-extfile",
    f("ext"),
  ]);
  serverKey = await readFile(f("server.key"), "utf8");
  serverCert = await readFile(f("server.crt"), "utf8");
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Received {
  at: number;
  authorization: string | undefined;
  body: unknown;
  status: number;
}

interface StatusServer {
  url: string;
  received: Received[];
  /** Token the server accepts (the projected token's audience check, reduced to equality). */
  token: string;
  /** Answer 404 from now on (the TrainJob is gone). */
  gone: boolean;
  close(): Promise<void>;
}

const servers: StatusServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

function statusReply(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

/** What the body's trainerStatus must be: the CRD's schema (by way of a whole TrainJob) and its CEL rule. */
function invalidities(body: unknown): string[] {
  const b = body as { trainerStatus?: Record<string, unknown> } | null;
  if (typeof b !== "object" || b === null || typeof b.trainerStatus !== "object") return ["trainerStatus: required"];
  const doc = {
    apiVersion: "trainer.kubeflow.org/v1alpha1",
    kind: "TrainJob",
    metadata: { name: "mnist" },
    spec: { runtimeRef: { name: "torch-distributed" } },
    status: { trainerStatus: b.trainerStatus },
  };
  const errors = crd.validate(doc);
  if (b.trainerStatus.lastUpdatedTime === undefined)
    errors.push("lastUpdatedTime is required when trainerStatus is present");
  return errors;
}

async function startStatusServer(): Promise<StatusServer> {
  const received: Received[] = [];
  const state = { token: GOOD, gone: false };
  const server: Server = createServer({ key: serverKey, cert: serverCert }, (req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (raw += d));
    req.on("end", () => {
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
      const answer = (code: number, text: string): void => {
        received.push({ at: Date.now(), authorization: req.headers.authorization, body, status: code });
        res.writeHead(code, { "content-type": "application/json" }).end(text);
      };
      if (req.method !== "POST" || req.url !== STATUS_PATH)
        return answer(404, statusReply(404, "NotFound", "no route"));
      if (req.headers.authorization !== `Bearer ${state.token}`)
        return answer(403, statusReply(403, "Forbidden", "token is not valid for this TrainJob"));
      if (state.gone)
        return answer(404, statusReply(404, "NotFound", 'trainjobs.trainer.kubeflow.org "mnist" not found'));
      const problems = invalidities(body);
      if (problems.length > 0) return answer(422, statusReply(422, "Invalid", problems.join("; ")));
      answer(200, raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const s: StatusServer = {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}${STATUS_PATH}`,
    received,
    get token() {
      return state.token;
    },
    set token(t: string) {
      state.token = t;
    },
    get gone() {
      return state.gone;
    },
    set gone(g: boolean) {
      state.gone = g;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(s);
  return s;
}

async function reporter(
  url: string,
  token: string,
  minIntervalMs: number,
): Promise<{ r: TrainerStatusReporter; tokenFile: string; warnings: () => string[] }> {
  const tokenFile = path.join(dir, `token-${Math.random().toString(36).slice(2)}`);
  await writeFile(tokenFile, `${token}\n`);
  const { logger, warnings } = await capturingLogger();
  const r = createTrainerStatusReporter({
    config: { url: new URL(url), caCertFile: path.join(dir, "ca.crt"), tokenFile },
    logger,
    minIntervalMs,
  });
  return { r, tokenFile, warnings };
}

const POLL = { timeout: 15_000, interval: 20 };
const epoch = (n: number, total = 10) => ({
  epoch: n,
  total_epochs: total,
  progress: n / total,
  eta_seconds: 60 * (total - n),
  metrics: { loss: 1 / n },
});

describe("trainer status reporter", () => {
  it("posts trainerStatus over TLS with the CA file and the bearer token; one request per interval plus a final one", async () => {
    const s = await startStatusServer();
    const { r, warnings } = await reporter(s.url, GOOD, 60_000);
    for (let n = 1; n <= 10; n++) r.report(epoch(n));
    await expect.poll(() => s.received.length, POLL).toBe(1);
    await r.close({ complete: true });
    expect(s.received.map((q) => q.status)).toEqual([200, 200]); // the 2..9 states were replaced, never sent
    expect(s.received[0]!.authorization).toBe(`Bearer ${GOOD}`);
    expect(s.received[0]!.body).toEqual({
      trainerStatus: {
        progressPercentage: 10,
        estimatedRemainingSeconds: 540,
        metrics: [{ name: "loss", value: "1" }],
        lastUpdatedTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      },
    });
    expect(s.received[1]!.body).toMatchObject({
      trainerStatus: {
        progressPercentage: 100,
        estimatedRemainingSeconds: 0,
        metrics: [{ name: "loss", value: "0.1" }],
      },
    });
    expect(warnings()).toEqual([]);
  });

  it("sends the newest state once the interval has passed (the throttle delays, it does not drop)", async () => {
    const s = await startStatusServer();
    const { r } = await reporter(s.url, GOOD, 200);
    r.report(epoch(1));
    r.report(epoch(2));
    r.report(epoch(3));
    await expect.poll(() => s.received.length, POLL).toBe(2);
    expect(s.received.map((q) => (q.body as any).trainerStatus.progressPercentage)).toEqual([10, 30]); // eslint-disable-line @typescript-eslint/no-explicit-any
    await r.close();
  });

  it("keeps every body within the CRD's limits whatever the training reports", () => {
    const metrics: Record<string, number> = { ["x".repeat(65)]: 1, big: 1e300, tiny: 1.234567890123456e-300 };
    for (let i = 0; i < 300; i++) metrics[`m${i}`] = i / 7;
    const body = trainerStatusBody(
      { progress: 1.7, eta_seconds: 1e12, metrics },
      Date.parse("2026-01-01T00:00:00.123Z"),
    );
    expect(invalidities(body)).toEqual([]);
    expect(body.trainerStatus).toMatchObject({
      progressPercentage: 100,
      estimatedRemainingSeconds: 2_147_483_647,
      lastUpdatedTime: "2026-01-01T00:00:00Z",
    });
    expect(body.trainerStatus.metrics).toHaveLength(256);
    expect(invalidities(trainerStatusBody({ progress: -1, eta_seconds: -5 }, 0))).toEqual([]);
    // The test server does refuse what the CRD refuses.
    expect(invalidities({ trainerStatus: { metrics: [{ name: "loss", value: "1".repeat(65) }] } })).not.toEqual([]);
  });

  it("a refused token (403) is logged once; the rotated token file is read on the next call and accepted", async () => {
    const s = await startStatusServer();
    const { r, tokenFile, warnings } = await reporter(s.url, "expired-token", 0);
    r.report(epoch(1));
    await expect.poll(() => s.received.length, POLL).toBe(1);
    r.report(epoch(2));
    await expect.poll(() => s.received.length, POLL).toBe(2);
    expect(s.received.map((q) => q.status)).toEqual([403, 403]);
    expect(warnings()).toEqual([expect.stringMatching(/refused the token; progress is not reported to the Trainer/)]);
    await writeFile(tokenFile, GOOD); // kubelet rotates the projected token in place
    r.report(epoch(3));
    await expect.poll(() => s.received.length, POLL).toBe(3);
    expect(s.received[2]).toMatchObject({ status: 200, authorization: `Bearer ${GOOD}` });
    await r.close();
    expect(JSON.stringify(warnings())).not.toContain("expired-token");
  });

  it("a payload the server refuses (422) is logged once with the server's message; reporting goes on", async () => {
    // A status server that refuses every body (e.g. a newer CRD with a tighter limit than this agent knows).
    const rejecting = await startRejecting();
    const { r, warnings } = await reporter(rejecting.url, GOOD, 0);
    r.report(epoch(1));
    await expect.poll(() => rejecting.received.length, POLL).toBe(1);
    r.report(epoch(2));
    await expect.poll(() => rejecting.received.length, POLL).toBe(2);
    await r.close();
    expect(rejecting.received.map((q) => q.status)).toEqual([422, 422, 422]); // the final one is tried too
    expect(warnings()).toEqual([expect.stringMatching(/refused the progress body/)]);
  });

  it("a TrainJob the server does not know (404) stops reporting", async () => {
    const s = await startStatusServer();
    s.gone = true;
    const { r, warnings } = await reporter(s.url, GOOD, 0);
    r.report(epoch(1));
    await expect.poll(() => s.received.length, POLL).toBe(1);
    r.report(epoch(2));
    await r.close({ complete: true });
    expect(s.received).toHaveLength(1);
    expect(warnings()).toEqual([expect.stringMatching(/does not know this TrainJob; progress reporting stops/)]);
  });

  it("a server that is down costs a warning, nothing else: report returns at once and close resolves", async () => {
    const s = await startStatusServer();
    const url = s.url;
    await s.close();
    servers.splice(0);
    const { r, warnings } = await reporter(url, GOOD, 0);
    r.report(epoch(1));
    await expect.poll(() => warnings().length, POLL).toBe(1);
    r.report(epoch(2));
    await r.close({ complete: true });
    expect(warnings()).toEqual([expect.stringMatching(/cannot reach the Trainer's status server/)]);
  });

  it("trusts only the CA file: a server certificate it did not sign is refused, an unreadable file is said", async () => {
    const s = await startStatusServer();
    const tokenFile = path.join(dir, "token-ca");
    await writeFile(tokenFile, GOOD);
    for (const [caCertFile, expected] of [
      // The server's own leaf certificate is not the CA that signed it: no chain to a trusted root.
      [path.join(dir, "server.crt"), /cannot reach the Trainer's status server/],
      [path.join(dir, "nonexistent-ca.crt"), /cannot read KUBEFLOW_TRAINER_SERVER_CA_CERT/],
    ] as const) {
      const { logger, warnings } = await capturingLogger();
      const r = createTrainerStatusReporter({ config: { url: new URL(s.url), caCertFile, tokenFile }, logger });
      r.report(epoch(1));
      await r.close();
      expect(warnings()).toEqual([expect.stringMatching(expected)]);
    }
    expect(s.received).toEqual([]);
  });
});

async function startRejecting(): Promise<StatusServer> {
  const received: Received[] = [];
  const server: Server = createServer({ key: serverKey, cert: serverCert }, (req, res) => {
    req.resume();
    req.on("end", () => {
      received.push({ at: Date.now(), authorization: req.headers.authorization, body: undefined, status: 422 });
      res
        .writeHead(422, { "content-type": "application/json" })
        .end(statusReply(422, "Invalid", "trainerStatus.metrics: Too many: 3: must have at most 2 items"));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const s: StatusServer = {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}${STATUS_PATH}`,
    received,
    token: GOOD,
    gone: false,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(s);
  return s;
}

describe("trainer-agent run with the Trainer's injected variables (real process)", () => {
  it("rank 0 posts the epochs' progress and a final 100 %; requests at least 5 s apart but the final one", async () => {
    const s = await startStatusServer();
    const tokenFile = path.join(dir, "agent-token");
    await writeFile(tokenFile, GOOD);
    const p = spawn(process.execPath, [BIN, "run", "--", TRAIN_SH], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/tmp",
        EPOCHS: "4",
        KUBEFLOW_TRAINER_SERVER_URL: s.url,
        KUBEFLOW_TRAINER_SERVER_CA_CERT: path.join(dir, "ca.crt"),
        KUBEFLOW_TRAINER_SERVER_TOKEN: tokenFile,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    const code = await new Promise<number | null>((resolve) => p.on("close", (c) => resolve(c)));
    expect(code).toBe(0);
    expect(stdout).toContain("epoch 4\n"); // the relay is untouched
    expect(s.received.length).toBeGreaterThanOrEqual(2);
    expect(s.received.every((q) => q.status === 200)).toBe(true);
    // One request per 5 s at most, plus the final one (counted on arrival, so the first's TLS handshake is slack).
    const span = s.received.at(-1)!.at - s.received[0]!.at;
    expect(s.received.length).toBeLessThanOrEqual(2 + Math.floor(span / 5000));
    expect(s.received[0]!.body).toMatchObject({
      trainerStatus: { progressPercentage: 25, metrics: [{ name: "loss", value: "0.1" }] },
    });
    expect(s.received.at(-1)!.body).toMatchObject({
      trainerStatus: {
        progressPercentage: 100,
        estimatedRemainingSeconds: 0,
        metrics: [{ name: "loss", value: "0.4" }],
      },
    });
  }, 60_000);

  it("a half-injected configuration is a warning and the training runs", async () => {
    const p = spawn(process.execPath, [BIN, "run", "--", TRAIN_SH], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/tmp",
        KUBEFLOW_TRAINER_SERVER_URL: "https://127.0.0.1:1/status",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => p.on("close", (c) => resolve(c)));
    expect(code).toBe(0);
    expect(stderr).toMatch(/KUBEFLOW_TRAINER_SERVER_CA_CERT must be set \(a file path\)/);
  }, 60_000);
});
