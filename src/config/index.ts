export * from "./agent.ts";
export { dirsOverlap } from "./dirs.ts";
export { EnvReader, type Env } from "./parse.ts";
export { maskSecrets, maskSecretsDeep, Secret, secretList } from "./secret.ts";
