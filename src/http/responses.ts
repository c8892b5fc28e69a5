/**
 * Replies: what handlers answer, as plain data (status, header list, body), written by the
 * built-in HTTP/1.1 server (src/server/) without building a `Response`, and turned into one
 * for `Deno.serve`. Every reply carries `Docker-Distribution-API-Version`. Bodies are never
 * compressed: digests are over the stored bytes.
 */

import type { Reply as TransportReply } from "../server/mod.ts";

/** A reply body: bytes, a stream of bytes (blob files: storage/file_stream.ts), or none. */
export type ResponseBody = Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;

/**
 * A handler's answer: the transport's reply, with bytes a `Response` can also carry. A
 * stream with a `Content-Length` is sent as exactly that many bytes.
 */
export interface Reply extends TransportReply {
  readonly body: ResponseBody;
}

/** Response header values; undefined entries are left out. */
export type HeaderValues = Record<string, string | undefined>;

/** The header Docker clients check on every response. */
export const API_VERSION_HEADER = "Docker-Distribution-API-Version";
const API_VERSION = "registry/2.0";

/** The header list of a reply: the given values plus the API version. */
export function headerList(values: HeaderValues): [string, string][] {
  const list: [string, string][] = [[API_VERSION_HEADER, API_VERSION]];
  for (const key in values) {
    const value = values[key];
    if (value !== undefined) list.push([key, value]);
  }
  return list;
}

/** A reply's header value by case-insensitive name, or null. */
export function headerOf(reply: Reply, name: string): string | null {
  const lower = name.toLowerCase();
  for (const [key, value] of reply.headers) if (key.toLowerCase() === lower) return value;
  return null;
}

/** A reply with no body (202, 204, 201, HEAD), `Content-Length: 0` unless given. */
export function empty(status: number, headers: HeaderValues = {}): Reply {
  return { status, headers: headerList({ "Content-Length": "0", ...headers }), body: null };
}

const encoder = new TextEncoder();

/** A JSON reply from already-serialized text. */
export function jsonText(status: number, text: string, headers: HeaderValues = {}): Reply {
  const bytes = encoder.encode(text);
  return {
    status,
    headers: headerList({
      "Content-Type": "application/json",
      "Content-Length": String(bytes.length),
      ...headers,
    }),
    body: bytes,
  };
}

/** A reply carrying bytes or a stream with an exact length and type. */
export function content(status: number, body: ResponseBody, headers: HeaderValues): Reply {
  return { status, headers: headerList(headers), body };
}

/** A reply without a body carrying another reply's status and headers (HEAD from GET). */
export function headersOnly(reply: Reply): Reply {
  return { status: reply.status, headers: reply.headers, body: null };
}

/** The reply as a `Response`, for `Deno.serve`. */
export function toResponse(reply: Reply): Response {
  return new Response(reply.body, {
    status: reply.status,
    headers: reply.headers as [string, string][],
  });
}
