import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

export function registerInstall(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("install")
    .description("(not implemented yet)")
    .action(() => {
      throw new AgentError("INTERNAL", "install is not implemented yet");
    });
}
