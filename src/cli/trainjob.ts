import { Command } from "commander";
import { reportFatal } from "./fatal.ts";
import pkg from "../../package.json" with { type: "json" };

export function buildProgram(_env: NodeJS.ProcessEnv): Command {
  return new Command("trainjob")
    .description("Render, submit, inspect and delete Kubeflow Trainer TrainJobs that run trainer-agent")
    .version(pkg.version)
    .exitOverride();
}

try {
  await buildProgram(process.env).parseAsync(process.argv);
} catch (error) {
  reportFatal("trainjob", error);
}
