/**
 * The project's one retry helper: an explicit policy (exponential backoff with jitter, a retry predicate,
 * `Retry-After`, an overall deadline), an injected `sleep` and cancellation through an AbortSignal.
 * Retry only idempotent work, or work that carries an idempotency key.
 */

export interface RetryPolicy {
  /** Retries after the first attempt (Infinity = until the deadline). */
  maxRetries: number;
  /** Delay before the first retry, ms. */
  minDelayMs: number;
  /** Cap of one delay, ms (a server's Retry-After is capped by it too). */
  maxDelayMs: number;
  /** Growth of the delay per retry (2 = doubling). */
  factor: number;
  /** 0..1: the share of each delay that is randomised (0 = none, 1 = "full jitter"). */
  jitter: number;
  /** Whether this failure is worth another attempt. */
  retryOn: (error: unknown, attempt: number) => boolean;
  /** A delay the failure itself asks for (an HTTP Retry-After), ms; it replaces the computed delay. */
  retryAfterMs?: (error: unknown) => number | undefined;
  /** Give up when the next attempt would start later than this many ms after the first one. */
  deadlineMs?: number;
}

export interface RetryDeps {
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
  random?: () => number;
  signal?: AbortSignal;
  /** Called before each retry's wait (for logs). */
  onRetry?: (info: { error: unknown; attempt: number; delayMs: number }) => void;
}

/** undici's RetryHandler defaults: 5 retries, 500 ms doubling to 30 s, with jitter. */
export const DEFAULT_RETRY_POLICY: Omit<RetryPolicy, "retryOn"> = {
  maxRetries: 5,
  minDelayMs: 500,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.5,
};

/** Sleeps `ms`, rejecting with the signal's reason when it aborts first; the timer is always cleared. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Delay before retry number `retry` (1-based) under `policy`, ms, before any Retry-After. */
export function backoffDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxDelayMs, policy.minDelayMs * policy.factor ** (retry - 1));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  return Math.round(base * (1 - jitter) + base * jitter * random());
}

/**
 * Runs `fn` until it succeeds, the policy says stop, the deadline would pass or the signal aborts.
 * Throws the last failure (or the abort reason). `fn` gets the attempt number (1-based) and the signal.
 */
export async function retry<T>(
  fn: (attempt: number, signal: AbortSignal | undefined) => Promise<T>,
  policy: RetryPolicy,
  deps: RetryDeps = {},
): Promise<T> {
  const sleep = deps.sleep ?? abortableSleep;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const started = now();
  for (let attempt = 1; ; attempt++) {
    deps.signal?.throwIfAborted();
    try {
      return await fn(attempt, deps.signal);
    } catch (error) {
      if (deps.signal?.aborted) throw deps.signal.reason;
      if (attempt > policy.maxRetries || !policy.retryOn(error, attempt)) throw error;
      let delayMs = backoffDelay(policy, attempt, random);
      const asked = policy.retryAfterMs?.(error);
      if (asked !== undefined && Number.isFinite(asked) && asked >= 0) delayMs = Math.min(asked, policy.maxDelayMs);
      if (policy.deadlineMs !== undefined) {
        const left = started + policy.deadlineMs - now();
        if (left <= 0) throw error;
        // Never sleep past the deadline: one last attempt right at it is better than none.
        delayMs = Math.min(delayMs, left);
      }
      deps.onRetry?.({ error, attempt, delayMs });
      await sleep(delayMs, deps.signal);
    }
  }
}

/** Parses an HTTP Retry-After value (delta-seconds or an HTTP date) into ms from `now`; undefined when invalid. */
export function parseRetryAfter(value: string | undefined | null, now: number = Date.now()): number | undefined {
  if (value === undefined || value === null || value.trim() === "") return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
