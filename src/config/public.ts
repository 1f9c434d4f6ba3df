/**
 * The part of the configuration layer open to other components (`astrago-trainer/config`): the typed env reader
 * that names every bad variable and the Secret wrapper that keeps values out of logs. The backend stub loads its
 * own environment with them; the agent's loadConfig stays internal.
 */
export { EnvReader, type Env } from "./parse.ts";
export { Secret } from "./secret.ts";
