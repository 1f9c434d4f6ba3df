/**
 * Storage benchmark: the agent's dataset pull and checkpoint upload against the tools a user would otherwise use,
 * side by side in one run, same S3 server, same data, same disk. The server is a real Ceph RGW started by
 * scripts/rgw.sh (bluestore on a sparse file, in its own folder; stopped at the end unless BENCH_KEEP_RGW=1),
 * reached over http and over https with the lane's CA; where the lane cannot start (no Ceph packages and no apt),
 * or with BENCH_SERVER=fauxqs, the embedded fauxqs (JavaScript, in its own process on 127.0.0.1, http only).
 * Each row also gives the server's CPU (its processes' user + system time) during that tool's run.
 *
 * Pull (download + extract) of one zip of ~10k files, and download of one large file:
 *   agent (createStorage().pullDataset in a child process)  vs  `aws s3 cp` + `unzip`, boto3 `download_file` +
 *   `zipfile.extractall`, `rclone copy` (+ `unzip`); floors: `cat` of the same bytes to the same disk, and one
 *   plain GET through the same server piped to disk (`curl`), which is what the server itself can deliver.
 * Upload of one large checkpoint: agent (notify + finalSync) vs `aws s3 cp`, boto3 `upload_file`, `rclone copyto`.
 * Each process runs under /usr/bin/time for its peak RSS.
 *
 * Fairness on one small machine: BENCH_ROUNDS rounds (default 3) with the tools in a different order each round,
 * the median reported. No extracted tree is deleted while a round runs: this VM's root is ext4 without a journal,
 * whose inode allocator skips inodes freed in the last ~30 s, so creating 10k files right after deleting 10k costs
 * several extra seconds of kernel time to whoever comes next. Trees are deleted between rounds, then the bench
 * waits BENCH_SETTLE_S (default 35) seconds; an untimed extraction of the zip then takes what remains of that
 * cost before the first tool runs. Uploaded objects are deleted after each upload (the server keeps everything
 * in memory).
 *
 * BENCH_SIZE_MB (default 1024) sets the size of the zip and of the large file; BENCH_FILES (default 10000);
 * BENCH_SECTIONS (default pull,download,upload) picks the scenarios.
 * BENCH_S3_ENDPOINT (+ BENCH_S3_BUCKET, BENCH_S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) runs the same
 * comparison against a real MinIO, R2 or S3 bucket instead of the embedded server.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUCKET = "bench";
const KEY_ID = "AKIABENCHBENCHBENCH";
const SECRET = "bench-secret-key-bench-secret-key";

interface Timing {
  seconds: number;
  /** CPU the server's processes spent during the run, s. */
  serverSeconds?: number;
  rssMb: number | undefined;
  /** For the agent: the transfer alone, without node start-up and module loading. */
  innerSeconds?: number;
  /** CPU of the process (all its threads), s: user and kernel. */
  userSeconds?: number;
  sysSeconds?: number;
}

async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Timing> {
  const started = process.hrtime.bigint();
  const { stderr } = await run("/usr/bin/time", ["-f", "__maxrss_kb=%M __user_s=%U __sys_s=%S", cmd, ...args], {
    env,
    cwd,
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const m = /__maxrss_kb=(\d+)/.exec(stderr);
  const inner = /__inner_s=([\d.]+)/.exec(stderr);
  const cpu = /__user_s=([\d.]+) __sys_s=([\d.]+)/.exec(stderr);
  return {
    seconds,
    rssMb: m ? Number(m[1]) / 1024 : undefined,
    ...(inner ? { innerSeconds: Number(inner[1]) } : {}),
    ...(cpu ? { userSeconds: Number(cpu[1]), sysSeconds: Number(cpu[2]) } : {}),
  };
}

/** Runs several commands one after the other as one measurement (download, then extract). */
async function sequence(steps: (() => Promise<Timing>)[]): Promise<Timing> {
  let seconds = 0;
  let rss = 0;
  let user = 0;
  let sys = 0;
  for (const s of steps) {
    const t = await s();
    seconds += t.seconds;
    rss = Math.max(rss, t.rssMb ?? 0);
    user += t.userSeconds ?? NaN;
    sys += t.sysSeconds ?? NaN;
  }
  return { seconds, rssMb: rss, userSeconds: user, sysSeconds: sys };
}

async function startServer(): Promise<{ endpoint: string; pid: number; stop: () => void }> {
  const script = `import { startFauxqs } from "fauxqs";
const s = await startFauxqs({ port: 0, host: "127.0.0.1", logger: false });
s.createBucket(${JSON.stringify(BUCKET)});
console.log("PORT " + s.port);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on("exit", (code) => reject(new Error(`fauxqs exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, pid: child.pid ?? 0, stop: () => child.kill() };
}

async function makeData(dir: string, sizeMb: number, files: number): Promise<{ zip: string; big: string }> {
  const tree = path.join(dir, "tree");
  const per = Math.max(1, Math.floor((sizeMb * 1024 * 1024) / files));
  for (let i = 0; i < files; i++) {
    const sub = path.join(tree, `shard-${String(i % 100).padStart(3, "0")}`);
    if (i < 100) await fs.mkdir(sub, { recursive: true });
    // Three quarters incompressible (images, packed arrays), one quarter text-like (deflated in the zip).
    const body =
      i % 4 === 3
        ? Buffer.from(
            `sample ${i} `
              .repeat(Math.ceil(per / 10))
              .slice(0, per)
              .split("")
              .map((c, j) => (j % 97 === 0 ? String.fromCharCode(97 + ((i + j) % 26)) : c))
              .join(""),
          )
        : randomBytes(per);
    await fs.writeFile(path.join(sub, `item-${i}.bin`), body);
  }
  const zip = path.join(dir, "dataset.zip");
  await run("zip", ["-q", "-r", "-1", zip, "."], { cwd: tree, maxBuffer: 1 << 26 });
  await fs.rm(tree, { recursive: true, force: true });
  const big = path.join(dir, "big.bin");
  const fh = await fs.open(big, "w");
  const chunk = randomBytes(8 * 1024 * 1024);
  for (let w = 0; w < sizeMb * 1024 * 1024; w += chunk.length) await fh.write(chunk, 0, chunk.length, w);
  await fh.close();
  return { zip, big };
}

/** The agent's bench entry: a checkpoint upload of BENCH_FILE when it is set, else a dataset pull. */
function agentScript(): string {
  const storage = path.join(ROOT, "src/storage/index.ts");
  const configMod = path.join(ROOT, "src/config/index.ts");
  const heap = path.join(ROOT, "src/cli/heap.ts");
  // Starts the way `trainer-agent` starts (src/cli/trainer-agent.ts): young generation kept at its start size.
  // No top-level await: the single executable's main script is CommonJS.
  return `import pino from ${JSON.stringify(fileURLToPath(import.meta.resolve("pino")))};
import { keepYoungGenerationSmall } from ${JSON.stringify(heap)};
import { createStorage } from ${JSON.stringify(storage)};
import { loadAgentConfig } from ${JSON.stringify(configMod)};
keepYoungGenerationSmall(process.env, process.execArgv);
async function main() {
  const config = loadAgentConfig(process.env);
  const storage = await createStorage(config, { logger: pino({ level: "warn" }), stderr: { isTTY: false, write: () => true } });
  const started = performance.now();
  if (process.env.BENCH_FILE === undefined) await storage.pullDataset({});
  else {
    const sync = storage.startCheckpointSync({});
    sync.notify(process.env.BENCH_FILE);
    const stored = await sync.finalSync();
    if (stored.length !== 1) throw new Error("upload failed");
  }
  storage.close();
  console.error("__inner_s=" + ((performance.now() - started) / 1000).toFixed(3));
}
main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
`;
}

/** How the bench starts the agent: a command, its arguments, and what it is for the report. */
interface AgentEntry {
  cmd: string;
  args: string[];
  how: string;
}

/**
 * Runs the agent's code the way it ships: a single executable (npm run build:agent's steps: a CommonJS bundle, a
 * SEA blob with V8's code cache, injected into a copy of this node), which starts ~0.15 s sooner than a bundle node
 * has to compile first. Falls back to an ESM bundle, then to the TypeScript sources (which add ~35 MiB of RSS and
 * start-up time), saying which ran.
 */
async function agentEntry(work: string): Promise<AgentEntry> {
  const ts = path.join(work, "agent.ts");
  await fs.writeFile(ts, agentScript());
  const node = process.execPath;
  try {
    const { bundleAgent } = await import("../src/packaging/build/bundle.ts");
    const { writeSeaBlob } = await import("../src/packaging/build/sea-blob.ts");
    const { injectBlob } = await import("../src/packaging/build/inject.ts");
    const main = path.join(work, "agent.cjs");
    const bundle = await bundleAgent(ts, main);
    if (bundle.external.length > 0) throw new Error(`the bundle loads ${bundle.external.join(", ")} at run time`);
    const blob = path.join(work, "agent.blob");
    await writeSeaBlob({ node, main, output: blob, assets: {}, useCodeCache: true, workDir: work });
    const exe = path.join(work, "agent");
    await injectBlob({ node, blob, target: exe, strip: true });
    return { cmd: exe, args: [], how: "a single executable with V8's code cache, as npm run build:agent ships it" };
  } catch (error) {
    console.log(`(could not build a single executable: ${(error as Error).message.split("\n")[0]})`);
  }
  try {
    const esbuild = await import("esbuild");
    const out = path.join(work, "agent.mjs");
    await esbuild.build({
      entryPoints: [ts],
      bundle: true,
      platform: "node",
      format: "esm",
      outfile: out,
      logLevel: "error",
      absWorkingDir: ROOT,
      nodePaths: [path.join(ROOT, "node_modules")],
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    });
    return { cmd: node, args: [out], how: "one file bundled with esbuild (no code cache)" };
  } catch (error) {
    console.log(`(could not bundle the agent: ${(error as Error).message.split("\n")[0]})`);
    return { cmd: node, args: [ts], how: "the TypeScript sources" };
  }
}

const fmt = (n: number | undefined, d = 1): string => (n === undefined ? "-" : n.toFixed(d));

interface Target {
  endpoint: string;
  /** The same server over https, with the CA that signed its certificate (the RGW lane). */
  https?: { endpoint: string; caFile: string };
  bucket: string;
  region: string;
  keyId: string;
  secret: string;
  /** The embedded fauxqs server (which takes request bodies of at most 11 MiB). */
  embedded: boolean;
  label: string;
  /** The server's processes, for their CPU time (none known for a remote endpoint). */
  serverPids: number[];
  stop: () => Promise<void>;
}

/** Starts (or reuses) the RGW lane in a folder of the bench's own: bluestore keeps the OSD's memory bounded. */
async function startRgw(): Promise<Target> {
  const dir = path.join(os.tmpdir(), `astrago-rgw-bench-${os.userInfo().uid}`);
  const env = {
    ...process.env,
    RGW_DIR: dir,
    RGW_STORE: process.env.BENCH_RGW_STORE ?? "bluestore",
    RGW_BUCKET: BUCKET,
  };
  const existed = await fs
    .access(path.join(dir, "env"))
    .then(() => true)
    .catch(() => false);
  const script = path.join(ROOT, "scripts/rgw.sh");
  const { stdout } = await run("bash", [script, "start"], { env, maxBuffer: 1 << 20 });
  const vars = Object.fromEntries(
    stdout
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const need = (k: string): string => {
    const v = vars[k];
    if (v === undefined) throw new Error(`scripts/rgw.sh start printed no ${k}`);
    return v;
  };
  const pids: number[] = [];
  for (const d of ["radosgw", "osd", "mon"])
    pids.push(Number(await fs.readFile(path.join(dir, `${d}.pid`), "utf8").catch(() => "0")));
  return {
    endpoint: need("RGW_ENDPOINT"),
    https: { endpoint: need("RGW_HTTPS_ENDPOINT"), caFile: need("RGW_CA_FILE") },
    bucket: need("RGW_BUCKET"),
    region: "us-east-1",
    keyId: need("RGW_ACCESS_KEY_ID"),
    secret: need("RGW_SECRET_ACCESS_KEY"),
    embedded: false,
    label: `Ceph RGW (${need("RGW_STORE")}, scripts/rgw.sh${existed ? ", already running" : ""})`,
    serverPids: pids.filter((p) => p > 0),
    stop: async () => {
      if (!existed && process.env.BENCH_KEEP_RGW !== "1") await run("bash", [script, "stop"], { env });
    },
  };
}

async function openTarget(): Promise<Target> {
  const endpoint = process.env.BENCH_S3_ENDPOINT;
  if (endpoint === undefined || endpoint === "") {
    if ((process.env.BENCH_SERVER ?? "rgw") === "rgw") {
      try {
        return await startRgw();
      } catch (error) {
        const why = String((error as { stderr?: string }).stderr || (error as Error).message).trim();
        console.log(`(the RGW lane did not start: ${why.split("\n").at(-1)}; the embedded fauxqs instead)`);
      }
    }
    const server = await startServer();
    return {
      endpoint: server.endpoint,
      bucket: BUCKET,
      region: "us-east-1",
      keyId: KEY_ID,
      secret: SECRET,
      embedded: true,
      label: `fauxqs (embedded) at ${server.endpoint}`,
      serverPids: [server.pid],
      stop: async () => server.stop(),
    };
  }
  const keyId = process.env.AWS_ACCESS_KEY_ID;
  const secret = process.env.AWS_SECRET_ACCESS_KEY;
  if (!keyId || !secret)
    throw new Error("BENCH_S3_ENDPOINT needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the bucket");
  return {
    endpoint,
    bucket: process.env.BENCH_S3_BUCKET ?? BUCKET,
    region: process.env.BENCH_S3_REGION ?? "us-east-1",
    keyId,
    secret,
    embedded: false,
    label: endpoint,
    serverPids: [],
    stop: async () => {},
  };
}

/** User + system CPU of the given processes so far, s (Linux /proc; 100 ticks per second). */
async function cpuOf(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return ticks / 100;
}

const loadavg = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(", ");

/**
 * How fast one core is right now: MD5 of 128 MiB in this process. A shared VM's CPU drifts within an hour (the same
 * morning, openssl's AES-128-GCM ran at 3.4 and then 1.9-2.3 GB/s), so each round's speed goes beside its results.
 */
function cpuProbe(): string {
  const block = Buffer.alloc(16 << 20, 1);
  const started = performance.now();
  const h = createHash("md5");
  for (let i = 0; i < 8; i++) h.update(block);
  h.digest();
  return `MD5 ${(128 / ((performance.now() - started) / 1000)).toFixed(0)} MiB/s`;
}

/** Load average and one core's speed, for the log. */
const machine = (): string => `load average ${loadavg()}, one core ${cpuProbe()}`;

/** One tool's measurement in a section: run it with a fresh output folder d; drop = big files to remove after. */
interface Step {
  tool: string;
  measure: (d: string) => Promise<Timing>;
  drop?: string[];
  after?: () => Promise<unknown>;
}

export default async function storageBench(): Promise<void> {
  const sizeMb = Number(process.env.BENCH_SIZE_MB ?? 1024);
  const files = Number(process.env.BENCH_FILES ?? 10_000);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const settleS = Number(process.env.BENCH_SETTLE_S ?? 35);
  const sections = (process.env.BENCH_SECTIONS ?? "pull,download,upload").split(",");
  const wantedSchemes = (process.env.BENCH_SCHEMES ?? "http,https").split(",");
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "bench-storage-"));
  const target = await openTarget();
  // An interrupted bench still stops the lane it started and removes its data (GiBs in the temp folder).
  const interrupted = (signal: NodeJS.Signals): void => {
    void target.stop().finally(async () => {
      await fs.rm(work, { recursive: true, force: true });
      process.kill(process.pid, signal);
    });
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  const { bucket } = target;
  const prefix = "astrago-bench";
  const atStart = machine();
  const loads: string[] = [`start ${atStart}`];
  try {
    const schemes = [
      { name: "http", endpoint: target.endpoint, ca: undefined as string | undefined },
      ...(target.https ? [{ name: "https", endpoint: target.https.endpoint, ca: target.https.caFile }] : []),
    ].filter((x) => wantedSchemes.includes(x.name));
    console.log(
      `data: ${sizeMb} MiB zip of ${files} files, ${sizeMb} MiB file; server: ${target.label}, ${schemes.map((x) => x.endpoint).join(" and ")}, bucket ${bucket}; ${rounds} round(s); ${atStart}`,
    );
    const { zip, big } = await makeData(work, sizeMb, files);
    const zipBytes = (await fs.stat(zip)).size;
    const bigBytes = (await fs.stat(big)).size;
    const awsConfig = path.join(work, "aws-config");
    await fs.writeFile(awsConfig, `[default]\nregion = ${target.region}\ns3 =\n  addressing_style = path\n`);
    const baseEnv: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: work,
      AWS_ACCESS_KEY_ID: target.keyId,
      AWS_SECRET_ACCESS_KEY: target.secret,
      AWS_DEFAULT_REGION: target.region,
      AWS_CONFIG_FILE: awsConfig,
      AWS_REQUEST_CHECKSUM_CALCULATION: "WHEN_REQUIRED",
      AWS_RESPONSE_CHECKSUM_VALIDATION: "WHEN_REQUIRED",
      RCLONE_CONFIG_X_TYPE: "s3",
      RCLONE_CONFIG_X_PROVIDER: "Other",
      RCLONE_CONFIG_X_ACCESS_KEY_ID: target.keyId,
      RCLONE_CONFIG_X_SECRET_ACCESS_KEY: target.secret,
      RCLONE_CONFIG_X_FORCE_PATH_STYLE: "true",
      RCLONE_CONFIG_X_REGION: target.region,
      // rclone sends files below 200 MiB as one PUT; fauxqs takes at most 11 MiB per request.
      ...(target.embedded ? { RCLONE_CONFIG_X_UPLOAD_CUTOFF: "10M" } : {}),
    };
    const seed = (...args: string[]) =>
      run("/usr/bin/aws", ["--endpoint-url", target.endpoint, ...args], { env: baseEnv });
    const zipKey = `${prefix}/bench.zip`;
    const bigKey = `${prefix}/big.bin`;
    // Seed the bucket with aws-cli (not timed).
    await seed("s3", "cp", zip, `s3://${bucket}/${zipKey}`, "--quiet");
    await seed("s3", "cp", big, `s3://${bucket}/${bigKey}`, "--quiet");
    const agent = await agentEntry(work);
    console.log(`agent: ${agent.how}`);
    // The keys go to curl in a file only this user can read, not on its command line (visible in `ps`).
    const curlConfig = path.join(work, "curl.conf");
    await fs.writeFile(curlConfig, `user = "${target.keyId}:${target.secret}"\n`, { mode: 0o600 });

    const rows: { what: string; tool: string; t: Timing; bytes: number }[] = [];
    const failed: string[] = [];
    /** Records one measurement; a peer tool that fails against this server is reported, not fatal. */
    const add = async (what: string, tool: string, measure: () => Promise<Timing>, bytes: number): Promise<void> => {
      try {
        const server0 = await cpuOf(target.serverPids);
        const t = await measure();
        if (target.serverPids.length > 0) t.serverSeconds = (await cpuOf(target.serverPids)) - server0;
        rows.push({ what, tool, t, bytes });
        const inner = t.innerSeconds === undefined ? "" : ` (transfer ${fmt(t.innerSeconds, 2)} s)`;
        const cpu = ` cpu ${fmt(t.userSeconds, 2)} user + ${fmt(t.sysSeconds, 2)} sys, server ${fmt(t.serverSeconds, 2)}`;
        console.log(`  ${what.padEnd(28)} ${tool.padEnd(28)} ${fmt(t.seconds, 2).padStart(7)} s${cpu}${inner}`);
      } catch (error) {
        if (tool === "agent") throw error;
        const why =
          String((error as { stderr?: string }).stderr ?? error)
            .split("\n")
            .find((l) => /error|fail/i.test(l)) ?? "failed";
        const line = `${what} / ${tool}: ${why
          .trim()
          .replace(/^\S+ \S+ /, "")
          .slice(0, 200)}`;
        if (!failed.includes(line)) failed.push(line);
        console.log(`  ${what.padEnd(28)} ${tool.padEnd(28)}  failed`);
      }
    };

    const ck = path.join(work, "ck");
    await fs.mkdir(ck, { recursive: true });
    const bigFile = path.join(ck, "model.pt");
    await fs.rename(big, bigFile);
    const PZ = "pull zip (+extract)";
    const PB = "download large file";
    const UP = "upload checkpoint";
    const out = path.join(work, "out");
    // The same agent with every ranged GET through the SDK's streams: what the in-place readers gain.
    const sdkGets = { STORAGE_DIRECT_READS: "false" };

    /** The three scenarios over one scheme (http or https), each tool pointed at that endpoint. */
    const scenarios = (scheme: (typeof schemes)[number]) => {
      const { endpoint, ca } = scheme;
      const tag = scheme.name === "http" ? "" : ` ${scheme.name}`;
      const env: NodeJS.ProcessEnv = { ...baseEnv, RCLONE_CONFIG_X_ENDPOINT: endpoint };
      const aws = (...args: string[]): string[] => [
        "--endpoint-url",
        endpoint,
        ...(ca === undefined ? [] : ["--ca-bundle", ca]),
        ...args,
      ];
      const awsRun = (...args: string[]) => run("/usr/bin/aws", aws(...args), { env });
      const awsTimed = (...args: string[]) => timed("/usr/bin/aws", aws(...args), env);
      const rclone = (...args: string[]) =>
        timed("rclone", [...(ca === undefined ? [] : ["--ca-cert", ca]), ...args], env);
      const py = "/usr/bin/python3";
      const boto = `import boto3, sys, zipfile
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=${JSON.stringify(endpoint)}, config=Config(s3={"addressing_style": "path"})${ca === undefined ? "" : `, verify=${JSON.stringify(ca)}`})
`;
      const curl = (url: string, o: string) =>
        timed(
          "curl",
          [
            "-sf",
            // RGW, like AWS, wants the payload hash header even on a GET; curl does not send it by itself.
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            ...(ca === undefined ? [] : ["--cacert", ca]),
            "--aws-sigv4",
            `aws:amz:${target.region}:s3`,
            "--config",
            curlConfig,
            "-o",
            o,
            url,
          ],
          env,
        );
      const agentEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
        ...env,
        NODE_PATH: path.join(ROOT, "node_modules"),
        ...(ca === undefined ? {} : { NODE_EXTRA_CA_CERTS: ca }),
        S3_ENDPOINT: endpoint,
        S3_BUCKET: bucket,
        S3_REGION: target.region,
        S3_ACCESS_KEY_ID: target.keyId,
        S3_SECRET_ACCESS_KEY: target.secret,
        STORAGE_CONCURRENCY: process.env.STORAGE_CONCURRENCY ?? "8",
        // fauxqs accepts request bodies up to 11 MiB; real S3/MinIO/R2 take the default 16 MiB parts.
        ...(target.embedded ? { STORAGE_PART_SIZE_MB: "10" } : {}),
        ...extra,
      });
      const agentPulls = (key: string, d: string, extra: Record<string, string> = {}) =>
        timed(
          agent.cmd,
          agent.args,
          agentEnv({ DATASET_URI: `s3://${bucket}/${key}`, DATASET_DIR: path.join(d, "ds"), ...extra }),
          ROOT,
        );
      const floors = scheme.name === "http";
      const pullZip: Step[] = [
        { tool: "agent", measure: (d) => agentPulls(zipKey, d) },
        { tool: "agent, GETs through the SDK", measure: (d) => agentPulls(zipKey, d, sdkGets) },
        {
          tool: "aws s3 cp + unzip",
          measure: (d) =>
            sequence([
              () => awsTimed("s3", "cp", `s3://${bucket}/${zipKey}`, `${d}/a.zip`, "--quiet"),
              () => timed("unzip", ["-q", `${d}/a.zip`, "-d", `${d}/ds`], env),
            ]),
          drop: ["a.zip"],
        },
        {
          tool: "boto3 + zipfile",
          measure: (d) =>
            timed(
              py,
              [
                "-c",
                `${boto}s3.download_file("${bucket}", "${zipKey}", sys.argv[1] + "/a.zip")
zipfile.ZipFile(sys.argv[1] + "/a.zip").extractall(sys.argv[1] + "/ds")`,
                d,
              ],
              env,
            ),
          drop: ["a.zip"],
        },
        {
          tool: "rclone copy + unzip",
          measure: (d) =>
            sequence([
              () => rclone("copy", `x:${bucket}/${zipKey}`, d),
              () => timed("unzip", ["-q", `${d}/bench.zip`, "-d", `${d}/ds`], env),
            ]),
          drop: ["bench.zip"],
        },
        ...(floors
          ? [
              {
                tool: "floor: cat to disk",
                measure: (d: string) => timed("sh", ["-c", `cat "$0" > "$1"`, zip, `${d}/a.zip`], env),
                drop: ["a.zip"],
              },
            ]
          : []),
        {
          tool: "floor: one GET (curl)",
          measure: (d) => curl(`${endpoint}/${bucket}/${zipKey}`, `${d}/a.zip`),
          drop: ["a.zip"],
        },
      ];
      const download: Step[] = [
        { tool: "agent", measure: (d) => agentPulls(bigKey, d), drop: ["ds"] },
        { tool: "agent, GETs through the SDK", measure: (d) => agentPulls(bigKey, d, sdkGets), drop: ["ds"] },
        {
          tool: "aws s3 cp",
          measure: (d) => awsTimed("s3", "cp", `s3://${bucket}/${bigKey}`, `${d}/big.bin`, "--quiet"),
          drop: ["big.bin"],
        },
        {
          tool: "boto3 download_file",
          measure: (d) =>
            timed(py, ["-c", `${boto}s3.download_file("${bucket}", "${bigKey}", sys.argv[1] + "/big.bin")`, d], env),
          drop: ["big.bin"],
        },
        { tool: "rclone copy", measure: (d) => rclone("copy", `x:${bucket}/${bigKey}`, d), drop: ["big.bin"] },
        ...(floors
          ? [
              {
                tool: "floor: cat to disk",
                measure: (d: string) => timed("sh", ["-c", `cat "$0" > "$1"`, bigFile, `${d}/big.bin`], env),
                drop: ["big.bin"],
              },
            ]
          : []),
        {
          tool: "floor: one GET (curl)",
          measure: (d) => curl(`${endpoint}/${bucket}/${bigKey}`, `${d}/big.bin`),
          drop: ["big.bin"],
        },
      ];
      // Uploaded objects are deleted after each upload: the embedded server holds every object in memory.
      const removeUploads = () => awsRun("s3", "rm", `s3://${bucket}/${prefix}-up/`, "--recursive", "--quiet");
      const upload = (round: number): Step[] => [
        {
          tool: "agent",
          measure: () =>
            timed(
              agent.cmd,
              agent.args,
              agentEnv({ JOB_ID: `${prefix}-r${round}`, CHECKPOINT_DIR: ck, BENCH_FILE: bigFile }),
              ROOT,
            ),
          after: () =>
            awsRun("s3", "rm", `s3://${bucket}/checkpoints/job-${prefix}-r${round}/`, "--recursive", "--quiet"),
        },
        {
          tool: "aws s3 cp",
          measure: () => awsTimed("s3", "cp", bigFile, `s3://${bucket}/${prefix}-up/aws.pt`, "--quiet"),
          after: removeUploads,
        },
        {
          tool: "boto3 upload_file",
          measure: () =>
            timed(py, ["-c", `${boto}s3.upload_file(sys.argv[1], "${bucket}", "${prefix}-up/boto.pt")`, bigFile], env),
          after: removeUploads,
        },
        {
          tool: "rclone copyto",
          measure: () => rclone("copyto", bigFile, `x:${bucket}/${prefix}-up/rclone.pt`),
          after: removeUploads,
        },
      ];
      return { pz: PZ + tag, pb: PB + tag, up: UP + tag, pullZip, download, upload };
    };
    const plans = schemes.map(scenarios);

    /** Deletes the extracted trees of earlier rounds, then waits out ext4's recently-deleted-inode window. */
    const settle = async (): Promise<void> => {
      await fs.rm(out, { recursive: true, force: true });
      await run("sync", []);
      if (settleS > 0) {
        console.log(
          `(waiting ${settleS} s after deleting extracted trees: see the note at the top of bench/storage.ts)`,
        );
        await new Promise((r) => setTimeout(r, settleS * 1000));
      }
    };
    const section = async (what: string, steps: Step[], bytes: number, round: number): Promise<void> => {
      // Untimed warm-up: on this VM the first GiB written after a pause is slower for whoever writes it (the host
      // hands memory back lazily), and the first 10k files created after the trees were deleted pay for ext4's
      // scan past recently freed inodes. One write and delete of the same size, and for the pull one extraction
      // of the zip (kept until the round ends), make every tool start alike.
      const warm = path.join(out, "warm-up.bin");
      await fs.mkdir(out, { recursive: true });
      await run("sh", ["-c", `cat "$0" > "$1"`, bigFile, warm]);
      await fs.rm(warm, { force: true });
      if (what.startsWith(PZ)) {
        await fs.mkdir(path.join(out, `r${round}`), { recursive: true });
        await run("unzip", ["-q", "-o", zip, "-d", path.join(out, `r${round}`, "warm-up-tree")]);
      }
      // Round r starts at tool r-1: each tool runs first, in the middle and last across the rounds.
      const k = (round - 1) % steps.length;
      for (const step of [...steps.slice(k), ...steps.slice(0, k)]) {
        const d = path.join(
          out,
          `r${round}`,
          `${what.replace(/[^a-z0-9]+/gi, "-")}-${step.tool.replace(/[^a-z0-9]+/gi, "-")}`,
        );
        await fs.mkdir(d, { recursive: true });
        // Flush the previous tool's dirty pages first: otherwise their writeback lands on whoever runs next.
        await run("sync", []);
        await add(what, step.tool, () => step.measure(d), bytes);
        for (const f of step.drop ?? []) await fs.rm(path.join(d, f), { recursive: true, force: true });
        await step.after?.().catch(() => {});
      }
    };

    await settle(); // makeData deleted its 10k-file tree a moment ago
    for (let round = 1; round <= rounds; round++) {
      if (round > 1) await settle();
      if (rounds > 1) console.log(`round ${round}/${rounds} (${machine()})`);
      for (const p of plans) {
        if (sections.includes("pull")) await section(p.pz, p.pullZip, zipBytes, round);
        if (sections.includes("download")) await section(p.pb, p.download, bigBytes, round);
        if (sections.includes("upload")) await section(p.up, p.upload(round), bigBytes, round);
      }
      loads.push(`after round ${round} ${machine()}`);
    }
    if (!target.embedded) await seed("s3", "rm", `s3://${bucket}/${prefix}/`, "--recursive", "--quiet").catch(() => {});

    // Median per tool over the rounds (peak RSS: the highest).
    const byTool = new Map<string, typeof rows>();
    for (const r of rows.splice(0))
      byTool.set(`${r.what}\0${r.tool}`, [...(byTool.get(`${r.what}\0${r.tool}`) ?? []), r]);
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;
    for (const g of byTool.values()) {
      const first = g[0] as (typeof rows)[number];
      const inner = g.map((x) => x.t.innerSeconds).filter((x): x is number => x !== undefined);
      rows.push({
        ...first,
        t: {
          seconds: median(g.map((x) => x.t.seconds)),
          rssMb: Math.max(...g.map((x) => x.t.rssMb ?? 0)),
          ...(inner.length > 0 ? { innerSeconds: median(inner) } : {}),
          userSeconds: median(g.map((x) => x.t.userSeconds ?? NaN)),
          sysSeconds: median(g.map((x) => x.t.sysSeconds ?? NaN)),
          serverSeconds: median(g.map((x) => x.t.serverSeconds ?? NaN)),
        },
      });
    }
    if (rounds > 1) console.log(`\nmedian (lower middle) of ${rounds} rounds`);

    // --- table ---
    console.log("");
    console.log(`server: ${target.label}; load average (1, 5, 15 min) and CPU: ${loads.join("; ")}`);
    console.log(
      "| scenario | tool | seconds | MiB/s | peak RSS MiB | CPU user s | CPU sys s | server CPU s | agent speed-up |",
    );
    console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (const r of rows) {
      const agent = rows.find((x) => x.what === r.what && x.tool === "agent");
      const ratio = agent ? r.t.seconds / agent.t.seconds : undefined;
      console.log(
        `| ${r.what} | ${r.tool} | ${fmt(r.t.seconds, 2)} | ${fmt(r.bytes / 1048576 / r.t.seconds, 0)} | ${fmt(r.t.rssMb, 0)} | ${fmt(r.t.userSeconds, 2)} | ${fmt(r.t.sysSeconds, 2)} | ${fmt(r.t.serverSeconds, 2)} | ${r.tool === "agent" ? "1.00x" : `${fmt(ratio, 2)}x`} |`,
      );
    }
    const row = (what: string, tool: string) =>
      rows.find((r) => r.what === what && (tool === "agent" ? r.tool === tool : r.tool.startsWith(tool)))?.t;
    const sec = (what: string, tool: string): number => row(what, tool)?.seconds ?? NaN;
    console.log("");
    console.log("targets:");
    // Only the scenarios this run measured (BENCH_SECTIONS) get a line.
    const ran = (what: string): boolean => row(what, "agent") !== undefined;
    for (const { pz, pb, up } of plans) {
      const agentPull = sec(pz, "agent");
      if (ran(pz)) {
        const rss = row(pz, "agent")?.rssMb ?? NaN;
        console.log(
          `  ${pz}: ${fmt(sec(pz, "aws") / agentPull, 2)}x aws-cli (target >= 2x), ${fmt(sec(pz, "boto3") / agentPull, 2)}x boto3 (target >= 1.5x), ${fmt(sec(pz, "rclone") / agentPull, 2)}x rclone; ${fmt(agentPull / sec(pz, "floor: one GET"), 2)}x one GET; agent peak RSS ${fmt(rss, 0)} MiB, the highest of ${rounds} round(s) (target < 190 MiB in every run${rss < 190 ? "" : ": missed"})`,
        );
      }
      if (ran(pb)) {
        const agentDl = row(pb, "agent");
        const rcloneDl = row(pb, "rclone");
        console.log(
          `  ${pb}: ${fmt(sec(pb, "rclone") / sec(pb, "agent"), 2)}x rclone (target > 1x), ${fmt(sec(pb, "aws") / sec(pb, "agent"), 2)}x aws-cli, ${fmt(sec(pb, "boto3") / sec(pb, "agent"), 2)}x boto3; sys CPU agent ${fmt(agentDl?.sysSeconds, 2)} s vs rclone ${fmt(rcloneDl?.sysSeconds, 2)} s (target <=); user CPU ${fmt((agentDl?.userSeconds ?? NaN) / (bigBytes / 2 ** 30), 2)} s/GiB`,
        );
      }
      if (ran(up)) {
        console.log(
          `  ${up}: ${fmt(sec(up, "aws") / sec(up, "agent"), 2)}x aws-cli, ${fmt(sec(up, "boto3") / sec(up, "agent"), 2)}x boto3, ${fmt(sec(up, "rclone") / sec(up, "agent"), 2)}x rclone (target >= 1.5x each)`,
        );
      }
      const viaSdk = "agent, GETs through the SDK";
      const inPlace = [
        ...(ran(pz) ? [`${pz} ${fmt(sec(pz, viaSdk) / agentPull, 2)}x`] : []),
        ...(ran(pb) ? [`${pb} ${fmt(sec(pb, viaSdk) / sec(pb, "agent"), 2)}x`] : []),
      ];
      if (inPlace.length > 0) console.log(`  in place vs through the SDK: ${inPlace.join(", ")}`);
    }
    const [http, https] = plans;
    if (http !== undefined && https !== undefined && ran(http.pb) && ran(https.pb)) {
      const user = (what: string, tool: string): number => row(what, tool)?.userSeconds ?? NaN;
      const agent = { http: user(http.pb, "agent"), https: user(https.pb, "agent") };
      // curl's one GET over https and over http: what decrypting the same bytes costs by itself.
      const tls = user(https.pb, "floor: one GET") - user(http.pb, "floor: one GET");
      console.log(
        `  user CPU of the download, https / http: ${fmt(agent.https / agent.http, 2)}x (target <= 1.5x); https - http ${fmt(agent.https - agent.http, 2)} s, curl's https - http on one GET ${fmt(tls, 2)} s`,
      );
    }
    for (const f of failed) console.log(`  peer failed against this server: ${f}`);
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    await target.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await storageBench();
