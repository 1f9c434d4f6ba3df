/**
 * A rendered TrainJob's node container run here as a pod would run it: its command (the init container's agent
 * path replaced by this checkout's bin/trainer-agent.js) and its env, with secretKeyRefs resolved from the
 * rendered Secret and any `secrets` given, and `$(VAR)`/`$$` expanded, as the kubelet does. No Kubernetes here: this is the part of the
 * kubelet the tests need.
 */
import type { ChildProcessByStdio } from "node:child_process";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { expandKubernetes, type RenderedJob } from "../../../src/submitter/index.ts";

export const AGENT_BIN = fileURLToPath(new URL("../../../bin/trainer-agent.js", import.meta.url));

export interface EnvEntry {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}

/**
 * The agent's argv (after the binary) and the env the kubelet would give the node container: literal values,
 * and secretKeyRefs read from the job's own Secret or `secrets` (a missing key fails the test unless optional).
 * PATH and HOME come from this process: an image has its own.
 */
export function nodeContainer(
  rendered: RenderedJob,
  secrets: Record<string, Record<string, string>> = {},
): { args: string[]; env: Record<string, string>; entries: EnvEntry[] } {
  const trainer = (rendered.trainJob.spec as { trainer: { command: string[]; env: EnvEntry[] } }).trainer;
  const [agentBin, ...args] = trainer.command;
  expect(agentBin).toBe("/opt/agent/trainer-agent");
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
  };
  const own = rendered.secret;
  const podSecrets =
    own === undefined ? secrets : { ...secrets, [own.metadata.name]: own.stringData as Record<string, string> };
  for (const e of trainer.env) {
    // The kubelet expands $(VAR) in a value from the variables before it, and `$$` to `$`.
    if (e.value !== undefined) env[e.name] = expandKubernetes(e.value, env);
    const ref = e.valueFrom?.secretKeyRef;
    if (ref !== undefined) {
      const value = podSecrets[ref.name]?.[ref.key];
      if (value !== undefined) env[e.name] = value;
      else expect(ref.optional, `${e.name}: Secret ${ref.name} key ${ref.key}`).toBe(true);
    }
  }
  return { args: args.map((a) => expandKubernetes(a, env)), env, entries: trainer.env };
}

/** The exit code and the whole output (stdout and stderr as they came) of a process. */
export async function finished(
  child: ChildProcessByStdio<null, Readable, Readable>,
  onOutput?: (output: string, kill: (signal: NodeJS.Signals) => void) => void,
): Promise<{ code: number | null; output: string }> {
  let output = "";
  const seen = (c: Buffer): void => {
    output += c.toString();
    onOutput?.(output, (signal) => child.kill(signal));
  };
  child.stdout.on("data", seen);
  child.stderr.on("data", seen);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, output };
}
