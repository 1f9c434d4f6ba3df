export { AgentError, ERROR_CODES, isAgentError, type ErrorCode } from "./agent-error.ts";
export { EXIT_CODES, exitCodeFor } from "./exit-codes.ts";
export { messageOf } from "./message.ts";
