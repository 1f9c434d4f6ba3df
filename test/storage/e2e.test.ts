/**
 * End to end through the real `trainer-agent run` process against an S3 server (fauxqs on 127.0.0.1): a training
 * child writes checkpoints, a SIGTERM mid-run still gets the last one into the bucket before the agent exits, and
 * a restarted pod restores the latest checkpoint (RESUME_FROM) and pulls the dataset.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ListObjectsV2Command, GetObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archive, client, createBucket, makeTree, put, startFauxqs, tmpDir, type TestServer } from "./helpers.ts";

const BIN = fileURLToPath(new URL("../../bin/trainer-agent.js", import.meta.url));
const CHILD = fileURLToPath(new URL("../fixtures/storage/train-child.mjs", import.meta.url));

let server: TestServer;
let work: string;

beforeAll(async () => {
  server = await startFauxqs();
  await createBucket(server.endpoint, "bkt");
  work = await tmpDir("e2e-");
  await fs.mkdir(path.join(work, "src"));
  await makeTree(path.join(work, "src"), { files: 5 });
  archive(path.join(work, "src"), path.join(work, "d.tgz"), "tgz");
  await put(server.endpoint, "bkt", "datasets/e2e.tgz", await fs.readFile(path.join(work, "d.tgz")));
});
afterAll(async () => {
  await server?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

function pod(name: string, extra: Record<string, string>, killWhen?: RegExp) {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    S3_ENDPOINT: server.endpoint,
    S3_BUCKET: "bkt",
    S3_ACCESS_KEY_ID: "AKIAE2ETESTKEY",
    S3_SECRET_ACCESS_KEY: "e2e-secret-value-never-logged",
    STORAGE_PART_SIZE_MB: "5",
    DATASET_ID: "e2e",
    DATASET_DIR: path.join(work, name, "dataset"),
    CHECKPOINT_DIR: path.join(work, name, "ckpt"),
    JOB_ID: "e2e",
    ...extra,
  };
  const p = spawn(process.execPath, [BIN, "run", "--", process.execPath, CHILD], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const onData = (c: Buffer): void => {
    out += c.toString();
    if (killWhen?.test(out) && p.exitCode === null && !p.killed) p.kill("SIGTERM");
  };
  p.stdout.on("data", onData);
  p.stderr.on("data", onData);
  return new Promise<{ code: number | null; out: string }>((resolve) =>
    p.on("close", (code) => resolve({ code, out })),
  );
}

async function keys(prefix: string): Promise<string[]> {
  const r = await client(server.endpoint).send(new ListObjectsV2Command({ Bucket: "bkt", Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key as string).sort();
}

describe("trainer-agent run + S3 end to end (fauxqs)", () => {
  it("SIGTERM mid-run: the last checkpoint is in the bucket before the agent exits; a restart resumes from it", async () => {
    const first = await pod("pod1", { STAY: "1", EPOCHS: "1000" }, /epoch 2 done/);
    expect(first.out).toContain("resume=none epoch=0");
    expect(first.out).toContain("saved on SIGTERM");
    // The agent has exited: whatever is in the bucket now got there before it did.
    const stored = await keys("checkpoints/job-e2e/");
    const finals = stored.filter((k) => /final-epoch-\d+\.pt$/.test(k));
    expect(finals).toHaveLength(1);
    const manifests = stored.filter((k) => k.includes("_manifests/"));
    const latest = manifests.at(-1) as string;
    const body = await client(server.endpoint).send(new GetObjectCommand({ Bucket: "bkt", Key: latest }));
    const manifest = JSON.parse(await (body.Body as { transformToString(): Promise<string> }).transformToString());
    expect(manifest.name).toMatch(/^final-epoch-\d+\.pt$/);
    expect(manifest.files[0].size).toBe((await fs.stat(path.join(work, "pod1/ckpt", manifest.name))).size);
    // No credential in anything the agent printed.
    expect(first.out).not.toContain("e2e-secret-value-never-logged");
    expect(first.out).not.toContain("AKIAE2ETESTKEY");

    const second = await pod("pod2", { EPOCHS: "1" });
    expect(second.code).toBe(0);
    const epoch = Number(/final-epoch-(\d+)/.exec(manifest.name)?.[1]);
    expect(second.out).toContain(`resume=${path.join(work, "pod2/ckpt", manifest.name)} epoch=${epoch}`);
    expect(second.out).toMatch(/dataset=README\.txt,a,big\.bin,empty-dir,empty\.bin/);
    const restored = await fs.readFile(path.join(work, "pod2/ckpt", manifest.name));
    expect(Buffer.compare(restored, await fs.readFile(path.join(work, "pod1/ckpt", manifest.name)))).toBe(0);
  }, 60_000);
});
