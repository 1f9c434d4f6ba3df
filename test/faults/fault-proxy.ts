/**
 * A small fault-injecting HTTP proxy on 127.0.0.1 in front of the real backend stub: per request it passes the
 * request on, answers a status of its choosing (500, 429 with Retry-After, 401...), resets the connection, or
 * accepts it and never answers. `down()` closes its port (connection refused) and `up()` opens the same port
 * again. It records what it did, so a test can wait on "the agent tried while the backend was down".
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type Fault = "pass" | "reset" | "hang" | { status: number; retryAfter?: string };

export interface Seen {
  path: string;
  authorization: string | undefined;
  fault: string;
  /** For passed requests: the stub's status, or "unreachable". */
  upstream?: number | "unreachable";
}

export interface FaultProxy {
  url: string;
  seen: Seen[];
  /** Decides each request (default: pass everything). */
  rule: (req: { path: string; n: number; authorization: string | undefined }) => Fault;
  upstream: string;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const hanging = new Set<ServerResponse>();
  let server: Server | undefined;
  let port = 0;

  const proxy: FaultProxy = {
    url: "",
    seen: [],
    rule: () => "pass",
    upstream,
    async down() {
      const s = server;
      server = undefined;
      if (s === undefined) return;
      for (const res of hanging) res.destroy();
      hanging.clear();
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    },
    async up() {
      if (server !== undefined) return;
      const s = createServer((req, res) => handle(req, res));
      s.keepAliveTimeout = 1_000;
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(port, "127.0.0.1", () => resolve());
      });
      server = s;
      port = (s.address() as AddressInfo).port;
      proxy.url = `http://127.0.0.1:${port}`;
    },
    async close() {
      await proxy.down();
    },
  };

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "/";
      const authorization = req.headers.authorization;
      const fault = proxy.rule({ path, n: proxy.seen.length + 1, authorization });
      const seen: Seen = { path, authorization, fault: typeof fault === "string" ? fault : String(fault.status) };
      proxy.seen.push(seen);
      if (fault === "reset") {
        req.socket.destroy();
        return;
      }
      if (fault === "hang") {
        hanging.add(res);
        return;
      }
      if (fault !== "pass") {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (fault.retryAfter !== undefined) headers["retry-after"] = fault.retryAfter;
        res.writeHead(fault.status, headers).end(JSON.stringify({ error: { code: "injected", message: "fault" } }));
        return;
      }
      const body = Buffer.concat(chunks);
      const headers = { ...req.headers, host: new URL(proxy.upstream).host, "content-length": String(body.length) };
      const out = request(new URL(path, proxy.upstream), { method: req.method, headers }, (up) => {
        seen.upstream = up.statusCode ?? 0;
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      out.on("error", () => {
        // The stub is gone (killed): the agent sees what it would see without a proxy, a dropped connection.
        seen.upstream = "unreachable";
        req.socket.destroy();
      });
      out.end(body);
    });
  }

  await proxy.up();
  return proxy;
}
