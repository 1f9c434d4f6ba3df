import type { Command } from "commander";
import { AgentError } from "../../errors/index.ts";

interface HelperOptions {
  print?: boolean;
  write?: string;
}

export function registerHelper(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("helper")
    .description("Print or write the Python helper module (trainer_agent.py) that this agent carries")
    .option("--print", "write the helper's source to stdout")
    .option("--write <file>", "write the helper to FILE (directory created, file replaced atomically)")
    .addHelpText(
      "after",
      `
Training scripts report progress with \`import trainer_agent\`. The baked images already have it on the
Python path; with a stock image the init container puts it in /opt/agent (see \`trainer-agent install\`).

Examples:
  trainer-agent helper --print > trainer_agent.py
  trainer-agent helper --write "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/trainer_agent.py"`,
    )
    .action(async (options: HelperOptions) => {
      if (options.print !== true && options.write === undefined) {
        throw new AgentError("USAGE", "helper needs --print or --write FILE (see trainer-agent helper --help)");
      }
      const { loadHelperSource } = await import("../../packaging/helper-source.ts");
      const source = await loadHelperSource();
      if (options.write !== undefined) {
        const { writeHelper } = await import("../../packaging/install.ts");
        const path = await writeHelper(options.write, source);
        process.stderr.write(`trainer-agent: wrote ${path}\n`);
      }
      // a reader closing the pipe early (`helper --print | head`) is handled in trainer-agent.ts
      if (options.print === true) process.stdout.write(source);
    });
}
