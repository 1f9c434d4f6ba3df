/**
 * `trainjob`: the submitter's command line (render, submit, status, logs, delete, serve). The commands live in
 * ./submitter/; this entry only hands them process.env and the standard streams.
 */
import { Command } from "commander";
import { ignoreEpipeOnStdout, reportFatal } from "./fatal.ts";
import { registerTrainjobCommands } from "./submitter/index.ts";
import pkg from "../../package.json" with { type: "json" };

export function buildProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command("trainjob")
    .description("Render, submit, inspect and delete Kubeflow Trainer TrainJobs that run trainer-agent")
    .version(pkg.version)
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");
  registerTrainjobCommands(program, env, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
  return program;
}

ignoreEpipeOnStdout();

buildProgram(process.env)
  .parseAsync(process.argv)
  .catch((error: unknown) => reportFatal("trainjob", error));
