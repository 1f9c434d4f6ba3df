/** The logging surface the stub needs: pino's logger satisfies it; the default discards everything. */
export interface StubLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};

export const silentLogger: StubLogger = { debug: noop, info: noop, warn: noop, error: noop };
