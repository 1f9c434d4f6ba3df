/**
 * The bucket side of local runs: an embedded S3-compatible server (fauxqs, in-process, in memory) when no storage
 * is configured, the dataset seeded from a local folder, and the checkpoint keys listed for the summary.
 * The AWS SDK and fauxqs are imported lazily: they are needed only by `trainer-agent local`.
 */
import { basename } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { AgentError } from "../errors/index.ts";

export interface S3Target {
  endpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface EmbeddedS3 {
  target: S3Target;
  stop(): Promise<void>;
}

/** Starts fauxqs on 127.0.0.1 (a free port) and creates the bucket. Credentials are fixed, local-only values. */
export async function startEmbeddedS3(bucket: string): Promise<EmbeddedS3> {
  const { startFauxqs } = await import("fauxqs");
  const server = await startFauxqs({ port: 0, host: "127.0.0.1", logger: false });
  server.createBucket(bucket);
  return {
    target: {
      endpoint: server.address,
      region: "us-east-1",
      bucket,
      accessKeyId: "local",
      secretAccessKey: "local-secret",
    },
    stop: () => server.stop(),
  };
}

export async function s3Client(target: S3Target): Promise<S3Client> {
  const { S3Client } = await import("@aws-sdk/client-s3");
  return new S3Client({
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
  });
}

/** A dataset id from a folder name: lower-case letters, digits, '.', '_' and '-'. */
export function datasetIdFor(dir: string): string {
  const id = basename(dir.replace(/[/\\]+$/, ""))
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[-.]+|-+$/g, "");
  return id === "" ? "dataset" : id;
}

/**
 * Packs `dir` as `datasets/{id}.tar.gz` (an archive form the agent pulls) and uploads it; returns the key and the
 * archive's size. Streams: the folder is never held in memory.
 */
export async function seedDataset(
  client: S3Client,
  bucket: string,
  dir: string,
  id: string,
  signal?: AbortSignal,
  onProgress?: (bytes: number) => void,
): Promise<{ key: string; bytes: number; files: number }> {
  const { stat } = await import("node:fs/promises");
  const info = await stat(dir).catch((error: unknown) => {
    throw new AgentError("USAGE", `--dataset ${dir}: ${(error as Error).message}`, { cause: error });
  });
  if (!info.isDirectory()) throw new AgentError("USAGE", `--dataset ${dir}: not a directory`);
  const tar = await import("tar");
  const { Upload } = await import("@aws-sdk/lib-storage");
  const { PassThrough } = await import("node:stream");
  const key = `datasets/${id}.tar.gz`;
  let files = 0;
  let bytes = 0;
  const counter = new PassThrough();
  counter.on("data", (b: Buffer) => {
    bytes += b.length;
    onProgress?.(bytes);
  });
  const archive = tar.create(
    {
      gzip: true,
      cwd: dir,
      portable: true,
      filter: (_path, entry) => {
        if ("isFile" in entry && typeof entry.isFile === "function" && entry.isFile()) files++;
        return true;
      },
    },
    ["."],
  );
  archive.pipe(counter);
  const upload = new Upload({
    client,
    params: { Bucket: bucket, Key: key, Body: counter, ContentType: "application/gzip" },
  });
  const onAbort = (): void => void upload.abort().catch(() => undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await upload.done();
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return { key, bytes, files };
}

/** Keys (with sizes) under a prefix, in key order. */
export async function listKeys(
  client: S3Client,
  bucket: string,
  prefix: string,
): Promise<Array<{ key: string; bytes: number }>> {
  const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
  const out: Array<{ key: string; bytes: number }> = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, bytes: o.Size ?? 0 });
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
