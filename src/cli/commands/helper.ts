import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

export function registerHelper(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("helper")
    .description("(not implemented yet)")
    .action(() => {
      throw new AgentError("INTERNAL", "helper is not implemented yet");
    });
}
