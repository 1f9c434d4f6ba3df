export * from "./agent.ts";
export { dirsOverlap } from "./dirs.ts";
export { maskSecrets, maskSecretsDeep, secretList } from "./mask.ts";
export { EnvReader, type Env } from "./parse.ts";
export {
  Secret,
  isSecretLookingName,
  isSecretLookingValue,
  maskUrlCredentials,
  urlQueryCredentials,
} from "./secret.ts";
