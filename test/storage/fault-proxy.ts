/**
 * A small HTTP proxy in front of the S3 test server that injects faults into ranged GETs: 500 answers,
 * connections reset in the middle of a body, bodies that stall. Each GET with a Range header asks `plan` what to do.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export type Fault = "pass" | "500" | "reset" | { stallMs: number };

export interface FaultProxy {
  endpoint: string;
  /** Ranged GETs seen so far (1-based index passed to plan). */
  readonly rangedGets: number;
  readonly requests: {
    method: string;
    url: string;
    range: string | undefined;
    ifMatch: string | undefined;
    contentSha256: string | undefined;
    contentMd5: string | undefined;
  }[];
  close(): Promise<void>;
}

export async function startFaultProxy(
  upstream: string,
  plan: (n: number, req: http.IncomingMessage) => Fault | Promise<Fault>,
): Promise<FaultProxy> {
  const target = new URL(upstream);
  let rangedGets = 0;
  const requests: FaultProxy["requests"] = [];
  const sockets = new Set<import("node:net").Socket>();
  const server = http.createServer(async (req, res) => {
    const range = req.headers.range;
    requests.push({
      method: req.method ?? "",
      url: req.url ?? "",
      range,
      ifMatch: req.headers["if-match"],
      contentSha256: req.headers["x-amz-content-sha256"] as string | undefined,
      contentMd5: req.headers["content-md5"] as string | undefined,
    });
    let fault: Fault = "pass";
    if (req.method === "GET" && range !== undefined) fault = await plan(++rangedGets, req);
    if (fault === "500") {
      req.resume();
      res.writeHead(500, { "content-type": "application/xml" });
      res.end('<?xml version="1.0"?><Error><Code>InternalError</Code><Message>injected</Message></Error>');
      return;
    }
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        if (fault === "reset") {
          let sent = 0;
          ur.on("data", (c: Buffer) => {
            if (sent > 0) return;
            sent += c.length;
            res.write(c.subarray(0, Math.max(1, Math.floor(c.length / 2))), () => res.socket?.destroy());
          });
          return;
        }
        if (typeof fault === "object") {
          const { stallMs } = fault;
          let first = true;
          ur.on("data", (c: Buffer) => {
            if (first) {
              first = false;
              res.write(c.subarray(0, 1));
              ur.pause();
              setTimeout(() => {
                if (res.destroyed) return;
                res.write(c.subarray(1));
                ur.resume();
              }, stallMs).unref();
              return;
            }
            res.write(c);
          });
          ur.on("end", () => res.end());
          return;
        }
        ur.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get rangedGets() {
      return rangedGets;
    },
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
