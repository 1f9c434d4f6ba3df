/**
 * Rank 0's progress to Kubeflow Trainer's own status server (v2.2+, feature gate TrainJobStatus), so that the
 * TrainJob's `status.trainerStatus` holds progress, ETA and metrics for `kubectl get trainjob -o yaml`, the Kubeflow
 * SDK and `trainjob status`. Fed the same epoch reports the callback client gets.
 *
 * The server's contract (kubeflow/trainer pkg/statusserver, docs/user-guides/trainjob-progress.md):
 *   POST KUBEFLOW_TRAINER_SERVER_URL, TLS signed by the CA in KUBEFLOW_TRAINER_SERVER_CA_CERT (a file),
 *   `Authorization: Bearer <contents of the KUBEFLOW_TRAINER_SERVER_TOKEN file>` (a projected token that rotates),
 *   body `{"trainerStatus": {progressPercentage 0..100, estimatedRemainingSeconds >= 0, metrics [{name, value}]
 *   (strings of 1..64 characters, at most 256), lastUpdatedTime (RFC 3339, required)}}`; answers 200, or a
 *   metav1.Status with 403 (token refused), 422 (payload invalid), 404 (TrainJob gone), 500.
 * Reporting never blocks nor fails the training: at most one request per interval (5 s, the server's advice), the
 * newest state replacing one not sent yet, plus a final one when the agent finishes; failures are logged once
 * per kind and otherwise ignored, and a 404 stops reporting (the TrainJob is gone).
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { HeartbeatFields } from "../callbacks/client.ts";
import { undiciTransport, type Transport } from "../callbacks/transport.ts";
import type { TrainerStatusConfig } from "../config/agent.ts";

/** The CRD's limits on status.trainerStatus (trainer.kubeflow.org_trainjobs.yaml, v2.3). */
export const TRAINER_STATUS_LIMITS = { maxMetrics: 256, maxLength: 64, int32: 2_147_483_647 } as const;

export interface TrainerStatusBody {
  trainerStatus: {
    progressPercentage?: number;
    estimatedRemainingSeconds?: number;
    metrics?: Array<{ name: string; value: string }>;
    lastUpdatedTime: string;
  };
}

export interface TrainerStatusReporter {
  /** The newest rank-0 state; sent now, or when the interval allows (replacing any state not sent yet). */
  report(fields: HeartbeatFields): void;
  /** Sends the last state once more (`complete` marks it 100 %, 0 s left) and stops; never rejects. */
  close(options?: { complete?: boolean }): Promise<void>;
}

export interface TrainerStatusOptions {
  readonly config: TrainerStatusConfig;
  readonly logger: Logger;
  /** Least time between two requests, ms (default 5000). */
  readonly minIntervalMs?: number;
  /** Per-request timeout, ms (default 10 000). */
  readonly timeoutMs?: number;
  readonly now?: () => number;
  /** Replaces the undici transport built with the CA file (tests). */
  readonly transport?: Transport;
}

/** A metric value as a string the CRD accepts: the shortest exact form, cut to 64 characters. */
function metricValue(n: number): string {
  const s = String(n);
  return s.length <= TRAINER_STATUS_LIMITS.maxLength ? s : n.toPrecision(17).slice(0, TRAINER_STATUS_LIMITS.maxLength);
}

/** RFC 3339 at second precision, as metav1.Time writes it. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The body for a heartbeat's fields, within the CRD's limits (what does not fit is left out, never sent invalid). */
export function trainerStatusBody(fields: HeartbeatFields, at: number): TrainerStatusBody {
  const { maxMetrics, maxLength, int32 } = TRAINER_STATUS_LIMITS;
  const status: TrainerStatusBody["trainerStatus"] = { lastUpdatedTime: rfc3339(at) };
  if (typeof fields.progress === "number" && Number.isFinite(fields.progress))
    status.progressPercentage = Math.min(100, Math.max(0, Math.floor(fields.progress * 100)));
  if (typeof fields.eta_seconds === "number" && Number.isFinite(fields.eta_seconds))
    status.estimatedRemainingSeconds = Math.min(int32, Math.max(0, Math.round(fields.eta_seconds)));
  const metrics = Object.entries(fields.metrics ?? {})
    .filter(([name, value]) => name.length >= 1 && name.length <= maxLength && Number.isFinite(value))
    .slice(0, maxMetrics)
    .map(([name, value]) => ({ name, value: metricValue(value) }));
  if (metrics.length > 0) status.metrics = metrics;
  return { trainerStatus: status };
}

export function createTrainerStatusReporter(options: TrainerStatusOptions): TrainerStatusReporter {
  const { config, logger } = options;
  const log = logger.child({ component: "trainer-status" });
  const now = options.now ?? Date.now;
  const minInterval = options.minIntervalMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let transport: Promise<Transport | undefined> | undefined;
  const open = (): Promise<Transport | undefined> =>
    (transport ??=
      options.transport !== undefined
        ? Promise.resolve(options.transport)
        : readFile(config.caCertFile, "utf8").then(
            (ca) => undiciTransport({ ca }),
            (error: NodeJS.ErrnoException) => {
              warnOnce("ca", { code: error.code }, `cannot read KUBEFLOW_TRAINER_SERVER_CA_CERT ${config.caCertFile}`);
              stopped = true;
              return undefined;
            },
          ));

  const warned = new Set<string>();
  const warnOnce = (kind: string, data: Record<string, unknown>, message: string): void => {
    if (warned.has(kind)) return log.debug(data, message);
    warned.add(kind);
    log.warn(data, `${message}; progress is not reported to the Trainer (training goes on)`);
  };

  let latest: HeartbeatFields | undefined;
  let pending = false;
  let lastSentAt = -Infinity;
  let inFlight: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const send = async (fields: HeartbeatFields): Promise<void> => {
    const t = await open();
    if (t === undefined || stopped) return;
    let token: string;
    try {
      token = (await readFile(config.tokenFile, "utf8")).trim();
    } catch (error) {
      return warnOnce(
        "token",
        { code: (error as NodeJS.ErrnoException).code },
        `cannot read KUBEFLOW_TRAINER_SERVER_TOKEN ${config.tokenFile}`,
      );
    }
    const body = JSON.stringify(trainerStatusBody(fields, now()));
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const res = await t.post(config.url.href, {
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body,
        signal,
        readBody: true,
      });
      if (res.status >= 200 && res.status < 300) {
        if (warned.size > 0) log.info("the Trainer's status server accepts progress again");
        warned.clear();
        return;
      }
      const message = serverMessage(res.body);
      if (res.status === 404) {
        stopped = true;
        log.warn(
          { status: 404, message },
          "the Trainer's status server does not know this TrainJob; progress reporting stops",
        );
      } else if (res.status === 403 || res.status === 401) {
        // Refused token (wrong audience or namespace, expired): the projected file may rotate to a good one.
        warnOnce("auth", { status: res.status, message }, "the Trainer's status server refused the token");
      } else if (res.status === 422) {
        warnOnce("invalid", { status: 422, message }, "the Trainer's status server refused the progress body");
      } else warnOnce(`http-${res.status}`, { status: res.status, message }, "the Trainer's status server failed");
    } catch (error) {
      const e = error as Error & { code?: string; cause?: { code?: string } };
      warnOnce("network", { code: e.cause?.code ?? e.code ?? e.name }, "cannot reach the Trainer's status server");
    }
  };

  const flush = (): void => {
    timer = undefined;
    if (stopped || !pending || inFlight !== undefined || latest === undefined) return;
    const wait = lastSentAt + minInterval - now();
    if (wait > 0) {
      timer = setTimeout(flush, wait);
      timer.unref();
      return;
    }
    pending = false;
    lastSentAt = now();
    inFlight = send(latest).finally(() => {
      inFlight = undefined;
      if (pending && timer === undefined) flush();
    });
  };

  return {
    report(fields) {
      if (stopped) return;
      latest = fields;
      pending = true;
      if (timer === undefined) flush();
    },
    async close(closeOptions = {}) {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      await inFlight;
      if (!stopped && latest !== undefined) {
        const last: HeartbeatFields = closeOptions.complete ? { ...latest, progress: 1, eta_seconds: 0 } : latest;
        pending = false;
        await send(last);
      }
      stopped = true;
      const t = await transport;
      if (options.transport === undefined) await t?.close();
    },
  };
}

/** The `message` of a metav1.Status answer, cut short; the raw text when it is not one. */
function serverMessage(body: string | undefined): string | undefined {
  if (body === undefined || body === "") return undefined;
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message.slice(0, 500);
  } catch {
    // not JSON
  }
  return body.slice(0, 200);
}
