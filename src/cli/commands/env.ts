import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

export function registerEnv(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("env")
    .description("(not implemented yet)")
    .action(() => {
      throw new AgentError("INTERNAL", "env is not implemented yet");
    });
}
