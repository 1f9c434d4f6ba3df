/**
 * An independent SigV4 check, written from AWS's published algorithm, for the fault proxy: neither fauxqs nor
 * s3rver verifies signatures, so without it a wrongly signed request would pass every test and fail on MinIO or R2.
 * Covers header-signed requests (Authorization: AWS4-HMAC-SHA256 ...) and presigned ones (X-Amz-Signature in the
 * query, as the backend stub mints them).
 */
import { createHash, createHmac } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

const strict = (s: string): string =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function canonicalQuery(query: string): string {
  if (query === "") return "";
  return query
    .split("&")
    .map((part) => {
      const eq = part.indexOf("=");
      const k = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
      const v = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1));
      return [strict(k), strict(v)] as const;
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

/** "ok", or why the request's signature does not verify with secret (S3: the path is signed as sent). */
export function verifySigV4(
  method: string,
  url: string,
  headers: IncomingHttpHeaders,
  secret: string,
): "ok" | "unsigned" | string {
  const auth = headers.authorization;
  if (auth === undefined)
    return url.includes("X-Amz-Signature=") ? verifyPresigned(method, url, headers, secret) : "unsigned";
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  if (m === null) return `malformed Authorization: ${auth}`;
  const [, , date, region, service, signedHeaders, signature] = m as unknown as string[];
  const amzDate = headers["x-amz-date"];
  if (typeof amzDate !== "string" || !amzDate.startsWith(date as string)) return "x-amz-date missing or off scope";
  const payloadHash = headers["x-amz-content-sha256"];
  if (typeof payloadHash !== "string") return "x-amz-content-sha256 missing";
  const names = (signedHeaders as string).split(";");
  if (!names.includes("host")) return "host not signed";
  const canonicalHeaders = names
    .map((n) => {
      const v = headers[n];
      if (v === undefined) return undefined;
      return `${n}:${(Array.isArray(v) ? v.join(",") : v).trim().replace(/\s+/g, " ")}\n`;
    })
    .join("");
  if (names.some((n) => headers[n] === undefined)) return "a signed header is missing";
  const q = url.indexOf("?");
  const canonicalRequest = [
    method,
    q < 0 ? url : url.slice(0, q),
    canonicalQuery(q < 0 ? "" : url.slice(q + 1)),
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join("\n");
  const expected = signatureOf(secret, [date, region, service] as string[], amzDate, canonicalRequest);
  return expected === signature ? "ok" : "signature does not match";
}

/** SigV4's signature of a canonical request: the string to sign under the key derived for scope. */
function signatureOf(secret: string, scope: string[], amzDate: string, canonicalRequest: string): string {
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    [...scope, "aws4_request"].join("/"),
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  let key: Buffer = createHmac("sha256", `AWS4${secret}`)
    .update(scope[0] as string)
    .digest();
  for (const part of [...scope.slice(1), "aws4_request"]) key = createHmac("sha256", key).update(part).digest();
  return createHmac("sha256", key).update(stringToSign).digest("hex");
}

/** The same for a presigned request: the credential, date and signed headers in the query, payload unsigned. */
function verifyPresigned(method: string, url: string, headers: IncomingHttpHeaders, secret: string): string {
  const q = url.indexOf("?");
  const params = new URLSearchParams(url.slice(q + 1));
  const [, date, region, service] = (params.get("X-Amz-Credential") ?? "").split("/");
  const amzDate = params.get("X-Amz-Date") ?? "";
  const signedHeaders = params.get("X-Amz-SignedHeaders") ?? "";
  const signature = params.get("X-Amz-Signature");
  if (date === undefined || !amzDate.startsWith(date)) return "X-Amz-Date missing or off scope";
  const names = signedHeaders.split(";");
  if (!names.includes("host")) return "host not signed";
  if (names.some((n) => headers[n] === undefined)) return "a signed header is missing";
  const canonicalHeaders = names.map((n) => `${n}:${String(headers[n]).trim().replace(/\s+/g, " ")}\n`).join("");
  const unsigned = url
    .slice(q + 1)
    .split("&")
    .filter((p) => !p.startsWith("X-Amz-Signature="))
    .join("&");
  const canonicalRequest = [
    method,
    url.slice(0, q),
    canonicalQuery(unsigned),
    canonicalHeaders,
    signedHeaders,
    params.get("X-Amz-Content-Sha256") ?? "UNSIGNED-PAYLOAD",
  ].join("\n");
  return signatureOf(secret, [date, region, service] as string[], amzDate, canonicalRequest) === signature
    ? "ok"
    : "signature does not match";
}
