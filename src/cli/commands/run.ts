import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

export function registerRun(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("run")
    .description("(not implemented yet)")
    .action(() => {
      throw new AgentError("INTERNAL", "run is not implemented yet");
    });
}
