/**
 * Response builders. Every response carries `Docker-Distribution-API-Version`. Bodies are
 * never compressed: digests are over the stored bytes.
 */

/** Response header values; undefined entries are left out. */
export type HeaderValues = Record<string, string | undefined>;

/** The header Docker clients check on every response. */
export const API_VERSION_HEADER = "Docker-Distribution-API-Version";
const API_VERSION = "registry/2.0";

/** The header list of a response: the given values plus the API version. */
export function headerList(values: HeaderValues): [string, string][] {
  const list: [string, string][] = [[API_VERSION_HEADER, API_VERSION]];
  for (const key in values) {
    const value = values[key];
    if (value !== undefined) list.push([key, value]);
  }
  return list;
}

/** A response with no body (202, 204, 201, HEAD), `Content-Length: 0` unless given. */
export function empty(status: number, headers: HeaderValues = {}): Response {
  return new Response(null, {
    status,
    headers: headerList({ "Content-Length": "0", ...headers }),
  });
}

/** A JSON response from already-serialized text. */
export function jsonText(status: number, text: string, headers: HeaderValues = {}): Response {
  const bytes = new TextEncoder().encode(text);
  return new Response(bytes, {
    status,
    headers: headerList({
      "Content-Type": "application/json",
      "Content-Length": String(bytes.length),
      ...headers,
    }),
  });
}

/** A response carrying bytes or a stream with an exact length and type. */
export function content(status: number, body: BodyInit | null, headers: HeaderValues): Response {
  return new Response(body, { status, headers: headerList(headers) });
}
