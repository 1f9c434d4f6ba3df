import { Option, type Command } from "commander";
import { RUN_MODES, type RunMode } from "../../config/predict.ts";

const HELP = `
Runs CMD as the training process of this pod: translates the distributed environment (PET_* to RANK,
WORLD_SIZE, ... or TF_CONFIG), restores the latest checkpoint and pulls the dataset when storage is
configured, spawns CMD in its own process group (never through a shell), relays its output unchanged,
turns ::trainer::{json} report lines into heartbeats, events and checkpoint uploads, forwards
SIGTERM/SIGINT (grace TERMINATION_GRACE_SECONDS, default 25, then SIGKILL), uploads the final
checkpoints, posts done, and exits with CMD's exit code (128+signal when a signal ended it).
A CMD silent for longer than STALL_SECONDS (default: derived from its epoch times, node 0 only) gets
a stalled event; STALL_ACTION=terminate also saves the checkpoints, ends it and exits 75.
--mode predict runs a predict job instead: restores the model (MODEL_JOB_ID: that job's newest
checkpoint, or MODEL_URI) as MODEL_PATH, pulls the dataset, runs CMD, and uploads PREDICTIONS_DIR
(default /workspace/predictions) to predictions/job-{JOB_ID}/ (PREDICTIONS_URI) after a clean exit.
Agent logs are JSON lines on stderr (readable on a terminal); CMD's stdout stays CMD's.

Exit status: CMD's; 64 bad command line; 78 bad configuration; 127 command not found; 126 not
executable; 66/65/75 dataset missing/corrupt/changed; 75 stalled and ended; 69 storage unreachable;
74 checkpoint upload or restore failed; 70 internal error. Predict: 66 model not found; 65 nothing
written to PREDICTIONS_DIR; 74 predictions upload failed.

Examples:
  trainer-agent run -- python train.py --epochs 10
  trainer-agent run --framework pytorch --nproc-per-node 4 -- python train.py
  MODEL_JOB_ID=42 trainer-agent run --mode predict -- python predict.py
  BACKEND_BASE_URL=http://backend:8000 JOB_ID=42 CALLBACK_TOKEN_FILE=/var/run/token \\
    trainer-agent run -- python train.py
`;

export function registerRun(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command("run")
    .description("run the training command: env, dataset, checkpoints, log relay, callbacks, exit code")
    .usage("[options] -- CMD [ARGS...]")
    .option("--framework <name>", "pytorch, tensorflow, python, or the name of the --plugin", "python")
    .option("--plugin <path-or-module>", "load a plugin from a file (relative to the current directory) or a package")
    .option("--nproc-per-node <n>", "processes per node (overrides PET_NPROC_PER_NODE): a count, auto, gpu or cpu")
    .addOption(
      new Option("--mode <mode>", "train, or predict: restore MODEL_JOB_ID / MODEL_URI, upload PREDICTIONS_DIR")
        .choices(RUN_MODES)
        .default("train"),
    )
    .argument("<command...>", "the training command and its arguments (after --)")
    .addHelpText("after", HELP)
    .action(
      async (command: string[], opts: { framework: string; plugin?: string; nprocPerNode?: string; mode: RunMode }) => {
        const { runAgent } = await import("../../agent/run.ts");
        process.exitCode = await runAgent(
          command,
          { framework: opts.framework, plugin: opts.plugin, nprocPerNode: opts.nprocPerNode, mode: opts.mode },
          { env, cwd: process.cwd() },
        );
      },
    );
}
