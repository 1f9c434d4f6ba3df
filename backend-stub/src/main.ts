/**
 * `npm run backend`: the backend stub as a process. The one file of the stub that reads process.env.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import pino from "pino";
import { isAgentError, exitCodeFor, messageOf } from "../../src/errors/index.ts";
import { loadBackendConfig, type BackendConfig } from "./config.ts";
import { createBackendStub } from "./stub.ts";

const SECRET_FILE = "callback-jwt-secret";

async function main(): Promise<void> {
  const config = loadBackendConfig(process.env);
  const destination = process.stdout.isTTY
    ? (await import("pino-pretty")).default({
        sync: true,
        singleLine: true,
        translateTime: "SYS:HH:MM:ss",
        ignore: "pid,hostname,component",
      })
    : pino.destination({ fd: 1, sync: true });
  const logger = pino(
    {
      level: config.logLevel,
      base: { component: "backend-stub" },
      redact: {
        paths: ["token", "*.token", "secret", "authorization", "*.authorization", "headers.authorization"],
        censor: "***",
      },
    },
    destination,
  );

  const secret = config.secret?.reveal() ?? (await localSecret(config, logger));
  const stub = createBackendStub({
    secret,
    ...(config.journal ? { dataDir: config.dataDir } : {}),
    ...(config.adminToken === undefined ? {} : { adminToken: config.adminToken.reveal() }),
    tokenTtlSeconds: config.tokenTtlSeconds,
    maxBodyBytes: config.maxBodyBytes,
    ...(config.checkpointStorage === undefined ? {} : { checkpointStorage: config.checkpointStorage }),
    logger,
  });
  const { url } = await stub.listen(config.port, config.host);
  logger.info(
    {
      url,
      dashboard: `${url}/`,
      data_dir: config.journal ? config.dataDir : "(journal off: memory only)",
      admin_token: config.adminToken !== undefined,
    },
    "dashboard ready",
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    stub.close().then(
      () => {
        process.exitCode = 0;
      },
      (error: unknown) => {
        logger.error({ err: error }, "error while stopping");
        process.exitCode = 1;
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

/**
 * For local use without CALLBACK_JWT_SECRET: generate a secret once, keep it (mode 0600) beside the journal so a
 * restarted stub still accepts the tokens it issued, and print it once so other processes can be given it.
 */
async function localSecret(config: BackendConfig, logger: pino.Logger): Promise<string> {
  const file = path.join(config.dataDir, SECRET_FILE);
  try {
    const stored = (await readFile(file, "utf8")).trim();
    if (stored !== "") {
      logger.warn({ file }, "CALLBACK_JWT_SECRET is not set; using the secret generated earlier (local use only)");
      return stored;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const secret = randomBytes(32).toString("base64url");
  await mkdir(config.dataDir, { recursive: true });
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: "wx" });
  // Printed once, on purpose and outside the logger: the operator needs it to sign tokens elsewhere.
  process.stderr.write(
    `CALLBACK_JWT_SECRET was not set: generated one for LOCAL USE ONLY (kept in ${file}):\n  CALLBACK_JWT_SECRET=${secret}\n`,
  );
  return secret;
}

main().catch((error: unknown) => {
  const code = isAgentError(error) ? error.code : "INTERNAL";
  process.stderr.write(`backend stub: ${messageOf(error)}\n`);
  process.exitCode = isAgentError(error) ? (code === "CONFIG_INVALID" ? 78 : exitCodeFor(error.code)) : 70;
});
