import { describe as suite, expect, it } from "vitest";
import { describe, isRecord, kindOf } from "../../src/internal/values.ts";
import { messageOf } from "../../src/errors/index.ts";

suite("values", () => {
  it.each([
    [{}, true],
    [{ a: 1 }, true],
    [[], false],
    [null, false],
    ["x", false],
    [undefined, false],
  ])("isRecord(%j) is %s", (value, want) => {
    expect(isRecord(value)).toBe(want);
  });

  it.each([
    ["short", '"short"'],
    ["x".repeat(100), JSON.stringify("x".repeat(77) + "...")],
    [[1], "a list"],
    [null, "null"],
    [{ a: 1 }, "an object"],
    [() => "source", "a function"],
    [42, "42"],
    [true, "true"],
    [undefined, "undefined"],
  ])("describe names %j as %s", (value, want) => {
    expect(describe(value)).toBe(want);
  });

  it("kindOf never shows a value", () => {
    expect(kindOf("s3cr3t")).toBe("string");
    expect(kindOf(8080)).toBe("number");
    expect(kindOf([])).toBe("a list");
  });

  it("messageOf reads an Error's message and stringifies anything else", () => {
    expect(messageOf(new TypeError("boom"))).toBe("boom");
    expect(messageOf("plain")).toBe("plain");
    expect(messageOf(7)).toBe("7");
  });
});
