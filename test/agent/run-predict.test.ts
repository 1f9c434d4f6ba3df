/**
 * `trainer-agent run --mode predict` with real storage (STORAGE_TYPE=file, the storage module's local backend), a
 * real callback backend and real child processes: the model in, the predictions out, and every way it can fail.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackend, type TestBackend } from "../callbacks/backend.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));

let dir: string;
let b: TestBackend;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "run-predict-"));
  await mkdir(join(dir, "root/datasets/d1"), { recursive: true });
  await writeFile(join(dir, "root/datasets/d1/rows.txt"), "1\n2\n3\n");
  await mkdir(join(dir, "root/models"), { recursive: true });
  await writeFile(join(dir, "root/models/m.json"), '{"w": 3}');
});
beforeAll(async () => {
  b = await startBackend();
});
afterAll(async () => {
  await b.close();
  await rm(dir, { recursive: true, force: true });
});

/** A predict pod: its own folders, the shared bucket, the test backend; `script` runs under sh -c. */
function pod(jobId: string, script: string, extra: Record<string, string | undefined> = {}) {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    STORAGE_TYPE: "file",
    STORAGE_PATH: join(dir, "root"),
    DATASET_ID: "d1",
    DATASET_DIR: join(dir, jobId, "ds"),
    CHECKPOINT_DIR: join(dir, jobId, "ck"),
    PREDICTIONS_DIR: join(dir, jobId, "out"),
    JOB_ID: jobId,
    BACKEND_BASE_URL: b.url,
    CALLBACK_TOKEN: "tok",
    MODEL_URI: "file://root/models/m.json",
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const p = spawn(process.execPath, [BIN, "run", "--mode", "predict", "--", "sh", "-c", script], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  p.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    p.on("close", (code) => resolve({ code, stdout, stderr })),
  );
}

const doneOf = (jobId: string) =>
  b.of("done").find((r) => r.body.job_id === jobId)?.body as
    | { status: string; exit_code: number; reason?: string; predictions?: Array<{ key: string; bytes: number }> }
    | undefined;
const eventsOf = (jobId: string) =>
  b
    .of("event")
    .filter((r) => r.body.job_id === jobId)
    .map((r) => r.body as { type: string; message?: string; data?: Record<string, unknown> });
const listed = async (folder: string): Promise<string[]> =>
  (await readdir(join(dir, "root", folder), { recursive: true }).catch(() => [] as string[])).sort();

/** Reads the model and the dataset, writes two prediction files (one in a folder) and a partial file. */
const PREDICT = [
  'test -z "$RESUME_FROM" || exit 9',
  'cat "$MODEL_PATH" > "$PREDICTIONS_DIR/model-seen.json"',
  'mkdir -p "$PREDICTIONS_DIR/part"',
  'wc -l < "$DATASET_DIR/rows.txt" > "$PREDICTIONS_DIR/part/rows.txt"',
  'echo half > "$PREDICTIONS_DIR/part/next.tmp"',
].join(" && ");

describe("trainer-agent run --mode predict", () => {
  it("restores MODEL_URI as MODEL_PATH, uploads PREDICTIONS_DIR under predictions/job-{id}/, done lists it", async () => {
    const r = await pod("p-ok", PREDICT);
    expect(r.code, r.stderr).toBe(0);
    expect(await listed("predictions/job-p-ok")).toEqual([
      "_manifest.json",
      "model-seen.json",
      "part",
      "part/rows.txt",
    ]);
    expect(await readFile(join(dir, "root/predictions/job-p-ok/model-seen.json"), "utf8")).toBe('{"w": 3}');
    expect((await readFile(join(dir, "root/predictions/job-p-ok/part/rows.txt"), "utf8")).trim()).toBe("3");
    const manifest = JSON.parse(await readFile(join(dir, "root/predictions/job-p-ok/_manifest.json"), "utf8"));
    expect(manifest).toMatchObject({ format: "astrago-predictions/1", job_id: "p-ok", node_rank: 0 });
    expect(manifest.files.map((f: { path: string }) => f.path)).toEqual(["model-seen.json", "part/rows.txt"]);
    const done = doneOf("p-ok");
    expect(done?.status).toBe("succeeded");
    expect(done?.predictions?.map((p) => p.key)).toEqual([
      "predictions/job-p-ok/model-seen.json",
      "predictions/job-p-ok/part/rows.txt",
    ]);
    const types = eventsOf("p-ok").map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(["started", "model_restored", "dataset_ready", "predictions_uploaded"]),
    );
    expect(types.indexOf("predictions_uploaded")).toBeGreaterThan(types.indexOf("model_restored"));
    expect(eventsOf("p-ok").find((e) => e.type === "started")?.data?.mode).toBe("predict");
    expect(eventsOf("p-ok").find((e) => e.type === "model_restored")?.message).toBe("models/m.json");
  });

  it("a model that is not there is MODEL_NOT_FOUND (66): the command never runs, done says why", async () => {
    const r = await pod("p-missing", 'touch "$PREDICTIONS_DIR/ran"', { MODEL_URI: "file://root/models/none.pt" });
    expect(r.code).toBe(66);
    expect(r.stderr).toContain("trainer-agent: MODEL_NOT_FOUND: ");
    expect(doneOf("p-missing")).toMatchObject({ status: "failed", exit_code: 66 });
    expect(doneOf("p-missing")?.reason).toMatch(/^MODEL_NOT_FOUND: .*models\/none\.pt does not exist \(MODEL_URI=/);
    expect(await listed("p-missing/out")).toEqual([]);
    // MODEL_JOB_ID of a job that stored nothing: the same code, the job's checkpoint folder named.
    const byJob = await pod("p-missing-job", "true", { MODEL_URI: undefined, MODEL_JOB_ID: "nothing-stored" });
    expect(byJob.code).toBe(66);
    expect(doneOf("p-missing-job")?.reason).toContain("checkpoints/job-nothing-stored/ (MODEL_JOB_ID=nothing-stored)");
  });

  it("a failed command uploads nothing (its partial files would look complete) and keeps its exit code", async () => {
    const r = await pod("p-fail", 'echo partial > "$PREDICTIONS_DIR/a.csv"; exit 3');
    expect(r.code).toBe(3);
    expect(await listed("predictions/job-p-fail")).toEqual([]);
    expect(doneOf("p-fail")).toMatchObject({ status: "failed", exit_code: 3 });
    expect(doneOf("p-fail")?.predictions).toEqual([]);
  });

  it("a clean exit that wrote nothing is PREDICTIONS_EMPTY (65), not a success without predictions", async () => {
    const r = await pod("p-empty", "true");
    expect(r.code).toBe(65);
    expect(doneOf("p-empty")?.reason).toMatch(/^PREDICTIONS_EMPTY: the command exited 0 but wrote nothing/);
  });

  it("with several nodes each uploads below node-{rank}/; an empty non-zero rank is fine", async () => {
    const multi = { PET_NNODES: "2", PET_NODE_RANK: "1", PREDICTIONS_URI: "file://root/out/shared" };
    const empty = await pod("p-n1", "true", multi);
    expect(empty.code, empty.stderr).toBe(0);
    const wrote = await pod("p-n1b", 'echo 1 > "$PREDICTIONS_DIR/r.csv"', multi);
    expect(wrote.code, wrote.stderr).toBe(0);
    expect(await listed("out/shared")).toEqual(["node-1", "node-1/_manifest.json", "node-1/r.csv"]);
  });

  it("every bad predict variable is named at once, exit 78, and done says so", async () => {
    const r = await pod("p-config", "true", {
      MODEL_URI: "http://x/m.pt",
      MODEL_JOB_ID: "../up",
      PREDICTIONS_URI: "/local",
      PREDICTIONS_DIR: join(dir, "p-config", "ds", "inside"),
    });
    expect(r.code).toBe(78);
    for (const name of ["MODEL_URI must be", "MODEL_JOB_ID must be", "PREDICTIONS_URI must be", "PREDICTIONS_DIR ("])
      expect(r.stderr).toContain(name);
    expect(r.stderr).toContain("MODEL_JOB_ID and MODEL_URI both name a model");
    expect(doneOf("p-config")?.reason).toMatch(/^CONFIG_INVALID: /);
    const none = await pod("p-none", "true", { MODEL_URI: undefined });
    expect(none.code).toBe(78);
    expect(none.stderr).toContain("MODEL_JOB_ID or MODEL_URI must be set for a predict run");
  });
});
