import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

export function registerLocal(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("local")
    .description("(not implemented yet)")
    .action(() => {
      throw new AgentError("INTERNAL", "local is not implemented yet");
    });
}
