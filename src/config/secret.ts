import { inspect } from "node:util";

/**
 * A secret value (token, key) that prints as `***` everywhere: template strings, JSON, util.inspect, pino.
 * Only `reveal()` gives the value, so a leak needs an explicit call that review can find.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return "***";
  }

  toJSON(): string {
    return "***";
  }

  [inspect.custom](): string {
    return "***";
  }
}

/**
 * One part of a variable name (split at `_`, `-`, `.` and lower-to-upper case changes) that marks it as a
 * credential: the words themselves (`DB_PASS`, `GITHUB_PAT`, `AUTH`), words that contain them (`DBPASSWORD`,
 * `MYSECRET`), and parts ending in KEY or TOKEN (`API_KEY`, `OPENAI_KEY`, `APIKEY`, `HFTOKEN`). `TOKENIZERS` is
 * not one: the match is on whole parts, not substrings anywhere.
 */
const SECRET_NAME_PART =
  /^(?:.*(?:SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL).*|.*(?:KEY|TOKEN)S?|PASS|PWD|PAT|AUTH|PRIVATE|CREDS?|COOKIE)$/;

/** Whether a variable name looks like it holds a credential (`MINIO_SECRET_KEY`, `DB_PASS`, `openaiApiKey`...). */
export function isSecretLookingName(name: string): boolean {
  if (name === "PWD") return false; // the shell's working directory
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toUpperCase()
    .split(/[_.-]+/)
    .some((part) => SECRET_NAME_PART.test(part));
}

/**
 * Values that are credentials whatever their variable is called: a URL with a password in its userinfo
 * (`postgres://app:pw@db/x`), a PEM private key, a JWT, and the fixed prefixes of common API tokens (AWS access
 * key ids, GitHub, Slack, OpenAI, Hugging Face).
 */
const SECRET_VALUES: readonly RegExp[] = [
  /^[a-z][a-z0-9+.-]*:\/\/[^/?#@\s:]*:[^/?#@\s]+@/i,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
  /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/,
  /^(?:AKIA|ASIA)[0-9A-Z]{16}$/,
  /^(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,})$/,
  /^xox[abprs]-[\w-]{10,}$/,
  /^sk-[\w-]{20,}$/,
  /^hf_[A-Za-z0-9]{30,}$/,
];

/**
 * The passwords in the URLs a value holds (`postgres://app:pw@db/x` gives `pw`), as written and percent-decoded:
 * what to mask where the rest of the URL stays readable.
 */
export function urlPasswords(value: string): string[] {
  const found: string[] = [];
  for (const m of value.matchAll(/\/\/[^/?#\s:@]*:([^/?#\s@]+)@/g)) {
    const password = m[1] as string;
    found.push(password);
    try {
      found.push(decodeURIComponent(password));
    } catch {
      // not percent-encoded
    }
  }
  return found;
}

/** Whether a value looks like a credential by its form alone (see SECRET_VALUES). */
export function isSecretLookingValue(value: string): boolean {
  return SECRET_VALUES.some((re) => re.test(value));
}

/**
 * A query parameter that makes a URL a credential: a presigned URL's signature and credential (S3 `X-Amz-*`,
 * GCS `X-Goog-*`, Azure `sig`), or a name that looks secret (`token`, `api_key`).
 */
function isCredentialParam(name: string): boolean {
  return /^(?:x-(?:amz|goog)-[a-z-]+|signature|sig|se|sp|sv)$/i.test(name) || isSecretLookingName(name);
}

/**
 * The query strings (after `?`) of the http(s) URLs a value holds that carry a credential parameter, as written:
 * what to mask so a presigned URL keeps its host and path readable but not its signature.
 */
export function urlQueryCredentials(value: string): string[] {
  const found: string[] = [];
  for (const m of value.matchAll(/https?:\/\/[^\s?#]*\?([^\s#]+)/gi)) {
    const query = m[1] as string;
    const names = query.split("&").map((p) => p.split("=")[0] ?? "");
    if (names.some(isCredentialParam)) found.push(query);
  }
  return found;
}

/** text with the query of every URL in it replaced by `***` (for showing a value that may be presigned). */
export function maskUrlQueries(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s?#]*)\?[^\s#]*/gi, "$1?***");
}

/** text with every URL's userinfo and query masked: how a URL that may hold a credential is shown in an error. */
export function maskUrlCredentials(text: string): string {
  return maskUrlQueries(text.replace(/\/\/[^/?#\s]*@/g, "//***@"));
}
