import { describe, expect, it } from "vitest";
import { backoffDelay, parseRetryAfter, retry, type RetryPolicy } from "../../src/retry/index.ts";

const policy = (over: Partial<RetryPolicy> = {}): RetryPolicy => ({
  maxRetries: 3,
  minDelayMs: 100,
  maxDelayMs: 1_000,
  factor: 2,
  jitter: 0,
  retryOn: () => true,
  ...over,
});

function fakeClock() {
  let t = 0;
  const sleeps: number[] = [];
  return {
    now: () => t,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      t += ms;
    },
    sleeps,
  };
}

describe("retry", () => {
  it("backs off exponentially up to the cap and returns the first success", async () => {
    const clock = fakeClock();
    let calls = 0;
    const v = await retry(
      async () => {
        if (++calls < 4) throw new Error("flaky");
        return "ok";
      },
      policy({ maxRetries: 5, maxDelayMs: 300 }),
      clock,
    );
    expect(v).toBe("ok");
    expect(clock.sleeps).toEqual([100, 200, 300]);
  });

  it("throws the last error after maxRetries", async () => {
    const clock = fakeClock();
    let calls = 0;
    await expect(retry(async () => Promise.reject(new Error(`e${++calls}`)), policy(), clock)).rejects.toThrow("e4");
    expect(calls).toBe(4);
  });

  it("does not retry what retryOn refuses", async () => {
    let calls = 0;
    const p = retry(
      async () => Promise.reject(new Error(`x${++calls}`)),
      policy({ retryOn: () => false }),
      fakeClock(),
    );
    await expect(p).rejects.toThrow("x1");
  });

  it("honours the failure's Retry-After, capped by maxDelayMs", async () => {
    const clock = fakeClock();
    let calls = 0;
    await retry(
      async () => {
        if (++calls < 3) throw Object.assign(new Error("429"), { after: calls === 1 ? 50 : 60_000 });
      },
      policy({ retryAfterMs: (e) => (e as { after: number }).after }),
      clock,
    );
    expect(clock.sleeps).toEqual([50, 1_000]);
  });

  it("never waits past the deadline and stops at it", async () => {
    const clock = fakeClock();
    let calls = 0;
    const p = retry(
      async () => Promise.reject(new Error(`d${++calls}`)),
      policy({ maxRetries: Infinity, deadlineMs: 450 }),
      clock,
    );
    await expect(p).rejects.toThrow();
    expect(clock.sleeps).toEqual([100, 200, 150]);
    expect(clock.now()).toBe(450);
  });

  it("stops waiting when the signal aborts", async () => {
    const ac = new AbortController();
    const p = retry(async () => Promise.reject(new Error("down")), policy({ minDelayMs: 60_000, maxDelayMs: 60_000 }), {
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(new Error("stop")), 20);
    await expect(p).rejects.toThrow("stop");
  });

  it("spreads delays with jitter within [base*(1-j), base]", () => {
    const p = policy({ jitter: 0.5 });
    expect(backoffDelay(p, 2, () => 0)).toBe(100);
    expect(backoffDelay(p, 2, () => 1)).toBe(200);
  });
});

describe("parseRetryAfter", () => {
  it.each([
    ["3", 3_000],
    ["0.5", 500],
    ["Thu, 01 Jan 1970 00:00:10 GMT", 10_000],
    ["soon", undefined],
    [undefined, undefined],
  ])("%s -> %s", (v, ms) => {
    expect(parseRetryAfter(v, 0)).toBe(ms);
  });
});
