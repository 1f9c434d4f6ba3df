import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLinePrefixer, nodeLabel, readableLogLine } from "../../src/local/display.ts";
import { exampleRun, findTorchPython } from "../../src/local/example.ts";
import { freePorts } from "../../src/local/ports.ts";
import { runLocal } from "../../src/local/runner.ts";
import { checkpointRoot } from "../../src/storage/checkpoint/layout.ts";
import { count, formatBytes, significant } from "../../src/log/units.ts";
import { datasetIdFor } from "../../src/local/s3.ts";
import { formatSummary } from "../../src/local/summary.ts";
import { fileURLToPath } from "node:url";

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (b: Buffer) => chunks.push(b));
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

describe("node display", () => {
  it("prefixes whole lines only, across chunk boundaries, and ends a last partial line", () => {
    const out = collect();
    const p = createLinePrefixer(out.stream, "node1", false, 1);
    p.push(Buffer.from("hel"));
    p.push(Buffer.from("lo\nwor"));
    p.push(Buffer.from("ld\n\nlast"));
    p.end();
    expect(out.text()).toBe("[node1] hello\n[node1] world\n[node1] \n[node1] last\n");
  });

  it("colours the prefix on a terminal and can rewrite lines", () => {
    const out = collect();
    const p = createLinePrefixer(out.stream, "node0", true, 0, (l) => l.toUpperCase());
    p.push(Buffer.from("a\n"));
    expect(out.text()).toBe("\u001b[36m[node0]\u001b[0m A\n");
  });

  it("shows agent JSON log lines short and leaves everything else alone", () => {
    const line = JSON.stringify({
      level: "warn",
      time: "2026-11-23T15:48:35.123Z",
      name: "trainer-agent",
      trace_id: "t",
      job_id: "j",
      node_rank: 0,
      component: "callbacks",
      status: 409,
      kind: "done",
      msg: "backend rejected the done callback",
    });
    expect(readableLogLine(line)).toBe(
      "15:48:35 warn  callbacks: backend rejected the done callback status=409 kind=done",
    );
    expect(readableLogLine('{"level":30,"msg":"x"}')).toBe(" INFO  x");
    expect(readableLogLine("epoch 1 loss 0.5")).toBe("epoch 1 loss 0.5");
    expect(readableLogLine('{"level":"info" broken')).toBe('{"level":"info" broken');
  });

  it("labels nodes with equal widths", () => {
    expect(nodeLabel(3, 12)).toBe("node03");
    expect(nodeLabel(0, 2)).toBe("node0");
  });
});

describe("local run helpers", () => {
  it.each([
    [undefined, "trainer-local", "abc", { bucket: "trainer-local", prefix: "checkpoints/job-abc/" }],
    ["s3://other/runs/7", "trainer-local", "abc", { bucket: "other", prefix: "runs/7/" }],
    ["s3://other/", undefined, "abc", { bucket: "other", prefix: "" }],
    [undefined, undefined, "abc", { bucket: undefined, prefix: "checkpoints/job-abc/" }],
    [undefined, "trainer-local", undefined, "neither CHECKPOINT_URI nor JOB_ID is set"],
  ])("checkpoint root of CHECKPOINT_URI %s (the storage module's layout)", (uri, bucket, jobId, expected) => {
    expect(checkpointRoot({ checkpointUri: uri, bucket, jobId })).toEqual(expected);
  });

  it.each([
    ["/data/MNIST Train/", "mnist-train"],
    ["./examples/data", "data"],
    ["/", "dataset"],
  ])("dataset id of %s is %s", (dir, id) => {
    expect(datasetIdFor(dir)).toBe(id);
  });

  it("formats sizes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(15_515)).toBe("15 KiB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MiB");
    expect(formatBytes(1395)).toBe("1.4 KiB"); // the demo's checkpoints, once shown as "0.0 MiB"
    expect(count(1, "file")).toBe("1 file");
    expect(count(2, "file")).toBe("2 files");
    expect(count(0, "process", "processes")).toBe("0 processes");
    // 33,868 bytes in 1.17 s, once logged as mb_per_s=0
    expect(significant(33_868 / 1e6 / 1.17)).toBe(0.0289);
    expect(significant(812.3456)).toBe(812);
    expect(significant(0)).toBe(0);
  });

  it("gives distinct free ports", async () => {
    const ports = await freePorts(3);
    expect(new Set(ports).size).toBe(3);
    for (const p of ports) expect(p).toBeGreaterThan(0);
  });

  it("summarises state, epochs, metrics, nodes and checkpoint files", () => {
    const text = formatSummary({
      jobId: "j1",
      dashboardUrl: "http://127.0.0.1:1/jobs/j1",
      snapshot: {
        state: "FAILED",
        epoch: 2,
        totalEpochs: 5,
        metrics: { loss: 0.0101432, acc: 1 },
        reason: "RuntimeError: boom",
        heartbeats: 2,
        events: [],
      },
      nodes: [
        { label: "node0", exitCode: 1, signal: undefined, terminatedByRunner: false },
        { label: "node1", exitCode: 143, signal: undefined, terminatedByRunner: true },
      ],
      checkpointKeys: [
        { key: "checkpoints/job-j1/_manifests/0001.json", bytes: 400 },
        { key: "checkpoints/job-j1/epoch-1.pt", bytes: 1395 },
      ],
      bucket: "b",
      exitCode: 1,
      interrupted: undefined,
      runDir: "/tmp/run",
      kept: false,
    });
    expect(text).toContain("job        j1  state FAILED");
    expect(text).toContain("reason     RuntimeError: boom");
    expect(text).toContain("epochs     2/5  (2 heartbeats)");
    expect(text).toContain("metrics    loss=0.010143  acc=1");
    expect(text).toContain("nodes      node0: exit 1, node1: exit 143 (stopped)");
    expect(text).toContain("checkpoints 1 object in bucket b (+ 1 manifest under _manifests/):");
    expect(text).toContain("  s3://b/checkpoints/job-j1/epoch-1.pt  (1.4 KiB)");
    expect(text).toContain("exit code  1");
  });

  it("warns when the backend says SUCCEEDED but a node failed (an earlier node's done won)", () => {
    const text = formatSummary({
      jobId: "j2",
      dashboardUrl: "http://x/jobs/j2",
      snapshot: {
        state: "SUCCEEDED",
        epoch: null,
        totalEpochs: null,
        metrics: {},
        reason: null,
        heartbeats: 0,
        events: [],
      },
      nodes: [
        { label: "node0", exitCode: 1, signal: undefined, terminatedByRunner: false },
        { label: "node1", exitCode: 0, signal: undefined, terminatedByRunner: false },
      ],
      checkpointKeys: [],
      bucket: "b",
      exitCode: 1,
      interrupted: undefined,
      runDir: undefined,
      kept: false,
    });
    expect(text).toContain("warning    the backend kept the first node's done (succeeded), but node0 failed");
    expect(text).toContain("epochs     none reported  (0 heartbeats)");
  });

  it("picks the torch example only when torch imports", () => {
    const dir = fileURLToPath(new URL("../../examples/", import.meta.url));
    expect(findTorchPython(["/nope/python", "/usr/bin/python3"], (p) => p === "/usr/bin/python3")).toBe(
      "/usr/bin/python3",
    );
    expect(findTorchPython(["a", "b"], () => false)).toBeUndefined();
    const ddp = exampleRun(dir, "/usr/bin/python3");
    expect(ddp.framework).toBe("pytorch");
    expect(ddp.command.slice(0, 2)).toEqual(["/usr/bin/python3", `${dir}ddp_train.py`]);
    expect(ddp.extraEnv).toEqual({ PET_REDIRECTS: "9:1", PET_TEE: "9:1" });
    // The prediction after the training: the same interpreter (torch loads the .pt model).
    expect(ddp.predict).toEqual(["/usr/bin/python3", `${dir}predict.py`]);
    const plain = exampleRun(dir, undefined);
    expect(plain.framework).toBe("python");
    expect(plain.command[1]).toBe(`${dir}plain_train.py`);
    expect(plain.extraEnv).toEqual({});
    expect(plain.predict).toEqual(["python3", `${dir}predict.py`]);
    expect(() => exampleRun("/nonexistent/", undefined)).toThrow(/--example needs the examples folder/);
    expect(() => exampleRun(dir, undefined, 5, () => false)).toThrow(
      /--example needs python3 \(3.6 or newer\) on PATH/,
    );
  });

  it.each([
    [{ nodes: 0 }, /--nodes must be an integer from 1 to 64, got 0/],
    [{ nprocPerNode: "two" }, /--nproc-per-node must be a positive integer or auto, cpu, gpu, got "two"/],
    [{ command: [] }, /no training command/],
    [{ mode: "predict" as const }, /a predict job needs its model: --predict JOB_ID or --predict s3:\/\/bucket\/key/],
  ])("rejects bad options %j before starting anything", async (patch, message) => {
    const out = collect();
    await expect(
      runLocal(
        {
          nodes: 1,
          nprocPerNode: "1",
          framework: undefined,
          plugin: undefined,
          dataset: undefined,
          datasetId: undefined,
          command: ["true"],
          keep: false,
          workdir: undefined,
          name: "t",
          failGraceSeconds: 1,
          ...patch,
        },
        {
          env: {},
          cwd: "/",
          agent: { command: "false", args: [] },
          stdout: out.stream,
          stderr: out.stream,
          color: false,
        },
      ),
    ).rejects.toThrow(message);
    expect(out.text()).toBe("");
  });
});
