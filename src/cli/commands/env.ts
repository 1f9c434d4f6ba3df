import type { Command } from "commander";

const EXAMPLES = `
Prints the variables the agent would give the training process: RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT (python, pytorch with one process per pod),
the PET_* values torchrun reads (pytorch with nproc_per_node > 1), TF_CONFIG (tensorflow), plus
DATASET_DIR, CHECKPOINT_DIR, TRACE_ID and PYTHONUNBUFFERED. Secrets are never printed.
A bad variable is a one-line error naming it, exit status 78.

Examples:
  # in a container script, instead of hand-written exports (keeps a failure visible):
  vars="$(trainer-agent env --format sh)" || exit $?; eval "$vars"

  # what node 1 of a 2-node TrainJob sees:
  PET_NNODES=2 PET_NODE_RANK=1 PET_MASTER_ADDR=job-node-0-0.job trainer-agent env --format json

  # TF_CONFIG for TensorFlow workers:
  PET_NNODES=3 PET_NODE_RANK=2 PET_MASTER_ADDR=tf-node-0-0.tf trainer-agent env --framework tensorflow
`;

export function registerEnv(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command("env")
    .description("print the translated distributed environment (sh exports or JSON)")
    .option("--framework <name>", "pytorch, tensorflow, python, or the name of the --plugin", "python")
    .option("--plugin <path-or-module>", "load a plugin from a file (relative to the current directory) or a package")
    .option("--format <format>", "sh (export NAME='value' lines) or json", "sh")
    .option("--nproc-per-node <n>", "processes per node (overrides PET_NPROC_PER_NODE): a count, auto, gpu or cpu")
    .addHelpText("after", EXAMPLES)
    .action(async (opts: { framework: string; plugin?: string; format: string; nprocPerNode?: string }) => {
      const { renderEnv } = await import("../../agent/env-command.ts");
      const { text } = await renderEnv({
        framework: opts.framework,
        plugin: opts.plugin,
        format: opts.format,
        nprocPerNode: opts.nprocPerNode,
        env,
        cwd: process.cwd(),
      });
      process.stdout.write(text);
    });
}
