/**
 * The run loop with real storage (STORAGE_TYPE=file, the storage module's local backend) and a real callback
 * backend: dataset before the child, checkpoints during and after it, resume on the next pod, and the work
 * saved after SIGTERM.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackend, type TestBackend } from "../callbacks/backend.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const CHILD = fileURLToPath(new URL("../fixtures/children/save-on-term.sh", import.meta.url));

let dir: string;
let b: TestBackend;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "run-storage-"));
  await mkdir(join(dir, "root/datasets/d1"), { recursive: true });
  await writeFile(join(dir, "root/datasets/d1/a.txt"), "hello");
  b = await startBackend();
});
afterAll(async () => {
  await b.close();
  await rm(dir, { recursive: true, force: true });
});

function pod(name: string, jobId: string, extra: Record<string, string> = {}, child: string[] = [CHILD]) {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    STORAGE_TYPE: "file",
    STORAGE_PATH: join(dir, "root"),
    DATASET_ID: "d1",
    DATASET_DIR: join(dir, name, "ds"),
    CHECKPOINT_DIR: join(dir, name, "ck"),
    JOB_ID: jobId,
    BACKEND_BASE_URL: b.url,
    CALLBACK_TOKEN: "tok",
    ...extra,
  };
  const p = spawn(process.execPath, [BIN, "run", "--", ...child], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
    if (stdout.includes("ready\n") && !p.killed) p.kill("SIGTERM");
  });
  p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    p.on("close", (code) => resolve({ code, stdout, stderr })),
  );
}

const eventsOf = (jobId: string) =>
  b
    .of("event")
    .filter((r) => r.body.job_id === jobId)
    .map((r) => r.body as { type: string; data?: Record<string, unknown> });
const doneOf = (jobId: string) => b.of("done").find((r) => r.body.job_id === jobId)?.body;

describe("trainer-agent run with storage", () => {
  it("pulls the dataset, uploads checkpoints (the last one after SIGTERM), and a restarted pod resumes", async () => {
    await mkdir(join(dir, "pod1/ck"), { recursive: true });
    const first = await pod("pod1", "j1");
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("resume=none data=hello");
    const types = eventsOf("j1").map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(["started", "dataset_ready", "terminating", "checkpoint_uploaded"]));
    expect(eventsOf("j1").find((e) => e.type === "dataset_ready")?.data).toMatchObject({ bytes: 5, files: 1 });
    const done = doneOf("j1") as { status: string; checkpoints: { key: string }[] };
    expect(done.status).toBe("cancelled");
    // The checkpoint written in the SIGTERM handler is stored: the work survives the eviction.
    expect(done.checkpoints.map((c) => c.key)).toEqual(expect.arrayContaining(["checkpoints/job-j1/final.pt"]));
    expect(await readdir(join(dir, "root/checkpoints/job-j1"))).toEqual(
      expect.arrayContaining(["final.pt", "epoch-1.pt"]),
    );

    // A new pod of the same job (empty disk) gets the latest checkpoint back and RESUME_FROM.
    await mkdir(join(dir, "pod2/ck"), { recursive: true });
    const second = await pod("pod2", "j1");
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/resume=\S*pod2\/ck\S* data=hello/);
    expect(b.of("event").filter((r) => r.body.job_id === "j1" && r.body.type === "checkpoint_restored")).toHaveLength(
      1,
    );
  });

  it("a final checkpoint upload that fails for good after a clean child: exit 74, done failed", async () => {
    // A file where the job's checkpoint folder must go: every upload fails, whatever is retried.
    await mkdir(join(dir, "broken/checkpoints"), { recursive: true });
    await writeFile(join(dir, "broken/checkpoints/job-j4"), "not a folder");
    await mkdir(join(dir, "pod4/ck"), { recursive: true });
    const script = 'echo w > "$CHECKPOINT_DIR/e1.pt"; echo "::trainer::{\\"checkpoint\\":\\"$CHECKPOINT_DIR/e1.pt\\"}"';
    const run = await pod("pod4", "j4", { STORAGE_PATH: join(dir, "broken"), DATASET_ID: "" }, ["sh", "-c", script]);
    expect(run.code).toBe(74);
    expect(run.stderr).toMatch(/^trainer-agent: CHECKPOINT_UPLOAD_FAILED: .*$/m);
    expect(doneOf("j4")).toMatchObject({ status: "failed", exit_code: 74 });
    expect(String(doneOf("j4")?.reason)).toContain("CHECKPOINT_UPLOAD_FAILED");
  });

  it("a missing dataset: exit 66, one-line reason, done failed, the child never runs", async () => {
    const run = await pod("pod3", "j3", { DATASET_ID: "nope" });
    expect(run.code).toBe(66);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/^trainer-agent: DATASET_NOT_FOUND: .*$/m);
    expect(doneOf("j3")).toMatchObject({ status: "failed", exit_code: 66 });
  });

  it("CHECKPOINT_DIR inside DATASET_DIR: exit 78 naming both, before any pull, the checkpoint kept", async () => {
    await mkdir(join(dir, "pod5/ds/ck"), { recursive: true });
    await writeFile(join(dir, "pod5/ds/ck/epoch-7.pt"), "weights");
    const run = await pod("pod5", "j5", { CHECKPOINT_DIR: join(dir, "pod5/ds/ck") }, ["sh", "-c", "echo ran"]);
    expect(run.code).toBe(78);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/CONFIG_INVALID: .*DATASET_DIR .*CHECKPOINT_DIR .*must be separate folders/);
    expect(await readFile(join(dir, "pod5/ds/ck/epoch-7.pt"), "utf8")).toBe("weights");
  });
});
