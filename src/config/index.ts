export * from "./agent.ts";
export { EnvReader, type Env } from "./parse.ts";
export { Secret, isSecretLookingName, isSecretLookingValue } from "./secret.ts";
