/**
 * A small HTTP proxy in front of the S3 test server that injects faults into ranged GETs: 500 answers,
 * connections reset in the middle of a body, bodies that stall. Each GET with a Range header asks `plan` what to do.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { verifySigV4 } from "./sigv4-verify.ts";

export type Fault = "pass" | "500" | "reset" | "chunked" | "wrong-range" | { stallMs: number };

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
    /** Flexible-checksum headers the request carried (x-amz-checksum-*, x-amz-sdk-checksum-algorithm, x-amz-trailer). */
    checksumHeaders: string[];
    userAgent: string | undefined;
    /** Which client connection carried it (1-based, in order of arrival). */
    connection: number;
    /** verifySigV4 against the proxy's secret: "ok", or why not. */
    sigV4: string;
  }[];
  /** Client connections accepted so far. */
  readonly connections: number;
  /** Closes every client connection now (as a server's keep-alive timeout does). */
  dropConnections(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(
  upstream: string,
  plan: (n: number, req: http.IncomingMessage) => Fault | Promise<Fault>,
  secret = "S3RVER",
): Promise<FaultProxy> {
  const target = new URL(upstream);
  let rangedGets = 0;
  const requests: FaultProxy["requests"] = [];
  const sockets = new Set<import("node:net").Socket>();
  const connectionOf = new WeakMap<import("node:net").Socket, number>();
  let connections = 0;
  const server = http.createServer(async (req, res) => {
    const range = req.headers.range;
    requests.push({
      userAgent: req.headers["user-agent"],
      connection: connectionOf.get(req.socket) ?? 0,
      sigV4: verifySigV4(req.method ?? "", req.url ?? "", req.headers, secret),
      method: req.method ?? "",
      url: req.url ?? "",
      range,
      ifMatch: req.headers["if-match"],
      contentSha256: req.headers["x-amz-content-sha256"] as string | undefined,
      contentMd5: req.headers["content-md5"] as string | undefined,
      checksumHeaders: Object.keys(req.headers).filter((h) =>
        /^x-amz-(checksum-|sdk-checksum-algorithm$|trailer$)/.test(h),
      ),
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
        if (fault === "chunked") {
          // The same bytes with Transfer-Encoding: chunked instead of a Content-Length.
          const { "content-length": _drop, ...rest } = ur.headers;
          res.writeHead(ur.statusCode ?? 502, { ...rest, "transfer-encoding": "chunked" });
          ur.pipe(res);
          return;
        }
        if (fault === "wrong-range") {
          // The right bytes, labelled as another range of the same length (a confused server or cache).
          const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(ur.headers["content-range"]));
          if (m) ur.headers["content-range"] = `bytes ${Number(m[1]) + 1}-${Number(m[2]) + 1}/${m[3]}`;
        }
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
    connectionOf.set(s, ++connections);
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
    get connections() {
      return connections;
    },
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
