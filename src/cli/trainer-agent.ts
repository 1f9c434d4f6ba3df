/**
 * `trainer-agent`: the in-container agent's command line. Sub-command definitions live in ./commands; each one
 * imports its implementation lazily so `trainer-agent run -- true` starts without loading the S3 or HTTP stacks.
 */
import { Command } from "commander";
import { ignoreEpipeOnStdout, reportFatal } from "./fatal.ts";
import { keepYoungGenerationSmall } from "./heap.ts";
import { registerRun } from "./commands/run.ts";
import { registerEnv } from "./commands/env.ts";
import { registerLocal } from "./commands/local.ts";
import { registerHelper } from "./commands/helper.ts";
import { registerInstall } from "./commands/install.ts";
import pkg from "../../package.json" with { type: "json" };

export function buildProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command("trainer-agent")
    .description("In-container agent for Kubeflow Trainer TrainJobs: env translation, data, checkpoints, callbacks")
    .version(pkg.version)
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");
  registerRun(program, env);
  registerEnv(program, env);
  registerLocal(program, env);
  registerHelper(program, env);
  registerInstall(program, env);
  return program;
}

ignoreEpipeOnStdout();
keepYoungGenerationSmall(process.env, process.execArgv);

// No top-level await: the single-file build (scripts/build-agent.ts) bundles this entry as CommonJS, the format
// a Node single executable application runs.
buildProgram(process.env)
  .parseAsync(process.argv)
  .catch((error: unknown) => reportFatal("trainer-agent", error));
