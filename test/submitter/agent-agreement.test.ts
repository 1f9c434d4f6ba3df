/**
 * A request the submitter accepts is one the agent runs: `predict` and `dataset_url` are checked by the agent's
 * own definitions (src/config/predict.ts, datasetUrlExpected), and these tests hold the two verdicts side by side
 * over the same values, so a change on one side that the other does not share fails here.
 */
import { describe, expect, it } from "vitest";
import { loadAgentConfig, type Env } from "../../src/config/index.ts";
import { isAgentError } from "../../src/errors/index.ts";
import { normalizeJobRequest } from "../../src/submitter/index.ts";

const BASE = {
  name: "agree-1",
  namespace: "team-a",
  framework: "pytorch",
  command: "python3 train.py",
  callback: { base_url: "http://backend.astrago:8000", job_id: "42", token: "eyJhbGciOiJIUzI1NiJ9.e30.sig" },
};

/** The fields the submitter rejects the request for (none when it accepts it). */
function submitterRejects(patch: Record<string, unknown>): string[] {
  try {
    normalizeJobRequest({ ...BASE, ...patch }, { now: () => new Date("2026-12-06T08:00:00Z") });
    return [];
  } catch (error) {
    if (!isAgentError(error, "SPEC_INVALID")) throw error;
    return ((error.details?.problems ?? []) as Array<{ field: string }>).map((p) => p.field);
  }
}

/** The agent's problems that name `variable` (none when it accepts the value). */
function agentRejects(env: Env, variable: string, mode: "train" | "predict" = "train"): string[] {
  try {
    loadAgentConfig(env, { mode });
    return [];
  } catch (error) {
    if (!isAgentError(error, "CONFIG_INVALID")) throw error;
    return error.message.split("\n").filter((line) => line.includes(`${variable} must be`));
  }
}

const PREDICT_ENV: Env = { STORAGE_TYPE: "file", STORAGE_PATH: "/srv/bucket", JOB_ID: "p1" };

describe("the submitter and the agent agree on a predict job's model", () => {
  const jobIds = ["42", "train-7.b_c", "../other", "a/b", "-lead", "has space"];
  const modelUris = ["s3://ml/m.pt", "s3://ml/ckpt/", "file://ml/m.pt", "s3://ml", "s3://ml/", "s3://", "https://h/m"];
  const predictionsUris = ["s3://ml", "s3://ml/out/", "file://ml/out", "s3://", "/tmp/out", "https://h/out"];

  it.each(jobIds)("model job id %j", (id) => {
    const agent = agentRejects({ ...PREDICT_ENV, MODEL_JOB_ID: id }, "MODEL_JOB_ID", "predict");
    const submitter = submitterRejects({ predict: { model_job_id: id } });
    expect(submitter.length > 0).toBe(agent.length > 0);
  });

  it.each(modelUris)("model URI %j", (uri) => {
    const agent = agentRejects({ ...PREDICT_ENV, MODEL_URI: uri }, "MODEL_URI", "predict");
    expect(submitterRejects({ predict: { model_uri: uri } }).length > 0).toBe(agent.length > 0);
    // The short form (`--predict s3://...`) names a URI by its scheme and is checked as one.
    expect(submitterRejects({ predict: uri }).length > 0).toBe(
      agent.length > 0 || (!uri.startsWith("s3://") && !uri.startsWith("file://")),
    );
  });

  it.each(predictionsUris)("predictions URI %j", (uri) => {
    const agent = agentRejects(
      { ...PREDICT_ENV, MODEL_JOB_ID: "t1", PREDICTIONS_URI: uri },
      "PREDICTIONS_URI",
      "predict",
    );
    const submitter = submitterRejects({ predict: { model_job_id: "t1", predictions_uri: uri } });
    expect(submitter.length > 0).toBe(agent.length > 0);
  });

  it("reports a short-form URI without a key as a model URI, not as a job id", () => {
    let message = "";
    try {
      normalizeJobRequest({ ...BASE, predict: "s3://" }, { now: () => new Date() });
    } catch (error) {
      if (!isAgentError(error, "SPEC_INVALID")) throw error;
      message = error.message;
    }
    expect(message).toContain("must be s3://bucket/key");
  });
});

describe("the submitter and the agent agree on dataset_url / DATASET_URL", () => {
  it.each([
    "https://s3.example.com/b/set.zip?X-Amz-Signature=f00d",
    "http://127.0.0.1:9000/b/set.zip",
    "ftp://h/set.zip",
    "not a url",
    "https://user:pw@h/set.zip",
    "https://user@h/set.zip",
    "s3://b/set.zip",
  ])("%j", (url) => {
    const agent = agentRejects({ DATASET_URL: url }, "DATASET_URL");
    const submitter = submitterRejects({ dataset_url: url });
    expect(submitter.includes("dataset_url")).toBe(agent.length > 0);
  });
});
