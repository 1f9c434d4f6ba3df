import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

interface LocalCommandOptions {
  nodes: string;
  nprocPerNode: string;
  framework?: string;
  plugin?: string;
  dataset?: string;
  datasetId?: string;
  example?: boolean;
  keep?: boolean;
  workdir?: string;
  name?: string;
  failGrace: string;
  predict?: string;
  keyless?: boolean;
}

export function registerLocal(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command("local")
    .description("Run N agents on this machine as N pods would run, against embedded S3 and backend by default")
    .usage("--nodes N [options] -- CMD [ARGS...]")
    .option("-n, --nodes <N>", "number of nodes (agents)", "1")
    .option("--nproc-per-node <P>", "processes per node: a count, or auto, cpu, gpu (PET_NPROC_PER_NODE)", "1")
    .option("--framework <name>", "pytorch, tensorflow, python, or the name of the --plugin")
    .option("--plugin <path-or-module>", "load a plugin (file path or installed package)")
    .option("--dataset <dir>", "seed this folder as the job's dataset (uploaded as datasets/<id>.tar.gz)")
    .option("--dataset-id <id>", "dataset id for --dataset (default: the folder's name)")
    .option("--example", "run the bundled example: torch DDP when torch imports, else plain Python; then a prediction")
    .option(
      "--predict <JOB_ID|URI>",
      "run a predict job (agents in --mode predict) with this model: a job id whose latest checkpoint is used " +
        "(MODEL_JOB_ID), or s3://bucket/key (MODEL_URI)",
    )
    .option(
      "--keyless",
      "no storage keys in the agents, as a pod submitted with --dataset-url and --checkpoint-store backend: " +
        "checkpoints through URLs the embedded backend presigns, --dataset as a presigned DATASET_URL",
    )
    .option("--keep", "keep the dashboard, the bucket and the run folder up after the run, until Ctrl-C")
    .option("--workdir <dir>", "run folder (default: a new one under the temp dir, removed after a clean run)")
    .option("--name <name>", "job name shown on the dashboard", "local")
    .option("--fail-grace <seconds>", "after a node fails, how long the others may run before SIGTERM", "10")
    .argument("[command...]", "the training command, after --")
    .addHelpText(
      "after",
      `
Each node is \`trainer-agent run\` with PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR=127.0.0.1 and a free
PET_MASTER_PORT, its own DATASET_DIR and CHECKPOINT_DIR under the run folder, and the Python helper on PYTHONPATH.
Storage: S3_ENDPOINT/S3_BUCKET/... when set (an external MinIO, for example), otherwise an embedded S3 server.
Backend: BACKEND_BASE_URL (with JOB_ID + CALLBACK_TOKEN, or a job created there) when set, otherwise the backend
stub in-process. Ctrl-C stops every node (SIGTERM, their grace period, then SIGKILL); twice kills at once.
Exit code: 0 when every node succeeded, else the code of the node that failed first; 130 after Ctrl-C.

Examples:
  trainer-agent local --example --nodes 2
  trainer-agent local --nodes 2 --dataset ./data -- python3 train.py --epochs 3
  trainer-agent local --keyless --nodes 2 --dataset ./data -- python3 train.py --epochs 3
  trainer-agent local --nodes 2 --nproc-per-node 2 --framework pytorch -- python3 train.py
  STORAGE_TYPE=file STORAGE_PATH=./bucket trainer-agent local --predict 42 --dataset ./data -- python3 predict.py
  S3_ENDPOINT=http://127.0.0.1:9000 S3_BUCKET=ml S3_ACCESS_KEY_ID=minio S3_SECRET_ACCESS_KEY=minio123 \\
    trainer-agent local --nodes 2 -- python3 train.py`,
    )
    .action(async (command: string[], options: LocalCommandOptions) => {
      const nodes = Number(options.nodes);
      const failGraceSeconds = Number(options.failGrace);
      if (!/^\d+$/.test(options.nodes))
        throw new AgentError("USAGE", `--nodes must be a positive integer, got ${JSON.stringify(options.nodes)}`);
      const { runLocal } = await import("../../local/runner.ts");
      const { selfCommand } = await import("../../packaging/self-command.ts");
      const { loadHelperSource } = await import("../../packaging/helper-source.ts");
      let run = {
        command,
        framework: options.framework,
        dataset: options.dataset,
        datasetId: options.datasetId,
        extraEnv: {} as Record<string, string>,
        thenPredict: undefined as { command: string[] } | undefined,
      };
      if (options.example === true) {
        if (command.length > 0)
          throw new AgentError("USAGE", "--example runs its own command: drop the command after --");
        if (options.predict !== undefined)
          throw new AgentError("USAGE", "--example trains, then predicts with what it trained: drop --predict");
        const { exampleRun, findTorchPython } = await import("../../local/example.ts");
        const { isSingleExecutable } = await import("../../packaging/sea.ts");
        // The single-file build carries no examples (and no module URL): they live in the source checkout.
        const examplesDir = isSingleExecutable()
          ? `${process.cwd()}/examples/`
          : `${(await import("../../packaging/package-root.ts")).packagePath("examples") ?? `${process.cwd()}/examples`}/`;
        const example = exampleRun(examplesDir, findTorchPython());
        process.stdout.write(`trainer-agent local: example: ${example.description}\n`);
        run = {
          command: example.command,
          framework: options.framework ?? example.framework,
          dataset: options.dataset ?? example.dataset,
          datasetId: options.datasetId ?? (options.dataset === undefined ? example.datasetId : undefined),
          extraEnv: example.extraEnv,
          thenPredict: { command: example.predict },
        };
      }
      const result = await runLocal(
        {
          nodes,
          nprocPerNode: options.nprocPerNode,
          framework: run.framework,
          plugin: options.plugin,
          dataset: run.dataset,
          datasetId: run.datasetId,
          command: run.command,
          keep: options.keep === true,
          // A person who ran the demo on a terminal is about to open its dashboard link; scripts and CI
          // (no terminal) still get a command that ends.
          holdOpen: options.example === true && process.stdout.isTTY === true,
          workdir: options.workdir,
          name: options.name ?? "local",
          failGraceSeconds,
          extraEnv: run.extraEnv,
          ...(options.predict !== undefined && { mode: "predict" as const, model: options.predict }),
          ...(options.keyless === true && { keyless: true }),
          ...(run.thenPredict !== undefined && { thenPredict: run.thenPredict }),
        },
        {
          env,
          cwd: process.cwd(),
          agent: selfCommand(),
          helperSource: () => loadHelperSource(),
          stdout: process.stdout,
          stderr: process.stderr,
          color: process.stdout.isTTY === true && env.NO_COLOR === undefined,
        },
      );
      process.exitCode = result.exitCode;
    });
}
