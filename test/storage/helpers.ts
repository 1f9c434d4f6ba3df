/**
 * Test helpers: a real S3-compatible server on 127.0.0.1 (fauxqs in memory, or s3rver on disk), an SDK client to
 * seed it, a config built through the real loadAgentConfig, and tree comparison.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import {
  S3Client,
  PutObjectCommand,
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
} from "@aws-sdk/client-s3";
import pino from "pino";
import { afterAll } from "vitest";
import { loadAgentConfig, type AgentConfig } from "../../src/config/index.ts";
import { createStorage, type StorageDeps } from "../../src/storage/index.ts";

export interface TestServer {
  endpoint: string;
  port: number;
  kind: "fauxqs" | "s3rver";
  stop(): Promise<void>;
}

/** `host`: 127.0.0.1 unless a test's own network (a bridge to its namespaces) must reach it. */
export async function startFauxqs(host = "127.0.0.1"): Promise<TestServer> {
  const { startFauxqs: start } = await import("fauxqs");
  const server = await start({ port: 0, logger: false, host });
  return { endpoint: `http://${host}:${server.port}`, port: server.port, kind: "fauxqs", stop: () => server.stop() };
}

export async function startS3rver(): Promise<TestServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "s3rver-"));
  // s3rver ships no types; the module name is held in a variable so tsc does not look for them.
  const name = "s3rver";
  const { default: S3rver } = (await import(name)) as {
    default: new (o: Record<string, unknown>) => { run(): Promise<{ port: number }>; close(): Promise<void> };
  };
  const server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: dir });
  const addr = await server.run();
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    kind: "s3rver",
    stop: async () => {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** A running RGW lane (scripts/rgw.sh): a real Ceph S3 server on loopback, over http and https. */
export interface RgwLane {
  endpoint: string;
  httpsEndpoint: string;
  /** The lane's own CA (PEM), which signed the https endpoint's certificate. */
  caFile: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
}

/** Where scripts/rgw.sh keeps the lane (RGW_DIR there). */
export const rgwDir = (): string => process.env.RGW_DIR ?? path.join(os.tmpdir(), `astrago-rgw-${os.userInfo().uid}`);

/**
 * The RGW lane when scripts/rgw.sh runs one (its env file is there and radosgw is alive), else undefined. The lane's
 * CA joins this process's trusted CAs, as NODE_EXTRA_CA_CERTS would in a pod.
 */
export function rgwLane(): RgwLane | undefined {
  const dir = rgwDir();
  let env: Record<string, string>;
  try {
    const pid = Number(readFileSync(path.join(dir, "radosgw.pid"), "utf8"));
    process.kill(pid, 0);
    env = Object.fromEntries(
      readFileSync(path.join(dir, "env"), "utf8")
        .split("\n")
        .filter((l) => l.includes("="))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  } catch {
    return undefined;
  }
  const get = (name: string): string => {
    const v = env[name];
    if (v === undefined) throw new Error(`${path.join(dir, "env")} lacks ${name}: restart the lane (scripts/rgw.sh)`);
    return v;
  };
  const lane = {
    endpoint: get("RGW_ENDPOINT"),
    httpsEndpoint: get("RGW_HTTPS_ENDPOINT"),
    caFile: get("RGW_CA_FILE"),
    accessKeyId: get("RGW_ACCESS_KEY_ID"),
    secretAccessKey: get("RGW_SECRET_ACCESS_KEY"),
    bucket: get("RGW_BUCKET"),
  };
  const ca = readFileSync(lane.caFile, "utf8");
  const trusted = tls.getCACertificates("default");
  if (!trusted.includes(ca)) tls.setDefaultCACertificates([...trusted, ca]);
  return lane;
}

/** Why the RGW tests were skipped, as the test name says it. */
export const RGW_MISSING = `RGW lane not running (start it with scripts/rgw.sh start; looked in ${rgwDir()})`;

export function client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  await client(endpoint).send(new CreateBucketCommand({ Bucket: bucket }));
}

export async function put(endpoint: string, bucket: string, key: string, body: Buffer | string): Promise<void> {
  await client(endpoint).send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** A job's stored checkpoints under `prefix`: the object keys, and the names its manifests give (complete ones). */
export async function storedCheckpoints(
  endpoint: string,
  bucket: string,
  prefix: string,
): Promise<{ objects: string[]; manifestNames: string[] }> {
  const s3 = client(endpoint);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  const objects = (listed.Contents ?? []).map((o) => o.Key ?? "");
  const manifestNames = await Promise.all(
    objects
      .filter((k) => k.startsWith(`${prefix}_manifests/`))
      .map(async (Key) => {
        const body = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body?.transformToString();
        return String((JSON.parse(body ?? "{}") as { name?: unknown }).name);
      }),
  );
  return { objects, manifestNames };
}

const made: string[] = [];
// Every temp dir a test file made is removed when that file's tests are done.
afterAll(async () => {
  await Promise.all(made.splice(0).map((d) => fs.rm(d, { recursive: true, force: true })));
});

export async function tmpDir(prefix = "storage-test-"): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function config(env: Record<string, string | undefined>): AgentConfig {
  return loadAgentConfig({
    S3_ACCESS_KEY_ID: "S3RVER",
    S3_SECRET_ACCESS_KEY: "S3RVER",
    ...env,
  });
}

export const quietLogger = (): pino.Logger => pino({ level: "silent" });

/** One dataset pull with this environment: its error, or undefined when it succeeded. */
export async function pullError(
  env: Record<string, string | undefined>,
  deps: StorageDeps = { logger: quietLogger() },
): Promise<unknown> {
  const storage = await createStorage(config(env), deps);
  try {
    await storage.pullDataset({});
    return undefined;
  } catch (error) {
    return error;
  } finally {
    storage.close();
  }
}

/** Records log lines in memory (to assert on them, e.g. that no secret appears). */
export function memoryLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(s) });
  return { logger, lines };
}

/** Every file under dir: relative path -> sha256 (symlinks as "-> target"). */
export async function treeHash(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (e.isSymbolicLink()) out[r] = `-> ${await fs.readlink(path.join(dir, r))}`;
      else
        out[r] = createHash("sha256")
          .update(await fs.readFile(path.join(dir, r)))
          .digest("hex");
    }
  };
  await walk("");
  return out;
}

/** A small tree of mixed files: text, binary, empty, nested, unicode names, one larger than a download part. */
export async function makeTree(dir: string, opts: { bigBytes?: number; files?: number } = {}): Promise<void> {
  await fs.mkdir(path.join(dir, "a/b/c"), { recursive: true });
  await fs.mkdir(path.join(dir, "empty-dir"), { recursive: true });
  await fs.writeFile(path.join(dir, "README.txt"), "hello dataset\n".repeat(1000));
  await fs.writeFile(path.join(dir, "empty.bin"), "");
  await fs.writeFile(path.join(dir, "a/b/c/deep.json"), JSON.stringify({ x: 1 }));
  await fs.writeFile(path.join(dir, "a/ünïcode name.txt"), "unicode");
  const rand = (n: number): Buffer => randomBytes(n);
  for (let i = 0; i < (opts.files ?? 40); i++)
    await fs.writeFile(
      path.join(dir, "a/b", `f${i}.bin`),
      i % 2 === 0 ? rand(3000 + i * 97) : Buffer.alloc(5000 + i, i),
    );
  await fs.writeFile(
    path.join(dir, "big.bin"),
    Buffer.concat([rand(opts.bigBytes ?? 300_000), Buffer.alloc(200_000, 1)]),
  );
}

/** Builds an archive of dir's contents with the system tools (zip, tar). */
export function archive(dir: string, out: string, kind: "zip" | "tar" | "tgz"): void {
  if (kind === "zip") execFileSync("zip", ["-qry", out, "."], { cwd: dir });
  else execFileSync("tar", [kind === "tgz" ? "-czf" : "-cf", out, "-C", dir, "."]);
}
