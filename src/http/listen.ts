import type { Server } from "node:http";
import { BlockList, isIP, type AddressInfo } from "node:net";

/** Starts `server` on host:port (0 = an ephemeral port); rejects on a listen error (port taken, bad host). */
export async function listenOn(server: Server, port: number, host: string): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * Whether binding `host` serves this machine only: `localhost`, 127.0.0.0/8 or ::1 (also IPv4-mapped). Any other
 * name counts as reachable from outside, `0.0.0.0`, `::` and the empty host (all interfaces) included.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (h.toLowerCase() === "localhost") return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? "ipv4" : "ipv6");
}
