/**
 * `trainer-agent local --example`: the README's main job. Real PyTorch DDP (examples/ddp_train.py, gloo on CPU)
 * when /usr/bin/python3 (or python3) can `import torch`, else the plain-Python example; both seeded with the
 * example dataset, and followed by a predict job (examples/predict.py) over the model the training stored. Needs the source checkout (the examples are not in the single-file build).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { AgentError } from "../errors/index.ts";

export interface ExampleRun {
  command: string[];
  framework: string;
  dataset: string;
  datasetId: string;
  /** The predict job after the training (examples/predict.py over the model it stored). */
  predict: string[];
  /** Only for Debian's torch 1.13 torchrun (see docs/local.md); never an agent default. */
  extraEnv: Record<string, string>;
  description: string;
}

/** Interpreters tried for torch, in order: the system one first (Debian's python3-torch lives there). */
const TORCH_PYTHONS = ["/usr/bin/python3", "python3"];

export function findTorchPython(
  candidates: readonly string[] = TORCH_PYTHONS,
  probe: (python: string) => boolean = canImportTorch,
): string | undefined {
  return candidates.find((p) => probe(p));
}

function canImportTorch(python: string): boolean {
  const r = spawnSync(python, ["-c", "import torch, torch.distributed as d; assert d.is_available()"], {
    stdio: "ignore",
    timeout: 60_000,
  });
  return r.status === 0;
}

function hasPython(python: string): boolean {
  return (
    spawnSync(python, ["-c", "import sys; assert sys.version_info >= (3, 6)"], { stdio: "ignore", timeout: 30_000 })
      .status === 0
  );
}

export function exampleRun(
  examplesDir: string,
  torchPython: string | undefined,
  epochs = 5,
  plainPython: (python: string) => boolean = hasPython,
): ExampleRun {
  const dataset = join(examplesDir, "data");
  if (!existsSync(join(examplesDir, "plain_train.py")) || !existsSync(dataset))
    throw new AgentError(
      "USAGE",
      `--example needs the examples folder of the source checkout (looked in ${examplesDir}); ` +
        "run it from the repository: npm run demo",
    );
  const common = ["--epochs", String(epochs), "--epoch-seconds", "0.3"];
  if (torchPython !== undefined)
    return {
      command: [torchPython, join(examplesDir, "ddp_train.py"), ...common],
      predict: [torchPython, join(examplesDir, "predict.py")],
      framework: "pytorch",
      dataset,
      datasetId: "example-regression",
      extraEnv: { PET_REDIRECTS: "9:1", PET_TEE: "9:1" },
      description: `PyTorch DDP (gloo) with ${torchPython}`,
    };
  if (!plainPython("python3"))
    throw new AgentError(
      "USAGE",
      "--example needs python3 (3.6 or newer) on PATH; install it (apt-get install python3) or run your own command",
    );
  return {
    command: ["python3", join(examplesDir, "plain_train.py"), ...common],
    predict: ["python3", join(examplesDir, "predict.py")],
    framework: "python",
    dataset,
    datasetId: "example-regression",
    extraEnv: {},
    description: "plain Python (torch not importable: install python3-torch for the DDP example)",
  };
}
