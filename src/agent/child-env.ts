/**
 * The child's environment, assembled in one place. Later layers win over earlier ones:
 *
 *   1. the pod's environment as the agent got it (`config.baseEnv`), less STRIPPED_FROM_CHILD;
 *   2. the variables every child gets whatever the framework (CONTRACT section 3): DATASET_DIR, CHECKPOINT_DIR,
 *      TRACE_ID, and PYTHONUNBUFFERED=1 so a Python child's output reaches the relay line by line (a predict
 *      run: PREDICTIONS_DIR too);
 *   3. the plugin's translation (RANK, WORLD_SIZE, ... or TF_CONFIG): it is computed from layers 1 and 2;
 *   4. RESUME_FROM, when a checkpoint was restored; MODEL_PATH, when a predict run restored its model;
 *   5. the agent's own markers: TRACEPARENT (the agent's span, the child's parent) and ASTRAGO_AGENT=1.
 *
 * The agent's layers sit above the pod's so that a stale value in the pod spec (a RANK copied from another job,
 * an old RESUME_FROM) cannot contradict what the agent did for this run.
 */
import type { AgentConfig } from "../config/index.ts";
import { GIT_SECRET_ENV_NAMES } from "../config/git.ts";
import type { TraceContext } from "../log/trace.ts";

/** Variables the child never sees: the callback JWT and the git credentials are the agent's, not the script's. */
export const STRIPPED_FROM_CHILD: readonly string[] = ["CALLBACK_TOKEN", ...GIT_SECRET_ENV_NAMES];

type Dirs = Pick<AgentConfig, "storage"> & Partial<Pick<AgentConfig, "predict">>;

/** Layer 2: what the agent adds for every framework; also what the plugin's env hook is given. */
export function commonChildEnv(config: Dirs, traceId: string): Record<string, string> {
  return {
    DATASET_DIR: config.storage.datasetDir,
    CHECKPOINT_DIR: config.storage.checkpointDir,
    TRACE_ID: traceId,
    PYTHONUNBUFFERED: "1",
    ...(config.predict !== undefined && { PREDICTIONS_DIR: config.predict.predictionsDir }),
  };
}

export interface ChildEnvParts {
  config: Dirs & Pick<AgentConfig, "baseEnv">;
  trace: TraceContext;
  /** The plugin env hook's result. */
  translated: Readonly<Record<string, string>>;
  /** Local path of the restored checkpoint. */
  resumeFrom?: string | undefined;
  /** A predict run: local path of the restored model (MODEL_PATH). */
  modelPath?: string | undefined;
}

/** The pod's environment less what the agent keeps to itself (STRIPPED_FROM_CHILD): the base of every child's. */
export function withoutAgentSecrets(env: Readonly<Record<string, string>>): Record<string, string> {
  const out = { ...env };
  for (const name of STRIPPED_FROM_CHILD) delete out[name];
  return out;
}

/** The whole environment of the child, in the precedence order above. */
export function childEnv(parts: ChildEnvParts): Record<string, string> {
  return Object.assign(
    withoutAgentSecrets(parts.config.baseEnv),
    commonChildEnv(parts.config, parts.trace.traceId),
    parts.translated,
    parts.resumeFrom === undefined ? {} : { RESUME_FROM: parts.resumeFrom },
    parts.modelPath === undefined ? {} : { MODEL_PATH: parts.modelPath },
    { TRACEPARENT: parts.trace.traceparent, ASTRAGO_AGENT: "1" },
  );
}
