/**
 * How S3 spells keys and ETags on the wire, for the code that speaks to it without the SDK: the agent's ranged
 * readers and the backend's presigned checkpoint URLs (a backend must sign keys exactly as the agent sends them).
 * No imports, so either loads it without the SDK.
 */

/** RFC 3986's strict encoding, as SigV4 wants it: every byte but unreserved ones percent-encoded, `!'()*` too. */
export function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** S3's encoding of a key in a path: each segment as encodeSegment, `/` kept. */
export function encodeKey(key: string): string {
  return key.split("/").map(encodeSegment).join("/");
}

/** An ETag as stored and compared: without its quotes or a weak `W/` prefix. */
export function unquoteEtag(etag: string | undefined): string {
  return (etag ?? "").replace(/^W\//, "").replace(/^"|"$/g, "");
}
