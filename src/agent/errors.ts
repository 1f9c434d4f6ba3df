/** The agent's one error shape for anything a step threw. */
import { AgentError, isAgentError, messageOf } from "../errors/index.ts";
import type { Cancel } from "./verdict.ts";

/** An abort caused by the cancel becomes the cancel's own error, so the verdict knows it by identity. */
export function toAgentError(error: unknown, cancel: Cancel | undefined): AgentError {
  if (isAgentError(error)) return error;
  if (cancel !== undefined && error instanceof Error && error.name === "AbortError") return cancel.error;
  return new AgentError("INTERNAL", messageOf(error), { cause: error });
}
