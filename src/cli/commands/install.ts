import type { Command } from "commander";

interface InstallCommandOptions {
  from?: string;
  helper: boolean;
}

export function registerInstall(program: Command, _env: NodeJS.ProcessEnv): void {
  program
    .command("install")
    .description("Copy this agent and its Python helper into DIR (the init container's job)")
    .argument("[dir]", "target directory, created when missing", "/opt/agent")
    .option("--from <file>", "agent executable to copy (default: this executable, when it is the single-file build)")
    .option("--no-helper", "copy the agent only, not trainer_agent.py")
    .addHelpText(
      "after",
      `
Writes DIR/trainer-agent (mode 755) and DIR/trainer_agent.py (mode 644), each under a temporary name then
renamed into place, so running it again is harmless. The image built by the top-level Dockerfile runs
\`trainer-agent install /opt/agent\` as an init container; the training container then runs
\`/opt/agent/trainer-agent run -- python train.py\` with PYTHONPATH=/opt/agent.

Examples:
  trainer-agent install /opt/agent
  node bin/trainer-agent.js install --from dist/trainer-agent /tmp/agent`,
    )
    .action(async (dir: string, options: InstallCommandOptions) => {
      const { runInstall } = await import("../../packaging/install-command.ts");
      const lines = await runInstall({ dir, from: options.from, helper: options.helper });
      for (const line of lines) process.stdout.write(`${line}\n`);
    });
}
