/**
 * The package's library surface (`import ... from "astrago-trainer"`): the plugin API and the shared contract.
 * Sub-paths: `astrago-trainer/plugins`, `astrago-trainer/testkit`, `astrago-trainer/submitter`,
 * `astrago-trainer/contract`, `astrago-trainer/errors`, `astrago-trainer/config` (env reader, Secret),
 * `astrago-trainer/http`.
 */
export * from "./plugins/index.ts";
export * from "./contract/index.ts";
export { AgentError, isAgentError, type ErrorCode } from "./errors/index.ts";
