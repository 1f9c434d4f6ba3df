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
