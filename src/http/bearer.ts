/** `Authorization: Bearer <token>`: reading it, and checking it against a fixed token in constant time. */
import { createHash, timingSafeEqual } from "node:crypto";

/** The bearer token of an `Authorization` header; undefined without a header, "" for one that is not Bearer. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m?.[1] ?? "";
}

/**
 * A check of `Authorization` headers against `expected`; every header passes when `expected` is undefined or
 * empty. Digests are compared, so the time taken says nothing about the token's length or content.
 */
export function bearerCheck(expected: string | undefined): (header: string | undefined) => boolean {
  if (expected === undefined || expected === "") return () => true;
  const want = digest(expected);
  return (header) => {
    const token = bearerToken(header);
    return token !== undefined && token !== "" && timingSafeEqual(digest(token), want);
  };
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
