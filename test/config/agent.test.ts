import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import {
  EnvReader,
  loadAgentConfig,
  maskSecrets,
  Secret,
  secretList,
  secretValues,
  type Env,
} from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";

/** The CONFIG_INVALID message of a rejected environment (fails the test when the env is accepted). */
function rejection(env: Env): string {
  try {
    loadAgentConfig(env);
  } catch (error) {
    if (isAgentError(error, "CONFIG_INVALID")) return error.message;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be rejected`);
}

describe("loadAgentConfig: distributed variables", () => {
  it("defaults to a single local node", () => {
    const d = loadAgentConfig({}).distributed;
    expect(d).toMatchObject({
      nnodes: 1,
      nprocPerNode: 1,
      nodeRank: 0,
      masterAddr: "localhost",
      masterPort: 29500,
      tfPort: 2222,
      jobCompletionIndex: undefined,
      tfConfig: undefined,
    });
    expect([...d.explicit]).toEqual([]);
  });

  it.each<[string, Env, Record<string, unknown>]>([
    [
      "Trainer's injected values",
      {
        PET_NNODES: "4",
        PET_NPROC_PER_NODE: "2",
        PET_NODE_RANK: "3",
        PET_MASTER_ADDR: "j-node-0-0.j",
        PET_MASTER_PORT: "29500",
      },
      { nnodes: 4, nprocPerNode: 2, nodeRank: 3, masterAddr: "j-node-0-0.j", masterPort: 29500 },
    ],
    ["nproc auto (GPU runtimes)", { PET_NPROC_PER_NODE: "auto" }, { nprocPerNode: "auto" }],
    ["nproc GPU upper-case", { PET_NPROC_PER_NODE: "GPU" }, { nprocPerNode: "gpu" }],
    ["nproc cpu", { PET_NPROC_PER_NODE: "cpu" }, { nprocPerNode: "cpu" }],
    ["MIN:MAX with MIN == MAX", { PET_NNODES: "3:3", PET_NODE_RANK: "2" }, { nnodes: 3, nodeRank: 2 }],
    [
      "node rank from JOB_COMPLETION_INDEX",
      { PET_NNODES: "2", JOB_COMPLETION_INDEX: "1" },
      { nodeRank: 1, jobCompletionIndex: 1 },
    ],
    [
      "PET_NODE_RANK wins over JOB_COMPLETION_INDEX",
      { PET_NNODES: "3", PET_NODE_RANK: "2", JOB_COMPLETION_INDEX: "1" },
      { nodeRank: 2 },
    ],
    ["surrounding blanks trimmed", { PET_NNODES: " 2 ", PET_NODE_RANK: "1\n" }, { nnodes: 2, nodeRank: 1 }],
    ["empty values read as unset", { PET_NNODES: "", PET_MASTER_PORT: "  " }, { nnodes: 1, masterPort: 29500 }],
    ["ports at the bounds", { PET_MASTER_PORT: "1", TF_PORT: "65535" }, { masterPort: 1, tfPort: 65535 }],
    ["IPv4 master", { PET_MASTER_ADDR: "10.1.2.3" }, { masterAddr: "10.1.2.3" }],
    ["IPv6 master", { PET_MASTER_ADDR: "fd00::1" }, { masterAddr: "fd00::1" }],
    [
      "existing TF_CONFIG kept verbatim",
      { TF_CONFIG: '{"cluster":{"worker":["a:1"]},"task":{"type":"worker","index":0}}' },
      { tfConfig: '{"cluster":{"worker":["a:1"]},"task":{"type":"worker","index":0}}' },
    ],
    ["pod hostname", { HOSTNAME: "job-node-0-1" }, { hostname: "job-node-0-1" }],
  ])("accepts %s", (_name, env, expected) => {
    expect(loadAgentConfig(env).distributed).toMatchObject(expected);
  });

  it("records which PET_* variables were given", () => {
    const d = loadAgentConfig({ PET_MASTER_ADDR: "x-node-0-0.x", PET_NNODES: "2" }).distributed;
    expect([...d.explicit].sort()).toEqual(["PET_MASTER_ADDR", "PET_NNODES"]);
  });

  // Each rejection names the variable, the expected form and the value it got.
  it.each<[string, Env, string]>([
    [
      "non-integer nnodes",
      { PET_NNODES: "two" },
      'PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "two"',
    ],
    [
      "fractional nnodes",
      { PET_NNODES: "1.5" },
      'PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "1.5"',
    ],
    ["zero nnodes", { PET_NNODES: "0" }, 'PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "0"'],
    [
      "negative nnodes",
      { PET_NNODES: "-2" },
      'PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "-2"',
    ],
    [
      "elastic range nnodes",
      { PET_NNODES: "2:4" },
      'PET_NNODES must be a positive integer (or MIN:MAX with MIN == MAX), got "2:4"',
    ],
    [
      "zero nproc",
      { PET_NPROC_PER_NODE: "0" },
      'PET_NPROC_PER_NODE must be a positive integer or auto, cpu, gpu, got "0"',
    ],
    [
      "negative nproc",
      { PET_NPROC_PER_NODE: "-1" },
      'PET_NPROC_PER_NODE must be a positive integer or auto, cpu, gpu, got "-1"',
    ],
    [
      "word nproc",
      { PET_NPROC_PER_NODE: "many" },
      'PET_NPROC_PER_NODE must be a positive integer or auto, cpu, gpu, got "many"',
    ],
    [
      "exponent nproc",
      { PET_NPROC_PER_NODE: "1e2" },
      'PET_NPROC_PER_NODE must be a positive integer or auto, cpu, gpu, got "1e2"',
    ],
    ["non-integer node rank", { PET_NODE_RANK: "first" }, 'PET_NODE_RANK must be a non-negative integer, got "first"'],
    ["negative node rank", { PET_NODE_RANK: "-1" }, 'PET_NODE_RANK must be a non-negative integer, got "-1"'],
    [
      "node rank == nnodes",
      { PET_NNODES: "2", PET_NODE_RANK: "2" },
      'PET_NODE_RANK must be less than PET_NNODES (2), got "2"',
    ],
    [
      "node rank > nnodes",
      { PET_NNODES: "2", PET_NODE_RANK: "7" },
      'PET_NODE_RANK must be less than PET_NNODES (2), got "7"',
    ],
    [
      "completion index >= nnodes",
      { PET_NNODES: "2", JOB_COMPLETION_INDEX: "2" },
      'JOB_COMPLETION_INDEX (the node rank when PET_NODE_RANK is unset) must be less than PET_NNODES (2), got "2"',
    ],
    [
      "bad completion index",
      { JOB_COMPLETION_INDEX: "x" },
      'JOB_COMPLETION_INDEX must be a non-negative integer, got "x"',
    ],
    ["port 0", { PET_MASTER_PORT: "0" }, 'PET_MASTER_PORT must be a port from 1 to 65535, got "0"'],
    ["port 65536", { PET_MASTER_PORT: "65536" }, 'PET_MASTER_PORT must be a port from 1 to 65535, got "65536"'],
    ["port word", { PET_MASTER_PORT: "http" }, 'PET_MASTER_PORT must be a port from 1 to 65535, got "http"'],
    ["negative TF port", { TF_PORT: "-5" }, 'TF_PORT must be a port from 1 to 65535, got "-5"'],
    ["TF port too big", { TF_PORT: "70000" }, 'TF_PORT must be a port from 1 to 65535, got "70000"'],
    [
      "master with a port",
      { PET_MASTER_ADDR: "job-node-0-0.job:29500" },
      'PET_MASTER_ADDR must be a host name or IP address (no port, no scheme), got "job-node-0-0.job:29500"',
    ],
    [
      "master as URL",
      { PET_MASTER_ADDR: "tcp://10.0.0.1" },
      'PET_MASTER_ADDR must be a host name or IP address (no port, no scheme), got "tcp://10.0.0.1"',
    ],
    [
      "master with blanks",
      { PET_MASTER_ADDR: "a b" },
      'PET_MASTER_ADDR must be a host name or IP address (no port, no scheme), got "a b"',
    ],
    [
      "TF_CONFIG not JSON",
      { TF_CONFIG: "{cluster: worker}" },
      'TF_CONFIG must be a JSON object, got "{cluster: worker}"',
    ],
    ["TF_CONFIG a JSON array", { TF_CONFIG: "[1,2]" }, 'TF_CONFIG must be a JSON object, got "[1,2]"'],
    [
      "TF_CONFIG truncated",
      { TF_CONFIG: '{"cluster":{"worker":["a:1"]' },
      'TF_CONFIG must be a JSON object, got "{\\"cluster\\":{\\"worker\\":[\\"a:1\\"]"',
    ],
  ])("rejects %s", (_name, env, message) => {
    expect(rejection(env)).toContain(message);
  });

  it("reports every bad variable at once", () => {
    const message = rejection({
      PET_NNODES: "x",
      PET_MASTER_PORT: "0",
      TF_PORT: "y",
      HEARTBEAT_INTERVAL_SECONDS: "-1",
    });
    for (const name of ["PET_NNODES", "PET_MASTER_PORT", "TF_PORT", "HEARTBEAT_INTERVAL_SECONDS"])
      expect(message).toContain(`${name} must be`);
  });

  it("keeps the message on one line even for a multi-line value", () => {
    expect(rejection({ TF_CONFIG: "{\n  oops\n}" })).not.toContain("\n");
  });

  it("shortens a long TF_CONFIG in the message", () => {
    const message = rejection({ TF_CONFIG: `not json ${"x".repeat(500)}` });
    expect(message.length).toBeLessThan(250);
  });
});

describe("loadAgentConfig: DATASET_DIR and CHECKPOINT_DIR (a pull replaces DATASET_DIR wholesale)", () => {
  it.each<[string, Env, string[]]>([
    [
      "CHECKPOINT_DIR inside DATASET_DIR",
      { DATASET_DIR: "/w/data", CHECKPOINT_DIR: "/w/data/ck" },
      ["DATASET_DIR", "CHECKPOINT_DIR"],
    ],
    [
      "DATASET_DIR inside CHECKPOINT_DIR",
      { DATASET_DIR: "/w/ck/data", CHECKPOINT_DIR: "/w/ck/" },
      ["DATASET_DIR", "CHECKPOINT_DIR"],
    ],
    ["the same folder", { DATASET_DIR: "/w/x", CHECKPOINT_DIR: "/w/./x/" }, ["DATASET_DIR", "CHECKPOINT_DIR"]],
    ["DATASET_DIR=/", { DATASET_DIR: "/" }, ["DATASET_DIR must be a folder of its own, not the root folder"]],
    ["DATASET_DIR=/w/..", { DATASET_DIR: "/w/.." }, ["DATASET_DIR must be a folder of its own, not the root folder"]],
    ["CHECKPOINT_DIR=/", { CHECKPOINT_DIR: "/" }, ["CHECKPOINT_DIR must be a folder of its own, not the root folder"]],
    ["DATASET_DIR=.", { DATASET_DIR: "." }, ["DATASET_DIR must be a folder of its own, not the working folder"]],
    // `..` is the working folder's parent: "the working folder" (an ancestor of it), or "a system folder" where the
    // clone sits in /tmp; either way rejected, whatever the checkout's path.
    ["DATASET_DIR=..", { DATASET_DIR: ".." }, ["DATASET_DIR must be a folder of its own, not ", 'got ".."']],
    [
      "an empty DATASET_DIR",
      { DATASET_DIR: "" },
      ['DATASET_DIR must be a folder path (unset for the default), got ""'],
    ],
    ["a blank CHECKPOINT_DIR", { CHECKPOINT_DIR: "  " }, ["CHECKPOINT_DIR must be a folder path"]],
    ["DATASET_DIR=/etc", { DATASET_DIR: "/etc/" }, ["DATASET_DIR must be a folder of its own, not a system folder"]],
    [
      "CHECKPOINT_DIR=/usr",
      { CHECKPOINT_DIR: "/usr" },
      ["CHECKPOINT_DIR must be a folder of its own, not a system folder"],
    ],
    [
      "DATASET_DIR=HOME",
      { HOME: "/home/me", DATASET_DIR: "/home/me" },
      ["DATASET_DIR must be a folder of its own, not HOME"],
    ],
  ])("rejects %s, naming the variables", (_name, env, parts) => {
    const message = rejection(env);
    for (const part of parts) expect(message).toContain(part);
  });

  it("resolves relative folders and accepts separate ones (siblings with a common prefix too)", () => {
    const s = loadAgentConfig({ DATASET_DIR: "data", CHECKPOINT_DIR: "/w/data-ck" }).storage;
    expect(s.datasetDir).toBe(`${process.cwd()}/data`);
    expect(loadAgentConfig({ DATASET_DIR: "/w/data", CHECKPOINT_DIR: "/w/data-ck" }).storage.checkpointDir).toBe(
      "/w/data-ck",
    );
  });
});

describe("loadAgentConfig: a predict run (--mode predict)", () => {
  const ok: Env = { STORAGE_TYPE: "file", STORAGE_PATH: "/srv/bucket", JOB_ID: "p1", MODEL_JOB_ID: "t1" };
  const predictRejection = (env: Env): string => {
    try {
      loadAgentConfig(env, { mode: "predict" });
    } catch (error) {
      if (isAgentError(error, "CONFIG_INVALID")) return error.message;
      throw error;
    }
    throw new Error(`expected ${JSON.stringify(env)} to be rejected in predict mode`);
  };

  it("reads the model and the output, with defaults; a training reads none of it", () => {
    const c = loadAgentConfig(ok, { mode: "predict" });
    expect(c.mode).toBe("predict");
    expect(c.predict).toEqual({
      modelJobId: "t1",
      modelUri: undefined,
      predictionsDir: "/workspace/predictions",
      predictionsUri: undefined,
    });
    const u = loadAgentConfig(
      { ...ok, MODEL_JOB_ID: undefined, MODEL_URI: "s3://ml/m.pt", PREDICTIONS_URI: "s3://ml/out/", JOB_ID: undefined },
      { mode: "predict" },
    ).predict;
    expect(u).toMatchObject({ modelUri: "s3://ml/m.pt", predictionsUri: "s3://ml/out/" });
    // A training ignores the predict variables, even bad ones.
    const t = loadAgentConfig({ ...ok, MODEL_JOB_ID: "../x", PREDICTIONS_DIR: "/" });
    expect(t.mode).toBe("train");
    expect(t.predict).toBeUndefined();
  });

  it.each<[string, Env, string]>([
    ["no model", { ...ok, MODEL_JOB_ID: undefined }, "MODEL_JOB_ID or MODEL_URI must be set for a predict run"],
    ["two models", { ...ok, MODEL_URI: "s3://ml/m.pt" }, "MODEL_JOB_ID and MODEL_URI both name a model"],
    ["a job id with a slash", { ...ok, MODEL_JOB_ID: "a/b" }, "MODEL_JOB_ID must be a job id"],
    [
      "a model URI without a key",
      { ...ok, MODEL_JOB_ID: undefined, MODEL_URI: "s3://ml" },
      "MODEL_URI must be an s3://bucket/key URI (a checkpoint object, or a checkpoint root ending in '/'), got \"s3://ml\"",
    ],
    [
      "an http PREDICTIONS_URI",
      { ...ok, PREDICTIONS_URI: "https://x/y" },
      'PREDICTIONS_URI must be an s3://bucket/prefix/ URI, got "https://x/y"',
    ],
    ["no JOB_ID nor PREDICTIONS_URI", { ...ok, JOB_ID: undefined }, "JOB_ID or PREDICTIONS_URI must be set"],
    ["no storage", { JOB_ID: "p1", MODEL_JOB_ID: "t1" }, "a predict run needs storage"],
    [
      "PREDICTIONS_DIR=/",
      { ...ok, PREDICTIONS_DIR: "/" },
      "PREDICTIONS_DIR must be a folder of its own, not the root folder",
    ],
    [
      "PREDICTIONS_DIR inside CHECKPOINT_DIR",
      { ...ok, CHECKPOINT_DIR: "/w/ck", PREDICTIONS_DIR: "/w/ck/out" },
      'PREDICTIONS_DIR ("/w/ck/out") and CHECKPOINT_DIR ("/w/ck") must be separate folders',
    ],
  ])("rejects %s, naming the variable (exit 78)", (_name, env, part) => {
    expect(predictRejection(env)).toContain(part);
  });
});

describe("loadAgentConfig: other variables", () => {
  it.each<[string, Env, string]>([
    [
      "heartbeat interval",
      { HEARTBEAT_INTERVAL_SECONDS: "0" },
      'HEARTBEAT_INTERVAL_SECONDS must be a number from 1 to 86400, got "0"',
    ],
    [
      "grace seconds",
      { TERMINATION_GRACE_SECONDS: "soon" },
      'TERMINATION_GRACE_SECONDS must be a number from 0 to 3600, got "soon"',
    ],
    [
      "backend URL",
      { BACKEND_BASE_URL: "backend:8000", JOB_ID: "j", CALLBACK_TOKEN: "t" },
      'BACKEND_BASE_URL must be a URL starting with http:// or https://, got "backend:8000"',
    ],
    ["storage type", { STORAGE_TYPE: "gcs" }, 'STORAGE_TYPE must be one of minio, r2, s3, file, got "gcs"'],
    [
      "dataset uri",
      { DATASET_URI: "http://x/y" },
      'DATASET_URI must be an s3://bucket/key-or-prefix URI, got "http://x/y"',
    ],
    [
      "dataset id escape",
      { DATASET_ID: "../etc" },
      `DATASET_ID must be a dataset name without '..' or a leading '/', got "../etc"`,
    ],
    [
      "traceparent",
      { TRACEPARENT: "abc" },
      'TRACEPARENT must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>), got "abc"',
    ],
    [
      "traceparent version ff",
      { TRACEPARENT: "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
      "TRACEPARENT must be a W3C traceparent",
    ],
    [
      "traceparent zero trace id",
      { TRACEPARENT: "00-00000000000000000000000000000000-00f067aa0ba902b7-01" },
      "TRACEPARENT must be a W3C traceparent",
    ],
    [
      "traceparent zero parent id",
      { TRACEPARENT: "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01" },
      "TRACEPARENT must be a W3C traceparent",
    ],
    [
      "callbacks without job id",
      { BACKEND_BASE_URL: "http://b", CALLBACK_TOKEN: "t" },
      "JOB_ID must be set when BACKEND_BASE_URL is set",
    ],
    [
      "callbacks without token",
      { BACKEND_BASE_URL: "http://b", JOB_ID: "j" },
      "CALLBACK_TOKEN or CALLBACK_TOKEN_FILE must be set",
    ],
  ])("rejects %s", (_name, env, message) => {
    expect(rejection(env)).toContain(message);
  });

  it("accepts a valid traceparent", () => {
    const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    expect(loadAgentConfig({ TRACEPARENT: tp }).traceparent).toBe(tp);
  });

  it("reads a blank CALLBACK_TOKEN as unset", () => {
    expect(rejection({ BACKEND_BASE_URL: "http://b", JOB_ID: "j", CALLBACK_TOKEN: " \n" })).toContain(
      "CALLBACK_TOKEN or CALLBACK_TOKEN_FILE must be set",
    );
  });

  it("reads callbacks and storage with their defaults", () => {
    const c = loadAgentConfig({
      BACKEND_BASE_URL: "http://127.0.0.1:8000",
      JOB_ID: "job-1",
      CALLBACK_TOKEN: "tok",
      S3_ENDPOINT: "http://127.0.0.1:9000",
      S3_BUCKET: "b",
    });
    expect(c.callbacks.baseUrl?.href).toBe("http://127.0.0.1:8000/");
    expect(c.callbacks.heartbeatIntervalSeconds).toBe(30);
    expect(c.storage).toMatchObject({
      type: "minio",
      bucket: "b",
      region: "us-east-1",
      datasetDir: "/workspace/dataset",
    });
    expect(c.terminationGraceSeconds).toBe(25);
  });

  it("returns a frozen config", () => {
    const c = loadAgentConfig({ PET_NNODES: "2" });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.distributed)).toBe(true);
    expect(Object.isFrozen(c.baseEnv)).toBe(true);
  });
});

describe("loadAgentConfig: secrets", () => {
  const secrets: Env = {
    CALLBACK_TOKEN: "eyJhbGciOiJIUzI1NiJ9.tok-value-1",
    S3_ACCESS_KEY_ID: "AKIAEXAMPLEKEY99",
    S3_SECRET_ACCESS_KEY: "wJalrXUtnFEMI-secret-2",
    AWS_SESSION_TOKEN: "session-token-3",
  };
  const values = Object.values(secrets) as string[];

  it("holds secrets as Secret values that print as ***", () => {
    const c = loadAgentConfig({ ...secrets, BACKEND_BASE_URL: "http://b", JOB_ID: "j", S3_ENDPOINT: "http://s3" });
    expect(c.callbacks.token).toBeInstanceOf(Secret);
    expect(c.callbacks.token?.reveal()).toBe(secrets.CALLBACK_TOKEN);
    expect(c.storage.secretAccessKey?.reveal()).toBe(secrets.S3_SECRET_ACCESS_KEY);
    // The child still gets the real values.
    expect(c.baseEnv.S3_SECRET_ACCESS_KEY).toBe(secrets.S3_SECRET_ACCESS_KEY);
    const printed = [JSON.stringify(c), inspect(c, { depth: 10 }), `${String(c.callbacks.token)}`].join("\n");
    for (const v of values) expect(printed).not.toContain(v);
    expect(printed).toContain("***");
  });

  it.each<[string, Env]>([
    ["a bad port", { PET_MASTER_PORT: "0" }],
    ["a bad URL", { BACKEND_BASE_URL: "nope" }],
    ["callbacks missing a job id", { BACKEND_BASE_URL: "http://b" }],
  ])("never shows a secret in an error: %s", (_name, env) => {
    let caught: unknown;
    try {
      loadAgentConfig({ ...secrets, ...env });
    } catch (error) {
      caught = error;
    }
    expect(isAgentError(caught, "CONFIG_INVALID")).toBe(true);
    const text = [String(caught), JSON.stringify((caught as { details?: unknown }).details), inspect(caught)].join(
      "\n",
    );
    for (const v of values) expect(text).not.toContain(v);
  });
});

describe("EnvReader", () => {
  it("shows a secret variable's bad value as ***", () => {
    const r = new EnvReader({ CALLBACK_TOKEN: "tok-secret-9" }, ["CALLBACK_TOKEN"]);
    r.problem("CALLBACK_TOKEN", "a JWT", "tok-secret-9");
    expect(r.problems).toEqual(["CALLBACK_TOKEN must be a JWT, got ***"]);
  });

  it.each([
    ["BACKEND_BASE_URL", "https://admin:hunter2@backend:8000"],
    ["S3_ENDPOINT", "http://AKIA123:wJalr-secret@minio:9000"],
  ])("rejects credentials inside %s without showing them", (name, value) => {
    const message = rejection({ [name]: value, JOB_ID: "j", CALLBACK_TOKEN: "t" });
    expect(message).toContain(`${name} must be a URL without user:password@`);
    expect(message).toContain("//***@");
    for (const part of ["hunter2", "admin", "wJalr-secret", "AKIA123"]) expect(message).not.toContain(part);
  });
});

describe("secretValues and maskSecrets (what leaves the agent is masked)", () => {
  const env: Env = {
    CALLBACK_TOKEN: "tok-123456",
    S3_ACCESS_KEY_ID: "AKIA0000",
    S3_SECRET_ACCESS_KEY: "secret-abcdef",
    HF_TOKEN: "hf_longtoken",
    WANDB_API_KEY: "wandb-key-1",
    DB_PASS: "hunter22",
    GITHUB_PAT: "ghp_abcdef",
    DATABASE_URL: "postgres://u:p%40ss-word@db/x",
    DATASET_URL: "https://s3.example/b/set.zip?X-Amz-Credential=AK%2F1&X-Amz-Signature=f00dfeed",
    MIRROR: "https://mirror.example/set.zip?version=2&mirror=eu",
    SHORT_TOKEN: "abc",
    MODEL_NAME: "resnet-50-v2",
    TOKENIZERS_PARALLELISM: "falsefalse",
    PWD: "/workspace/run",
  };
  const values = secretValues(loadAgentConfig(env));

  it.each([
    ["the callback token", "tok-123456"],
    ["the access key", "AKIA0000"],
    ["the S3 secret key", "secret-abcdef"],
    ["HF_TOKEN", "hf_longtoken"],
    ["WANDB_API_KEY", "wandb-key-1"],
    ["DB_PASS", "hunter22"],
    ["GITHUB_PAT", "ghp_abcdef"],
    ["a URL's password, encoded", "p%40ss-word"],
    ["a URL's password, decoded", "p@ss-word"],
    ["a presigned URL's query", "X-Amz-Credential=AK%2F1&X-Amz-Signature=f00dfeed"],
  ])("masks %s", (_name, value) => {
    expect(maskSecrets(`a ${value} b ${value}`, values)).toBe("a *** b ***");
  });

  it.each([
    ["a value under 6 characters", "abc"],
    ["an ordinary variable", "resnet-50-v2"],
    ["a name that only starts like a secret one", "falsefalse"],
    ["the working folder (PWD)", "/workspace/run"],
    ["a presigned URL's host and path", "https://s3.example/b/set.zip"],
    ["a URL's query without a credential parameter", "version=2&mirror=eu"],
  ])("leaves %s", (_name, text) => {
    expect(maskSecrets(text, values)).toBe(text);
  });

  it("masks a value that holds another one whole", () => {
    const list = secretList(["secret-abcdef", "secret-abcdef-and-more", "secret-abcdef"]);
    expect(list).toEqual(["secret-abcdef-and-more", "secret-abcdef"]);
    expect(maskSecrets("x secret-abcdef-and-more y", list)).toBe("x *** y");
  });
});

describe("loadAgentConfig: MLflow", () => {
  it("is off without MLFLOW_TRACKING_URI; on with an http(s) one, with MLflow's defaults", () => {
    expect(loadAgentConfig({})).toMatchObject({ mlflow: undefined, mlflowNote: undefined });
    const c = loadAgentConfig({ MLFLOW_TRACKING_URI: "https://mlflow.example:5000/base" });
    expect(c.mlflow).toMatchObject({
      experimentName: "astrago-trainer",
      experimentId: undefined,
      token: undefined,
      username: undefined,
      insecureTls: false,
      flushSeconds: 10,
    });
    expect(c.mlflow?.trackingUri.href).toBe("https://mlflow.example:5000/base");
  });

  it.each([
    ["file:./mlruns", { MLFLOW_TRACKING_URI: "file:./mlruns" }, "not an http(s) tracking server"],
    ["databricks", { MLFLOW_TRACKING_URI: "databricks" }, "not an http(s) tracking server"],
    ["MLFLOW_MIRROR=false", { MLFLOW_TRACKING_URI: "http://m:5000", MLFLOW_MIRROR: "false" }, "MLFLOW_MIRROR is false"],
    [
      "MLFLOW_MIRROR=false, variables the agent would refuse",
      { MLFLOW_TRACKING_URI: "http://", MLFLOW_TRACKING_USERNAME: "alice", MLFLOW_MIRROR: "false" },
      "MLFLOW_MIRROR is false",
    ],
  ])("leaves a tracking URI it does not mirror to the training code, with a note: %s", (_n, env, note) => {
    const c = loadAgentConfig(env);
    expect(c.mlflow).toBeUndefined();
    expect(c.mlflowNote).toContain(note);
  });

  it.each<[string, Env, string]>([
    ["a malformed URL", { MLFLOW_TRACKING_URI: "http://" }, "MLFLOW_TRACKING_URI must be a URL starting with"],
    [
      "half of Basic auth",
      { MLFLOW_TRACKING_URI: "http://m", MLFLOW_TRACKING_USERNAME: "alice" },
      "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together",
    ],
    ["a bad flush", { MLFLOW_TRACKING_URI: "http://m", MLFLOW_FLUSH_SECONDS: "soon" }, "MLFLOW_FLUSH_SECONDS must be"],
    [
      "a bad TLS switch",
      { MLFLOW_TRACKING_URI: "http://m", MLFLOW_TRACKING_INSECURE_TLS: "maybe" },
      "MLFLOW_TRACKING_INSECURE_TLS must be a boolean",
    ],
  ])("rejects %s naming the variable", (_n, env, message) => {
    expect(rejection(env)).toContain(message);
  });

  it("holds the token and password as secrets: masked in what is sent and never in an error", () => {
    const env = {
      MLFLOW_TRACKING_URI: "http://m",
      MLFLOW_TRACKING_TOKEN: "mlflow-tok-123456",
      MLFLOW_TRACKING_USERNAME: "alice",
      MLFLOW_TRACKING_PASSWORD: "mlflow-pw-654321",
    };
    const c = loadAgentConfig(env);
    expect(c.mlflow?.token?.reveal()).toBe("mlflow-tok-123456");
    expect(JSON.stringify(c)).not.toMatch(/mlflow-tok|mlflow-pw/);
    expect(inspect(c, { depth: 10 })).not.toMatch(/mlflow-tok|mlflow-pw/);
    expect(secretValues(c)).toEqual(expect.arrayContaining(["mlflow-tok-123456", "mlflow-pw-654321"]));
    const message = rejection({ ...env, MLFLOW_TRACKING_TOKEN: "mlflow-tok-123456", PET_NNODES: "x" });
    expect(message).not.toMatch(/mlflow-tok|mlflow-pw/);
  });
});
