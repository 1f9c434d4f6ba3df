/**
 * Storage benchmark: the agent's dataset pull and checkpoint upload against the tools a user would otherwise use,
 * side by side in one run, same S3 server (fauxqs, in its own process on 127.0.0.1), same data, same disk.
 *
 * Pull (download + extract) of one zip of ~10k files, and download of one large file:
 *   agent (createStorage().pullDataset in a child process)  vs  `aws s3 cp` + `unzip`, boto3 `download_file` +
 *   `zipfile.extractall`, `rclone copy` (+ `unzip`); floors: `cat` of the same bytes to the same disk, and one
 *   plain GET through the same server piped to disk (`curl`), which is what the server itself can deliver.
 * Upload of one large checkpoint: agent (notify + finalSync) vs `aws s3 cp`, boto3 `upload_file`, `rclone copyto`.
 * Each process runs under /usr/bin/time for its peak RSS.
 *
 * BENCH_SIZE_MB (default 1024) sets the size of the zip and of the large file; BENCH_FILES (default 10000).
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
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
  rssMb: number | undefined;
  /** For the agent: the transfer alone, without node start-up and module loading. */
  innerSeconds?: number;
}

async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Timing> {
  const started = process.hrtime.bigint();
  const { stderr } = await run("/usr/bin/time", ["-f", "__maxrss_kb=%M", cmd, ...args], {
    env,
    cwd,
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const m = /__maxrss_kb=(\d+)/.exec(stderr);
  const inner = /__inner_s=([\d.]+)/.exec(stderr);
  return {
    seconds,
    rssMb: m ? Number(m[1]) / 1024 : undefined,
    ...(inner ? { innerSeconds: Number(inner[1]) } : {}),
  };
}

/** Runs several commands one after the other as one measurement (download, then extract). */
async function sequence(steps: (() => Promise<Timing>)[]): Promise<Timing> {
  let seconds = 0;
  let rss = 0;
  for (const s of steps) {
    const t = await s();
    seconds += t.seconds;
    rss = Math.max(rss, t.rssMb ?? 0);
  }
  return { seconds, rssMb: rss };
}

async function startServer(): Promise<{ endpoint: string; stop: () => void }> {
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
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => child.kill() };
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

function agentScript(kind: "pull" | "upload"): string {
  const storage = path.join(ROOT, "src/storage/index.ts");
  const configMod = path.join(ROOT, "src/config/index.ts");
  return `import pino from ${JSON.stringify(fileURLToPath(import.meta.resolve("pino")))};
import fs from "node:fs/promises";
import path from "node:path";
import { createStorage } from ${JSON.stringify(storage)};
import { loadAgentConfig } from ${JSON.stringify(configMod)};
const config = loadAgentConfig(process.env);
const storage = await createStorage(config, { logger: pino({ level: "warn" }), stderr: { isTTY: false, write: () => true } });
const started = performance.now();
${
  kind === "pull"
    ? `await storage.pullDataset({});`
    : `const sync = storage.startCheckpointSync({});
sync.notify(process.env.BENCH_FILE);
const stored = await sync.finalSync();
if (stored.length !== 1) throw new Error("upload failed");`
}
storage.close();
console.error("__inner_s=" + ((performance.now() - started) / 1000).toFixed(3));
`;
}

/**
 * The agent as it ships is one bundled file (npm run build:agent), not TypeScript stripped at load time (which
 * adds ~35 MiB of RSS and start-up time): bundle the bench entry the same way, or fall back to the sources.
 */
async function agentEntry(work: string, kind: "pull" | "upload"): Promise<string> {
  const ts = path.join(work, `agent-${kind}.ts`);
  await fs.writeFile(ts, agentScript(kind));
  try {
    const esbuild = await import("esbuild");
    const out = path.join(work, `agent-${kind}.mjs`);
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
    return out;
  } catch (error) {
    console.log(`(could not bundle the agent, running the sources: ${(error as Error).message.split("\n")[0]})`);
    return ts;
  }
}

const fmt = (n: number | undefined, d = 1): string => (n === undefined ? "-" : n.toFixed(d));

export default async function storageBench(): Promise<void> {
  const sizeMb = Number(process.env.BENCH_SIZE_MB ?? 1024);
  const files = Number(process.env.BENCH_FILES ?? 10_000);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), "bench-storage-"));
  const server = await startServer();
  try {
    console.log(`data: ${sizeMb} MiB zip of ${files} files, ${sizeMb} MiB file; server fauxqs at ${server.endpoint}`);
    const { zip, big } = await makeData(work, sizeMb, files);
    const zipBytes = (await fs.stat(zip)).size;
    const bigBytes = (await fs.stat(big)).size;
    const awsConfig = path.join(work, "aws-config");
    await fs.writeFile(awsConfig, "[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n");
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: work,
      AWS_ACCESS_KEY_ID: KEY_ID,
      AWS_SECRET_ACCESS_KEY: SECRET,
      AWS_CONFIG_FILE: awsConfig,
      AWS_REQUEST_CHECKSUM_CALCULATION: "WHEN_REQUIRED",
      AWS_RESPONSE_CHECKSUM_VALIDATION: "WHEN_REQUIRED",
      RCLONE_CONFIG_X_TYPE: "s3",
      RCLONE_CONFIG_X_PROVIDER: "Other",
      RCLONE_CONFIG_X_ENDPOINT: server.endpoint,
      RCLONE_CONFIG_X_ACCESS_KEY_ID: KEY_ID,
      RCLONE_CONFIG_X_SECRET_ACCESS_KEY: SECRET,
      RCLONE_CONFIG_X_FORCE_PATH_STYLE: "true",
      RCLONE_CONFIG_X_REGION: "us-east-1",
      // rclone sends files below 200 MiB as one PUT; fauxqs takes at most 11 MiB per request.
      RCLONE_CONFIG_X_UPLOAD_CUTOFF: "10M",
    };
    const aws = ["/usr/bin/aws", "--endpoint-url", server.endpoint];
    const py = "/usr/bin/python3";
    const boto = `import boto3, sys, zipfile
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=${JSON.stringify(server.endpoint)}, config=Config(s3={"addressing_style": "path"}))
`;
    // Seed the bucket with aws-cli (not timed).
    await run(aws[0] as string, [...aws.slice(1), "s3", "cp", zip, `s3://${BUCKET}/datasets/bench.zip`, "--quiet"], {
      env,
    });
    await run(aws[0] as string, [...aws.slice(1), "s3", "cp", big, `s3://${BUCKET}/datasets/big.bin`, "--quiet"], {
      env,
    });
    const pullScript = await agentEntry(work, "pull");
    const uploadScript = await agentEntry(work, "upload");
    console.log(
      `agent: ${pullScript.endsWith(".mjs") ? "bundled with esbuild, as the single-file agent ships" : "TypeScript sources"}`,
    );

    const fresh = async (name: string): Promise<string> => {
      const d = path.join(work, "out", name);
      await fs.rm(path.join(work, "out"), { recursive: true, force: true });
      await fs.mkdir(d, { recursive: true });
      // Flush the previous tool's dirty pages first: otherwise their writeback lands on whoever runs next.
      await run("sync", []);
      return d;
    };
    const agentEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
      ...env,
      NODE_PATH: path.join(ROOT, "node_modules"),
      S3_ENDPOINT: server.endpoint,
      S3_BUCKET: BUCKET,
      S3_ACCESS_KEY_ID: KEY_ID,
      S3_SECRET_ACCESS_KEY: SECRET,
      STORAGE_CONCURRENCY: process.env.STORAGE_CONCURRENCY ?? "8",
      // fauxqs accepts request bodies up to 11 MiB; real S3/MinIO/R2 take the default 16 MiB parts.
      STORAGE_PART_SIZE_MB: "10",
      ...extra,
    });
    const node = process.execPath;

    const rows: { what: string; tool: string; t: Timing; bytes: number }[] = [];
    const failed: string[] = [];
    /** Records one measurement; a peer tool that fails against this server is reported, not fatal. */
    const add = async (what: string, tool: string, measure: Promise<Timing>, bytes: number): Promise<void> => {
      try {
        const t = await measure;
        rows.push({ what, tool, t, bytes });
        const inner = t.innerSeconds === undefined ? "" : ` (transfer ${fmt(t.innerSeconds, 2)} s)`;
        console.log(`  ${what.padEnd(22)} ${tool.padEnd(26)} ${fmt(t.seconds, 2).padStart(7)} s${inner}`);
      } catch (error) {
        if (tool === "agent") throw error;
        const why =
          String((error as { stderr?: string }).stderr ?? error)
            .split("\n")
            .find((l) => /error|fail/i.test(l)) ?? "failed";
        failed.push(`${what} / ${tool}: ${why.trim().slice(0, 200)}`);
        console.log(`  ${what.padEnd(22)} ${tool.padEnd(26)}  failed`);
      }
    };

    const ck = path.join(work, "ck");
    await fs.mkdir(ck, { recursive: true });
    const bigFile = path.join(ck, "model.pt");
    await fs.rename(big, bigFile);
    const pz = "pull zip (+extract)";
    const pb = "download large file";
    const up = "upload checkpoint";
    // Several rounds (BENCH_ROUNDS) report the median: a shared machine's load drifts during a run.
    const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
    for (let round = 1; round <= rounds; round++) {
      if (rounds > 1) console.log(`round ${round}/${rounds}`);
      // --- pull: zip of many files, download + extract ---
      let d = await fresh("agent");
      await add(
        pz,
        "agent",
        timed(node, [pullScript], agentEnv({ DATASET_ID: "bench", DATASET_DIR: path.join(d, "ds") }), ROOT),
        zipBytes,
      );
      d = await fresh("aws");
      await add(
        pz,
        "aws s3 cp + unzip",
        sequence([
          () =>
            timed(
              aws[0] as string,
              [...aws.slice(1), "s3", "cp", `s3://${BUCKET}/datasets/bench.zip`, path.join(d, "a.zip"), "--quiet"],
              env,
            ),
          () => timed("unzip", ["-q", path.join(d, "a.zip"), "-d", path.join(d, "ds")], env),
        ]),
        zipBytes,
      );
      d = await fresh("boto3");
      await add(
        pz,
        "boto3 + zipfile",
        timed(
          py,
          [
            "-c",
            `${boto}s3.download_file("${BUCKET}", "datasets/bench.zip", sys.argv[1] + "/a.zip")
zipfile.ZipFile(sys.argv[1] + "/a.zip").extractall(sys.argv[1] + "/ds")`,
            d,
          ],
          env,
        ),
        zipBytes,
      );
      d = await fresh("rclone");
      await add(
        pz,
        "rclone copy + unzip",
        sequence([
          () => timed("rclone", ["copy", `x:${BUCKET}/datasets/bench.zip`, d], env),
          () => timed("unzip", ["-q", path.join(d, "bench.zip"), "-d", path.join(d, "ds")], env),
        ]),
        zipBytes,
      );
      d = await fresh("cat");
      await add(
        pz,
        "floor: cat to disk",
        timed("sh", ["-c", `cat "$0" > "$1"`, zip, path.join(d, "a.zip")], env),
        zipBytes,
      );
      d = await fresh("curl");
      await add(
        pz,
        "floor: one GET (curl)",
        timed("curl", ["-sf", "-o", path.join(d, "a.zip"), `${server.endpoint}/${BUCKET}/datasets/bench.zip`], env),
        zipBytes,
      );

      // --- download: one large file ---
      d = await fresh("agent");
      await add(
        pb,
        "agent",
        timed(
          node,
          [pullScript],
          agentEnv({ DATASET_URI: `s3://${BUCKET}/datasets/big.bin`, DATASET_DIR: path.join(d, "ds") }),
          ROOT,
        ),
        bigBytes,
      );
      d = await fresh("aws");
      await add(
        pb,
        "aws s3 cp",
        timed(
          aws[0] as string,
          [...aws.slice(1), "s3", "cp", `s3://${BUCKET}/datasets/big.bin`, path.join(d, "big.bin"), "--quiet"],
          env,
        ),
        bigBytes,
      );
      d = await fresh("boto3");
      await add(
        pb,
        "boto3 download_file",
        timed(py, ["-c", `${boto}s3.download_file("${BUCKET}", "datasets/big.bin", sys.argv[1] + "/big.bin")`, d], env),
        bigBytes,
      );
      d = await fresh("rclone");
      await add(pb, "rclone copy", timed("rclone", ["copy", `x:${BUCKET}/datasets/big.bin`, d], env), bigBytes);
      d = await fresh("cat");
      await add(
        pb,
        "floor: cat to disk",
        timed("sh", ["-c", `cat "$0" > "$1"`, bigFile, path.join(d, "big.bin")], env),
        bigBytes,
      );
      d = await fresh("curl");
      await add(
        pb,
        "floor: one GET (curl)",
        timed("curl", ["-sf", "-o", path.join(d, "big.bin"), `${server.endpoint}/${BUCKET}/datasets/big.bin`], env),
        bigBytes,
      );

      // --- upload: one large checkpoint ---
      await add(
        up,
        "agent",
        timed(node, [uploadScript], agentEnv({ JOB_ID: "bench", CHECKPOINT_DIR: ck, BENCH_FILE: bigFile }), ROOT),
        bigBytes,
      );
      await add(
        up,
        "aws s3 cp",
        timed(aws[0] as string, [...aws.slice(1), "s3", "cp", bigFile, `s3://${BUCKET}/up/aws.pt`, "--quiet"], env),
        bigBytes,
      );
      await add(
        up,
        "boto3 upload_file",
        timed(py, ["-c", `${boto}s3.upload_file(sys.argv[1], "${BUCKET}", "up/boto.pt")`, bigFile], env),
        bigBytes,
      );
      await add(up, "rclone copyto", timed("rclone", ["copyto", bigFile, `x:${BUCKET}/up/rclone.pt`], env), bigBytes);
    }

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
        },
      });
    }
    if (rounds > 1) console.log(`\nmedian (lower middle) of ${rounds} rounds`);

    // --- table ---
    console.log("");
    console.log("| scenario | tool | seconds | MiB/s | peak RSS MiB | agent speed-up |");
    console.log("|---|---|---:|---:|---:|---:|");
    for (const r of rows) {
      const agent = rows.find((x) => x.what === r.what && x.tool === "agent");
      const ratio = agent ? r.t.seconds / agent.t.seconds : undefined;
      console.log(
        `| ${r.what} | ${r.tool} | ${fmt(r.t.seconds, 2)} | ${fmt(r.bytes / 1048576 / r.t.seconds, 0)} | ${fmt(r.t.rssMb, 0)} | ${r.tool === "agent" ? "1.00x" : `${fmt(ratio, 2)}x`} |`,
      );
    }
    const sec = (what: string, tool: string): number =>
      rows.find((r) => r.what === what && r.tool.startsWith(tool))?.t.seconds ?? NaN;
    const agentPull = sec(pz, "agent");
    const rss = rows.find((r) => r.what === pz && r.tool === "agent")?.t.rssMb ?? NaN;
    console.log("");
    console.log("targets:");
    console.log(
      `  pull zip: ${fmt(sec(pz, "aws") / agentPull, 2)}x aws-cli, ${fmt(sec(pz, "boto3") / agentPull, 2)}x boto3 (target >= 2x)`,
    );
    console.log(
      `  pull zip vs floor cat: ${fmt(agentPull / sec(pz, "floor: cat"), 2)}x the floor (target <= 1.3x); vs one GET through the server: ${fmt(agentPull / sec(pz, "floor: one GET"), 2)}x`,
    );
    console.log(
      `  download file: ${fmt(sec(pb, "aws") / sec(pb, "agent"), 2)}x aws-cli, ${fmt(sec(pb, "boto3") / sec(pb, "agent"), 2)}x boto3; ${fmt(sec(pb, "agent") / sec(pb, "floor: cat"), 2)}x cat floor, ${fmt(sec(pb, "agent") / sec(pb, "floor: one GET"), 2)}x one-GET floor`,
    );
    console.log(
      `  upload: ${fmt(sec(up, "aws") / sec(up, "agent"), 2)}x aws-cli, ${fmt(sec(up, "boto3") / sec(up, "agent"), 2)}x boto3 (target >= 1.5x)`,
    );
    console.log(`  agent peak RSS during the zip pull: ${fmt(rss, 0)} MiB (target < 200 MB)`);
    for (const f of failed) console.log(`  peer failed against this server: ${f}`);
  } finally {
    server.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await storageBench();
