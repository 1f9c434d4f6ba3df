/**
 * A failure before there is a logger: bad command line or configuration. One line on stderr; and when the
 * callback settings themselves are readable, a `done` with status failed so the backend does not wait forever.
 */
import { loadAgentConfig, type AgentConfig, type Env } from "../config/index.ts";
import { exitCodeFor } from "../errors/index.ts";
import { createLogger } from "../log/logger.ts";
import { resolveTrace } from "../log/trace.ts";
import { openCallbacks } from "./callbacks.ts";
import { toAgentError } from "./errors.ts";

/** The variables `done` needs, read alone so that a bad unrelated one does not silence the backend. */
const CALLBACK_VARIABLES = [
  "BACKEND_BASE_URL",
  "JOB_ID",
  "CALLBACK_TOKEN",
  "CALLBACK_TOKEN_FILE",
  "TRACE_ID",
  "TRACEPARENT",
  "DONE_DEADLINE_SECONDS",
  "CALLBACK_TIMEOUT_SECONDS",
  "CALLBACK_RETRY_MAX_SECONDS",
  "JOBSET_RESTART_ATTEMPT",
];

/** Resolves with the exit code of the error. */
export async function failEarly(error: unknown, env: Env, startedAt: number): Promise<number> {
  const agentError = toAgentError(error, undefined);
  process.stderr.write(`trainer-agent: ${agentError.code}: ${agentError.message}\n`);
  const code = exitCodeFor(agentError.code);
  let cbConfig: AgentConfig;
  try {
    cbConfig = loadAgentConfig(Object.fromEntries(CALLBACK_VARIABLES.map((n) => [n, env[n]])));
  } catch {
    return code; // the callback settings are broken too: nothing to tell the backend with
  }
  const trace = resolveTrace(cbConfig);
  const logger = await createLogger({ traceId: trace.traceId, jobId: cbConfig.jobId, base: { name: "trainer-agent" } });
  const callbacks = await openCallbacks(cbConfig, trace, logger, false);
  if (callbacks === undefined) return code;
  await callbacks.done({
    status: "failed",
    exit_code: code,
    reason: `${agentError.code}: ${agentError.message}`,
    duration_seconds: Math.max(0, (Date.now() - startedAt) / 1000),
  });
  await callbacks.close();
  return code;
}
