/**
 * A real HTTP callback backend for tests, on 127.0.0.1 with an ephemeral port. Records every request and
 * answers by a scriptable rule (status, Retry-After, or hang until closed).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Recorded {
  path: string;
  kind: string;
  headers: IncomingMessage["headers"];
  body: Record<string, unknown>;
  at: number;
}

export type Rule = (req: {
  path: string;
  kind: string;
  n: number;
  body: Record<string, unknown>;
}) => { status: number; retryAfter?: string } | "hang";

export interface TestBackend {
  url: string;
  port: number;
  requests: Recorded[];
  /** Requests of one kind; a batch's reports count as requests of their own kind (`of("batch")`: the batches). */
  of(kind: string): Recorded[];
  setRule(rule: Rule): void;
  waitFor(pred: (r: Recorded[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startBackend(rule: Rule = () => ({ status: 200 }), port = 0): Promise<TestBackend> {
  const requests: Recorded[] = [];
  const hanging = new Set<ServerResponse>();
  let current = rule;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "";
      const kind = path.split("/").pop() ?? "";
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
      } catch {
        body = {};
      }
      requests.push({ path, kind, headers: req.headers, body, at: Date.now() });
      const answer = current({ path, kind, n: requests.length, body });
      if (answer === "hang") {
        hanging.add(res);
        return;
      }
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (answer.retryAfter !== undefined) headers["retry-after"] = answer.retryAfter;
      res.writeHead(answer.status, headers).end(JSON.stringify({ ok: answer.status < 300 }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    requests,
    of: (kind) =>
      requests.flatMap((r) => {
        if (r.kind !== "batch" || kind === "batch") return r.kind === kind ? [r] : [];
        const reports = (r.body.reports ?? []) as {
          kind: string;
          idempotency_key: string;
          payload: Recorded["body"];
        }[];
        return reports
          .filter((x) => x.kind === kind)
          .map((x) => ({
            ...r,
            kind,
            body: x.payload,
            headers: { ...r.headers, "idempotency-key": x.idempotency_key },
          }));
      }),
    setRule(r) {
      current = r;
    },
    async waitFor(pred, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      while (!pred(requests)) {
        if (Date.now() > until) throw new Error(`timed out; got ${requests.map((r) => r.kind).join(",")}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on right now (for a backend that comes up later). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
