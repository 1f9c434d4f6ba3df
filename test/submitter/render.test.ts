import { describe, expect, it } from "vitest";
import { isAgentError } from "../../src/errors/index.ts";
import {
  expandKubernetes,
  maxTrainJobNameLength,
  normalizeJobRequest,
  renderJob,
  RESTART_ATTEMPT_ENV_VAR,
  splitCommand,
  type JobSpec,
  type K8sObject,
} from "../../src/submitter/index.ts";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as shellQuoteParse } from "shell-quote";
import YAML from "yaml";
import { loadCrd, repoRoot } from "./helpers/crd.ts";

// Parsed once for the file: the CRD schema is ~0.2 MB of YAML.
const trainJobCrd = loadCrd("trainer.kubeflow.org_trainjobs.yaml");
const now = () => new Date("2025-11-05T13:00:00Z");

/** The request of the seed backend guide's curl example, unchanged. */
const SEED_PYTORCH = {
  user_id: "user123",
  namespace: "user-123",
  framework: "pytorch",
  training_code: 'import torch\nimport torch.nn as nn\nprint("Training...")',
  image: "pytorch/pytorch:2.2.2-cuda11.8-cudnn8-runtime",
  num_nodes: 2,
  cpu_request: "2",
  cpu_limit: "4",
  memory_request: "8Gi",
  memory_limit: "16Gi",
  gpu_count: 1,
  command: "python /workspace/scripts/train.py",
  env_vars: [
    { name: "EPOCHS", value: "10" },
    { name: "BATCH_SIZE", value: "64" },
  ],
  volumes: [
    { name: "dataset", pvc: "user123-dataset-pvc", mountPath: "/data", readOnly: true },
    { name: "models", pvc: "user123-models-pvc", mountPath: "/models", readOnly: false },
  ],
};

/** The integration guide's request form (`config{}`), unchanged. */
const SEED_CONFIG_FORM = {
  user_id: "user123",
  namespace: "user-123",
  framework: "pytorch",
  training_code: "import torch\nimport torch.nn as nn\n...",
  config: { num_nodes: 2, gpu_per_node: 1, cpu_per_node: 4, memory_per_node: "16Gi" },
};

/** The guide's TensorFlow TrainJob expressed as a request with its (v2.1, now removed) podTemplateOverrides. */
const SEED_TF_OVERRIDES = {
  name: "user-job-12345",
  namespace: "user-namespace",
  framework: "tensorflow",
  image: "tensorflow/tensorflow:2.15.0-gpu",
  num_nodes: 2,
  command: ["python3", "/workspace/scripts/train.py"],
  training_code: "print('tf')",
  cpu_request: "2",
  cpu_limit: "4",
  memory_request: "8Gi",
  memory_limit: "16Gi",
  gpu_count: 1,
  podTemplateOverrides: [
    {
      targetJobs: [{ name: "node" }],
      spec: {
        volumes: [
          { name: "train-script", configMap: { name: "user-train-script", defaultMode: 0o755 } },
          { name: "dataset", persistentVolumeClaim: { claimName: "user-dataset-pvc" } },
          { name: "models", persistentVolumeClaim: { claimName: "user-models-pvc" } },
        ],
        initContainers: [{ name: "tf-config-generator", env: [{ name: "PET_NNODES", value: "2" }] }],
        containers: [
          {
            name: "node",
            env: [
              { name: "EPOCHS", value: "10" },
              { name: "BATCH_SIZE", value: "64" },
            ],
            volumeMounts: [
              { name: "train-script", mountPath: "/workspace/scripts", readOnly: true },
              { name: "dataset", mountPath: "/data", readOnly: true },
              { name: "models", mountPath: "/models", readOnly: false },
            ],
          },
        ],
      },
    },
  ],
};

function render(request: unknown) {
  return renderJob(normalizeJobRequest(request, { now }));
}

type Trainer = {
  command: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  resourcesPerNode?: { limits?: Record<string, string>; requests?: Record<string, string> };
  numNodes: number;
  numProcPerNode: number;
  image?: string;
};
const trainer = (tj: K8sObject): Trainer => (tj.spec as { trainer: Trainer }).trainer;
const podPatch = (tj: K8sObject) =>
  (tj.spec as any).runtimePatches[0].trainingRuntimeSpec.template.spec.replicatedJobs[0].template.spec.template.spec; // eslint-disable-line @typescript-eslint/no-explicit-any

function specError(request: unknown): { fields: string[]; message: string } {
  try {
    normalizeJobRequest(request, { now });
  } catch (error) {
    if (!isAgentError(error, "SPEC_INVALID")) throw error;
    const problems = (error.details?.problems ?? []) as Array<{ field: string }>;
    return { fields: problems.map((p) => p.field), message: error.message };
  }
  throw new Error("expected SPEC_INVALID");
}

describe("rendering the seed requests (Trainer v2.3 form)", () => {
  it("renders the backend guide's PyTorch request: agent command, GPU requests = limits, env, volumes via runtimePatches", () => {
    const r = render(SEED_PYTORCH);
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const tj = r.trainJob;
    expect(tj.metadata.name).toBe("user123-job-20251105130000");
    expect(tj.metadata.namespace).toBe("user-123");
    expect((tj.spec as any).runtimeRef).toEqual({ name: "pytorch-simple" }); // eslint-disable-line @typescript-eslint/no-explicit-any
    const t = trainer(tj);
    expect(t.command).toEqual([
      "/opt/agent/trainer-agent",
      "run",
      "--framework",
      "pytorch",
      "--",
      "python",
      "/workspace/scripts/train.py",
    ]);
    expect(t.numNodes).toBe(2);
    expect(t.numProcPerNode).toBe(1);
    expect(t.resourcesPerNode).toEqual({
      limits: { cpu: "4", memory: "16Gi", "nvidia.com/gpu": "1" },
      requests: { cpu: "2", memory: "8Gi", "nvidia.com/gpu": "1" },
    });
    expect(t.env).toEqual([
      { name: "EPOCHS", value: "10" },
      { name: "BATCH_SIZE", value: "64" },
      { name: "JOB_ID", value: tj.metadata.name },
      RESTART_ATTEMPT_ENV_VAR,
    ]);
    const patch = podPatch(tj);
    expect(patch.volumes).toEqual([
      { name: "train-script", configMap: { name: "user123-job-20251105130000-train-script", defaultMode: 0o755 } },
      { name: "dataset", persistentVolumeClaim: { claimName: "user123-dataset-pvc", readOnly: true } },
      { name: "models", persistentVolumeClaim: { claimName: "user123-models-pvc" } },
    ]);
    expect(patch.containers).toEqual([
      {
        name: "node",
        volumeMounts: [
          { name: "train-script", mountPath: "/workspace/scripts", readOnly: true },
          { name: "dataset", mountPath: "/data", readOnly: true },
          { name: "models", mountPath: "/models" },
        ],
      },
    ]);
    expect(JSON.stringify(tj)).not.toMatch(/podTemplateOverrides|podSpecOverrides|PET_/);
    expect(r.configMap?.data).toEqual({ "train.py": SEED_PYTORCH.training_code });
    expect(r.secret).toBeUndefined();
  });

  it("renders the integration guide's config{} form: per-node values become requests = limits", () => {
    const r = render(SEED_CONFIG_FORM);
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const t = trainer(r.trainJob);
    expect(t.resourcesPerNode).toEqual({
      limits: { cpu: "4", memory: "16Gi", "nvidia.com/gpu": "1" },
      requests: { cpu: "4", memory: "16Gi", "nvidia.com/gpu": "1" },
    });
    expect(t.command.slice(5)).toEqual(["python3", "/workspace/scripts/train.py"]);
  });

  it("translates the retired podTemplateOverrides of the TensorFlow example into trainer.env and runtimePatches", () => {
    const r = render(SEED_TF_OVERRIDES);
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const t = trainer(r.trainJob);
    expect((r.trainJob.spec as any).runtimeRef.name).toBe("tensorflow-distributed"); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(t.command.slice(0, 5)).toEqual(["/opt/agent/trainer-agent", "run", "--framework", "tensorflow", "--"]);
    expect(t.numProcPerNode).toBe(1);
    expect(t.env).toEqual([
      { name: "EPOCHS", value: "10" },
      { name: "BATCH_SIZE", value: "64" },
      { name: "JOB_ID", value: "user-job-12345" },
      RESTART_ATTEMPT_ENV_VAR,
    ]);
    const patch = podPatch(r.trainJob);
    expect(patch.volumes.map((v: { name: string }) => v.name)).toEqual(["train-script", "dataset", "models"]);
    expect(patch.volumes[0].configMap.name).toBe("user-job-12345-train-script");
    expect(patch.initContainers).toBeUndefined();
    expect(r.warnings.join("\n")).toMatch(/initContainers: dropped/);
    expect(JSON.stringify(r.trainJob)).not.toMatch(/PET_NNODES|tf-config-generator|podTemplateOverrides/);
  });

  it("accepts the v2.0 podSpecOverrides shape (fields not nested under spec)", () => {
    const r = render({
      name: "old-job",
      framework: "pytorch",
      command: ["python3", "t.py"],
      podSpecOverrides: [
        {
          targetJobs: [{ name: "node" }],
          volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data-pvc" } }],
          containers: [{ name: "node", volumeMounts: [{ name: "data", mountPath: "/data" }] }],
          nodeSelector: { "gpu-type": "a100" },
          tolerations: [{ key: "gpu", operator: "Exists", effect: "NoSchedule" }],
        },
      ],
    });
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const patch = podPatch(r.trainJob);
    expect(patch.volumes).toEqual([{ name: "data", persistentVolumeClaim: { claimName: "data-pvc" } }]);
    expect(patch.nodeSelector).toEqual({ "gpu-type": "a100" });
    expect(patch.tolerations).toHaveLength(1);
  });

  it.each([
    ["pytorch without GPU", { framework: "pytorch", gpu_count: 0 }],
    ["tensorflow without GPU", { framework: "tensorflow", gpu_count: 0 }],
    ["tensorflow with 2 GPUs", { framework: "tensorflow", gpu_count: 2 }],
    ["pytorch with 4 GPUs", { framework: "pytorch", gpu_count: 4 }],
  ])("%s validates; the GPU resource appears only when gpu > 0", (_label, extra) => {
    const r = render({ ...SEED_PYTORCH, ...extra });
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const res = trainer(r.trainJob).resourcesPerNode!;
    if (extra.gpu_count > 0) {
      expect(res.limits?.["nvidia.com/gpu"]).toBe(String(extra.gpu_count));
      expect(res.requests?.["nvidia.com/gpu"]).toBe(String(extra.gpu_count));
    } else {
      expect(JSON.stringify(r.trainJob)).not.toContain("nvidia.com/gpu");
    }
    // One process per GPU for pytorch; always one TensorFlow worker per pod.
    expect(trainer(r.trainJob).numProcPerNode).toBe(extra.framework === "pytorch" ? Math.max(1, extra.gpu_count) : 1);
  });

  it("renders every volume source, env references and the baked-image agent command", () => {
    const r = render({
      name: "many",
      framework: "pytorch",
      image: "astrago/trainer-pytorch:0.1.0",
      command: "python3 /code/train.py",
      env_vars: [
        { name: "A", value: "1" },
        { name: "FROM_CM", valueFrom: { configMapKeyRef: { name: "cfg", key: "k" } } },
        { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      ],
      volumes: [
        { name: "code", configMap: "code-cm", mountPath: "/code", readOnly: true },
        { name: "creds", secret: "creds", mountPath: "/etc/creds" },
        { name: "scratch", emptyDir: { sizeLimit: "10Gi" }, mountPath: "/scratch" },
        { name: "host", hostPath: "/mnt/data", mountPath: "/mnt/data", subPath: "x" },
      ],
    });
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    expect(trainer(r.trainJob).command.slice(0, 2)).toEqual(["trainer-agent", "run"]);
    expect(podPatch(r.trainJob).volumes).toEqual([
      { name: "code", configMap: { name: "code-cm" } },
      { name: "creds", secret: { secretName: "creds" } },
      { name: "scratch", emptyDir: { sizeLimit: "10Gi" } },
      { name: "host", hostPath: { path: "/mnt/data" } },
    ]);
    expect(trainer(r.trainJob).env?.map((e) => e.name)).toEqual([
      "A",
      "FROM_CM",
      "POD_NAME",
      "JOB_ID",
      "JOBSET_RESTART_ATTEMPT",
    ]);
    expect(r.configMap).toBeUndefined();
  });

  it("keeps the callback token and credentials out of the TrainJob: Secret + secretKeyRef only", () => {
    const TOKEN = "eyJhbGciOiJIUzI1NiJ9.job-token.signature";
    const KEY = "SECRETKEY/abc+123";
    const r = render({
      ...SEED_PYTORCH,
      env_vars: [...SEED_PYTORCH.env_vars, { name: "HF_TOKEN", value: "hf_abcdef" }],
      callback: { base_url: "http://backend.astrago:8000", job_id: "42", token: TOKEN },
      storage: {
        type: "minio",
        endpoint: "http://minio:9000",
        bucket: "train",
        access_key_id: "AKIA1",
        secret_access_key: KEY,
      },
      dataset_id: "mnist",
    });
    expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
    const text = JSON.stringify(r.trainJob);
    for (const secret of [TOKEN, KEY, "AKIA1", "hf_abcdef"]) expect(text).not.toContain(secret);
    const env = Object.fromEntries((trainer(r.trainJob).env ?? []).map((e) => [e.name, e]));
    const secretName = "user123-job-20251105130000-trainer-secrets";
    expect(env.CALLBACK_TOKEN).toEqual({
      name: "CALLBACK_TOKEN",
      valueFrom: { secretKeyRef: { name: secretName, key: "callback-token" } },
    });
    expect(env.S3_SECRET_ACCESS_KEY?.valueFrom?.secretKeyRef).toEqual({
      name: secretName,
      key: "s3-secret-access-key",
    });
    expect(env.HF_TOKEN?.valueFrom?.secretKeyRef?.name).toBe(secretName);
    expect(env.JOB_ID).toEqual({ name: "JOB_ID", value: "42" });
    expect(env.BACKEND_BASE_URL?.value).toBe("http://backend.astrago:8000");
    expect(env.S3_ENDPOINT?.value).toBe("http://minio:9000");
    expect(env.DATASET_ID?.value).toBe("mnist");
    expect(r.secret?.stringData).toEqual({
      "hf-token": "hf_abcdef",
      "callback-token": TOKEN,
      "s3-access-key-id": "AKIA1",
      "s3-secret-access-key": KEY,
    });
  });

  it("references an existing storage Secret instead of copying keys", () => {
    const r = render({ ...SEED_PYTORCH, storage: { bucket: "b", credentials_secret: "minio-creds" } });
    const env = Object.fromEntries((trainer(r.trainJob).env ?? []).map((e) => [e.name, e]));
    expect(env.S3_ACCESS_KEY_ID?.valueFrom?.secretKeyRef).toEqual({ name: "minio-creds", key: "access-key-id" });
    expect(r.secret).toBeUndefined();
  });

  it("is deterministic: the same spec has the same hash, any change another", () => {
    const a = render(SEED_PYTORCH);
    expect(render(SEED_PYTORCH).specHash).toBe(a.specHash);
    expect(render({ ...SEED_PYTORCH, num_nodes: 3 }).specHash).not.toBe(a.specHash);
    expect(render({ ...SEED_PYTORCH, training_code: "print(2)" }).specHash).not.toBe(a.specHash);
    // The token value is not part of the job's identity (a re-registered token is the same job).
    const withToken = (token: string) =>
      render({ ...SEED_PYTORCH, callback: { base_url: "http://b", token } }).specHash;
    expect(withToken("one")).toBe(withToken("two"));
    // ... nor is knowing it: a re-submit (token registered earlier, unknown now) is the same job.
    expect(render({ ...SEED_PYTORCH, callback: { base_url: "http://b" } }).specHash).toBe(withToken("one"));
  });

  it("the strict CRD check catches what the API server would silently prune", () => {
    const tj = structuredClone(render(SEED_PYTORCH).trainJob);
    (tj.spec as Record<string, unknown>).podTemplateOverrides = [];
    expect(trainJobCrd.validate(tj).join("\n")).toMatch(/podTemplateOverrides/);
  });
});

describe("migrating the seeds' TrainJob YAML (v2.1 form) with render -f", () => {
  // The seed backend's two TrainJob forms (PyTorch, TensorFlow), restated as a fixture.
  const seedDocs = YAML.parseAllDocuments(
    readFileSync(path.join(repoRoot, "test/fixtures/submitter/v2.1-trainjobs.yaml"), "utf8"),
  ).map((d) => d.toJS() as Record<string, any>); // eslint-disable-line @typescript-eslint/no-explicit-any

  it.each([
    ["PyTorch", 0, "pytorch-simple", "pytorch", ["python", "/workspace/scripts/train.py"]],
    ["TensorFlow", 1, "tensorflow-distributed", "tensorflow", ["python3", "/workspace/scripts/train.py"]],
  ])(
    "%s example: bash -c env setup dropped, overrides become runtimePatches, CRD-valid",
    (_fw, i, runtime, fw, argv) => {
      const doc = structuredClone(seedDocs[i as number]!);
      expect(doc.spec.podTemplateOverrides).toBeDefined(); // really the old form
      const r = render(doc);
      expect(trainJobCrd.validate(r.trainJob)).toEqual([]);
      expect((r.trainJob.spec as any).runtimeRef.name).toBe(runtime); // eslint-disable-line @typescript-eslint/no-explicit-any
      const t = trainer(r.trainJob);
      expect(t.command).toEqual(["/opt/agent/trainer-agent", "run", "--framework", fw, "--", ...(argv as string[])]);
      expect(t.resourcesPerNode?.limits?.["nvidia.com/gpu"]).toBe("1");
      expect(t.env?.map((e) => e.name)).toEqual(expect.arrayContaining(["EPOCHS", "BATCH_SIZE"]));
      // The user's own code ConfigMap (no training_code given) stays mounted where it was.
      const patch = podPatch(r.trainJob);
      expect(patch.volumes).toContainEqual({ name: "train-script", configMap: { name: "user-train-script" } });
      expect(patch.containers[0].volumeMounts).toContainEqual({
        name: "train-script",
        mountPath: "/workspace/scripts",
        readOnly: true,
      });
      expect(JSON.stringify(r.trainJob)).not.toMatch(/export RANK|tf_config\.env|podTemplateOverrides|PET_NNODES/);
      expect(r.warnings.join("\n")).toMatch(/env-setup lines were dropped/);
    },
  );

  it("keeps a bash -c script of several commands as written, with a warning", () => {
    const doc = structuredClone(seedDocs[0]!);
    doc.spec.trainer.command[2] += "\npython /workspace/scripts/eval.py\n";
    const r = render(doc);
    expect(trainer(r.trainJob).command.slice(5, 7)).toEqual(["bash", "-c"]);
    expect(r.warnings.join("\n")).toMatch(/kept as bash -c/);
  });
});

describe("the command is an argv, never shell text", () => {
  it.each([
    ["python train.py; rm -rf /", ["python", "train.py;", "rm", "-rf", "/"]],
    ["python train.py ; echo hi", ["python", "train.py", ";", "echo", "hi"]],
    ["python train.py --user $(whoami)", ["python", "train.py", "--user", "$(whoami)"]],
    ["python t.py --x $(echo a b)", ["python", "t.py", "--x", "$(echo a b)"]],
    ["python t.py `id -u`", ["python", "t.py", "`id -u`"]],
    [`python t.py --msg "hello world" --q 'it''s'`, ["python", "t.py", "--msg", "hello world", "--q", "its"]],
    [`python t.py --json '{"a": 1}'`, ["python", "t.py", "--json", '{"a": 1}']],
    [`python t.py "a \\"quoted\\" word" \\$HOME`, ["python", "t.py", 'a "quoted" word', "$HOME"]],
    ["python t.py && echo done | tee x > y", ["python", "t.py", "&&", "echo", "done", "|", "tee", "x", ">", "y"]],
    ["  python\tt.py  \n --lr=0.1 ", ["python", "t.py", "--lr=0.1"]],
  ])("%s", (line, argv) => {
    const words = splitCommand(line);
    expect(words).toEqual(argv);
    for (const w of words) expect(typeof w).toBe("string"); // no operator objects
  });

  it("puts each element into the container command so that the kubelet's $(VAR) expansion gives it back unchanged", () => {
    const r = render({ ...SEED_PYTORCH, command: `python t.py ';' '$(EPOCHS)' "$$" 'x$(whoami)y' '$$(A)'` });
    const command = trainer(r.trainJob).command;
    const env = { EPOCHS: "10", whoami: "root", A: "a" };
    expect(command.slice(5).map((c) => expandKubernetes(c, env))).toEqual([
      "python",
      "t.py",
      ";",
      "$(EPOCHS)",
      "$$",
      "x$(whoami)y",
      "$$(A)",
    ]);
    expect(r.warnings.join("\n")).toMatch(/passed to the program literally/);
  });

  it.each([`python 'unterminated`, `python "unterminated`, "python $(unclosed", "python t.py \\"])(
    "%s is a named error",
    (line) => {
      const e = specError({ ...SEED_PYTORCH, command: line });
      expect(e.fields).toEqual(["command"]);
    },
  );

  it.each([
    `python t.py --msg "hello world" --q 'it''s'`,
    `python t.py "a \\"quoted\\" word"`,
    "a\\ b c",
    `x 'a"b' "c'd" ""`,
    "torchrun --nproc-per-node=4 train.py --config=/etc/cfg.yaml",
  ])("agrees with shell-quote where the command has only words and quotes: %s", (line) => {
    expect(splitCommand(line)).toEqual(shellQuoteParse(line));
  });

  it("is not shell-quote where that one would leak operator objects or expand $VAR to nothing", () => {
    expect(shellQuoteParse("python t.py; rm -rf /")).toContainEqual({ op: ";" });
    expect(shellQuoteParse("echo $HOME")).toEqual(["echo", ""]);
    expect(splitCommand("echo $HOME")).toEqual(["echo", "$HOME"]);
  });

  it("takes a list as the argv as is", () => {
    const r = render({ ...SEED_PYTORCH, command: ["python", "t.py", "a b", ";", "$(x)"] });
    expect(trainer(r.trainJob).command.slice(5)).toEqual(["python", "t.py", "a b", ";", "$$(x)"]);
  });
});

describe("a predict job (predict in the request, --predict)", () => {
  const trainer = (request: unknown) => (render(request).trainJob.spec as Record<string, any>).trainer; // eslint-disable-line @typescript-eslint/no-explicit-any
  const envOf = (request: unknown) =>
    Object.fromEntries((trainer(request).env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]));
  const base = { name: "predict-1", framework: "pytorch", dataset_id: "regression" };

  it("runs the agent with --mode predict and MODEL_JOB_ID, and predict.py of the code by default", () => {
    const request = { ...base, training_code: { "train.py": "t", "predict.py": "p" }, predict: "train-1" };
    expect(trainer(request).command).toEqual([
      "/opt/agent/trainer-agent",
      "run",
      "--mode",
      "predict",
      "--framework",
      "pytorch",
      "--",
      "python3",
      "/workspace/scripts/predict.py",
    ]);
    expect(envOf(request)).toMatchObject({ JOB_ID: "predict-1", MODEL_JOB_ID: "train-1", DATASET_ID: "regression" });
    expect(envOf(request).MODEL_URI).toBeUndefined();
    expect(trainJobCrd.validate(render(request).trainJob)).toEqual([]);
  });

  it("a model URI becomes MODEL_URI; predictions_uri becomes PREDICTIONS_URI", () => {
    expect(envOf({ ...base, command: "python3 p.py", predict: "s3://ml/checkpoints/job-7/epoch-3.pt" })).toMatchObject({
      MODEL_URI: "s3://ml/checkpoints/job-7/epoch-3.pt",
    });
    const env = envOf({
      ...base,
      command: "python3 p.py",
      predict: { modelUri: "s3://ml/custom/ckpt/", predictionsUri: "s3://ml/out/" },
    });
    expect(env).toMatchObject({ MODEL_URI: "s3://ml/custom/ckpt/", PREDICTIONS_URI: "s3://ml/out/" });
    expect(env.MODEL_JOB_ID).toBeUndefined();
  });

  it("a training is unchanged (no --mode), and predicting is part of the job's identity", () => {
    const training = { ...base, command: "python3 t.py" };
    expect(trainer(training).command.slice(0, 4)).toEqual([
      "/opt/agent/trainer-agent",
      "run",
      "--framework",
      "pytorch",
    ]);
    expect(render({ ...training, predict: "a" }).specHash).not.toBe(render(training).specHash);
    expect(render({ ...training, predict: "a" }).specHash).not.toBe(render({ ...training, predict: "b" }).specHash);
  });

  it("warns when the code has no predict.py, and keeps a user's own MODEL_JOB_ID with a warning", () => {
    const r = render({ ...base, training_code: "print(1)", predict: "train-1" });
    expect(r.warnings).toContain("predict: the code has no predict.py; the predict job runs train.py");
    const own = render({
      ...base,
      command: "python3 p.py",
      predict: "train-1",
      env_vars: [{ name: "MODEL_JOB_ID", value: "mine" }],
    });
    expect(own.warnings.join("\n")).toMatch(/env MODEL_JOB_ID: the job's own value is kept/);
  });
});

describe("validation names the field at fault", () => {
  it.each([
    ["framework", { framework: "mxnet" }],
    ["num_nodes", { num_nodes: 0 }],
    ["num_nodes", { num_nodes: 1.5 }],
    ["gpu_count", { gpu_count: -1 }],
    ["gpu_count", { gpu_count: 0.5 }],
    ["gpu_count", { gpu_count: "one" }],
    ["cpu_request", { cpu_request: "2 cores" }],
    ["memory_limit", { memory_limit: "16GB" }],
    ["memory_request", { memory_request: "32Gi" }], // above its limit
    ["cpu_request", { cpu_request: "-1" }],
    ["namespace", { namespace: "User_NS" }],
    ["user_id", { user_id: "User_123" }],
    ["name", { name: "9starts-with-digit" }],
    ["name", { name: "has.dot" }],
    ["image", { image: "bad image" }],
    ["env_vars[0].name", { env_vars: [{ name: "1BAD", value: "x" }] }],
    ["env_vars[0].name", { env_vars: [{ name: "HAS SPACE", value: "x" }] }],
    ["env_vars[0].name", { env_vars: [{ name: "PET_NODE_RANK", value: "0" }] }],
    ["env_vars[0].name", { env_vars: [{ name: "PET_NNODES", value: "5" }] }],
    [
      "env_vars[1].name",
      {
        env_vars: [
          { name: "A", value: "1" },
          { name: "A", value: "2" },
        ],
      },
    ],
    ["volumes[0].mountPath", { volumes: [{ name: "d", pvc: "p", mountPath: "data" }] }],
    ["volumes[0].mountPath", { volumes: [{ name: "d", pvc: "p", mountPath: "/a/../etc" }] }],
    [
      "volumes[1].mountPath",
      {
        volumes: [
          { name: "a", pvc: "p", mountPath: "/data" },
          { name: "b", pvc: "q", mountPath: "/data/" },
        ],
      },
    ],
    ["volumes[0].mountPath", { volumes: [{ name: "code", pvc: "p", mountPath: "/workspace/scripts" }] }],
    ["volumes[0].mountPath", { volumes: [{ name: "agentx", pvc: "p", mountPath: "/opt/agent" }] }],
    [
      "volumes[1].name",
      {
        volumes: [
          { name: "a", pvc: "p", mountPath: "/x" },
          { name: "a", pvc: "q", mountPath: "/y" },
        ],
      },
    ],
    ["volumes[0].name", { volumes: [{ name: "Data_Vol", pvc: "p", mountPath: "/x" }] }],
    ["volumes[0].name", { volumes: [{ name: "train-script", pvc: "p", mountPath: "/x" }] }],
    ["volumes[0].pvc", { volumes: [{ name: "d", pvc: "Bad_PVC", mountPath: "/x" }] }],
    ["volumes[0]", { volumes: [{ name: "d", mountPath: "/x" }] }],
    ["command", { command: "", training_code: undefined }],
    ["command", { command: 42 }],
    ["callback.base_url", { callback: { base_url: "backend:8000" } }],
    ["storage.type", { storage: { type: "gcs" } }],
    ["dataset_uri", { dataset_uri: "/local/path" }],
    ["predict", { predict: "has space" }],
    ["predict", { predict: {} }],
    ["predict", { predict: ["42"] }],
    ["predict", { predict: { model_job_id: "a", model_uri: "s3://b/k" } }],
    ["predict.model_job_id", { predict: { model_job_id: "../other" } }],
    ["predict.model_uri", { predict: { model_uri: "s3://bucket-only" } }],
    ["predict.predictions_uri", { predict: { model_job_id: "a", predictions_uri: "/tmp/out" } }],
  ])("%s", (field, patch) => {
    const e = specError({ ...SEED_PYTORCH, ...patch });
    expect(e.fields).toContain(field);
    expect(e.message).toContain(field);
  });

  it("never echoes a credential in an error", () => {
    const e = specError({
      ...SEED_PYTORCH,
      storage: { access_key_id: "AKIAXYZ", secret_access_key: { value: "wJalrXUtnFEMI" } },
    });
    expect(e.fields).toContain("storage.secret_access_key");
    expect(e.message).not.toMatch(/wJalrXUtnFEMI|AKIAXYZ/);
  });

  it("names both places when a seed override sets an env var the request already set", () => {
    const e = specError({
      ...SEED_PYTORCH,
      podTemplateOverrides: [
        {
          targetJobs: [{ name: "node" }],
          spec: { containers: [{ name: "node", env: [{ name: "EPOCHS", value: "5" }] }] },
        },
      ],
    });
    expect(e.fields).toEqual(["podTemplateOverrides[0].spec.containers[0].env[0].name"]);
    expect(e.message).toMatch(/EPOCHS is already set by env_vars\[0\]/);
  });

  it("reports every problem at once", () => {
    const e = specError({ framework: "mxnet", num_nodes: 0, user_id: "u", cpu_request: "x", gpu_count: -2 });
    expect(e.fields).toEqual(expect.arrayContaining(["framework", "num_nodes", "cpu_request", "gpu_count", "command"]));
  });

  it("drops PET_NNODES equal to num_nodes (the seed's TensorFlow advice) with a warning", () => {
    const spec = normalizeJobRequest({ ...SEED_PYTORCH, env_vars: [{ name: "PET_NNODES", value: "2" }] }, { now });
    expect(spec.env).toEqual([]);
    expect(spec.warnings.join()).toMatch(/PET_NNODES dropped/);
  });

  it("limits the TrainJob name so every pod name <name>-node-0-<i>-<5> stays within 63 characters", () => {
    expect(maxTrainJobNameLength(1)).toBe(48);
    expect(maxTrainJobNameLength(10)).toBe(48);
    expect(maxTrainJobNameLength(11)).toBe(47);
    expect(maxTrainJobNameLength(1000)).toBe(46);
    const name48 = "a".repeat(48);
    const ok: JobSpec = normalizeJobRequest({ ...SEED_PYTORCH, name: name48, num_nodes: 10 }, { now });
    const longestPod = `${ok.name}-node-0-${ok.numNodes - 1}-abcde`;
    expect(longestPod.length).toBe(63);
    expect(specError({ ...SEED_PYTORCH, name: "a".repeat(49), num_nodes: 10 }).fields).toEqual(["name"]);
    expect(specError({ ...SEED_PYTORCH, name: name48, num_nodes: 11 }).fields).toEqual(["name"]);
    // A user_id too long for the generated name is reported against user_id.
    expect(specError({ ...SEED_PYTORCH, user_id: "u".repeat(40) }).fields).toEqual(["user_id"]);
  });

  it("rejects training code beyond what a ConfigMap holds", () => {
    expect(specError({ ...SEED_PYTORCH, training_code: "x".repeat(1024 * 1024 + 1) }).fields).toEqual([
      "training_code",
    ]);
  });
});
