/**
 * Writing replies: the status line and header fields, then the body, framed by the server.
 * Bytes go out with their length (a small body in the same write as the head). A stream goes
 * out chunk by chunk as it produces them, one read ahead (stream_chunks.ts): with the reply's `Content-Length` exactly that many
 * bytes (a stream that ends early or runs long closes the connection, so the client sees a
 * cut reply, never a misframed one), else with chunked encoding (HTTP/1.1) or delimited by
 * the close (HTTP/1.0). HEAD, 204, 304 and 1xx replies carry no body: a stream is cancelled
 * unread.
 */

import type { HttpError } from "./errors.ts";
import type { Reply } from "./types.ts";
import { StreamChunks } from "./stream_chunks.ts";
import type { WireWriter } from "./writer.ts";

/** What became of a written reply and its connection. */
export type Outcome =
  /** Written whole; the connection can take another request. */
  | "keep"
  /** Written whole; the connection closes (asked to, or the body is delimited by the close). */
  | "close"
  /** Not written whole (the body stream failed, or ran short or long): the connection closes. */
  | "broken";

/** How a reply is written. */
export interface ReplyOptions {
  /** The request was a HEAD: no body, whatever the reply holds. */
  readonly isHead: boolean;
  /** The connection stays open after the reply (it says `Connection: close` otherwise). */
  readonly keepAlive: boolean;
  /** The request was HTTP/1.0 (no chunked encoding; keep-alive is said explicitly). */
  readonly http10: boolean;
  /** Told when a body stream fails (the reply is then cut or replaced by a 500). */
  readonly onStreamError?: (error: unknown) => void;
}

/** A body up to this size is sent in the same write as what precedes it. */
const COALESCE_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const CRLF = encoder.encode("\r\n");
const DECIMAL = /^[0-9]{1,15}$/;
// deno-lint-ignore no-control-regex
const UNSAFE_FIELD = /[\x00-\x08\x0a-\x1f\x7f]/;
/** Header fields the server writes itself. */
const FRAMING = new Set([
  "content-length",
  "connection",
  "transfer-encoding",
  "keep-alive",
  "date",
]);

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
};

/** A plain-text reply of the server's own, closing the connection. */
export function plainReply(status: number, message: string): Reply {
  const body = encoder.encode(`${message}\n`);
  return {
    status,
    headers: [["Content-Type", "text/plain; charset=utf-8"], ["Connection", "close"]],
    body,
  };
}

/** The server's answer to a refused request or a body it could not read. */
export function errorReply(error: HttpError): Reply {
  return plainReply(error.status, error.message);
}

/** A reply's header value by case-insensitive name, or null. */
export function headerOf(reply: Reply, name: string): string | null {
  const lower = name.toLowerCase();
  for (const [key, value] of reply.headers) if (key.toLowerCase() === lower) return value;
  return null;
}

let dateSecond = 0;
let dateText = "";

function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** The reply head; `length` null means no `Content-Length`. */
function headBytes(
  reply: Reply,
  length: number | null,
  keepAlive: boolean,
  http10: boolean,
  chunked = false,
): Uint8Array {
  const status = reply.status;
  let text = `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\n`;
  for (const [name, value] of reply.headers) {
    if (FRAMING.has(name.toLowerCase())) continue;
    // a field that could split the reply is dropped (handlers only send checked values)
    if (UNSAFE_FIELD.test(name) || UNSAFE_FIELD.test(value)) continue;
    text += `${name}: ${value}\r\n`;
  }
  if (length !== null) text += `Content-Length: ${length}\r\n`;
  if (chunked) text += "Transfer-Encoding: chunked\r\n";
  if (!keepAlive) text += "Connection: close\r\n";
  else if (http10) text += "Connection: keep-alive\r\n";
  return encoder.encode(`${text}Date: ${httpDate()}\r\n\r\n`);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const part of parts) size += part.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Writes `before` then `data`: in one write when `data` is small, else in two. */
async function send(writer: WireWriter, before: Uint8Array | null, data: Uint8Array) {
  if (before === null) await writer.write(data);
  else if (data.length <= COALESCE_BYTES) await writer.write(concat(before, data));
  else {
    await writer.write(before);
    await writer.write(data);
  }
}

/** Cancels a stream the reply does not send; never waits on it. */
function release(stream: ReadableStream<Uint8Array>): void {
  stream.cancel().catch(() => {});
}

/**
 * Writes a reply. Throws what the socket throws; a failing body stream makes the outcome
 * "broken" (or, before its first byte, a 500 in place of the reply).
 */
export async function writeReply(
  writer: WireWriter,
  reply: Reply,
  options: ReplyOptions,
): Promise<Outcome> {
  const { status, body } = reply;
  const { keepAlive, http10 } = options;
  const declared = headerOf(reply, "content-length");
  const length = declared !== null && DECIMAL.test(declared) ? Number(declared) : null;
  if (options.isHead || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    if (body instanceof ReadableStream) release(body);
    const said = status === 204 || status < 200
      ? null
      : length ?? (body instanceof Uint8Array ? body.length : null);
    await writer.write(headBytes(reply, said, keepAlive, http10));
    return keepAlive ? "keep" : "close";
  }
  if (!(body instanceof ReadableStream)) {
    const bytes = body ?? new Uint8Array(0);
    await send(writer, headBytes(reply, bytes.length, keepAlive, http10), bytes);
    return keepAlive ? "keep" : "close";
  }
  return await writeStream(writer, reply, body, length, options);
}

async function writeStream(
  writer: WireWriter,
  reply: Reply,
  stream: ReadableStream<Uint8Array>,
  length: number | null,
  options: ReplyOptions,
): Promise<Outcome> {
  const http10 = options.http10;
  const mode = length !== null ? "length" : http10 ? "close" : "chunked";
  const keepAlive = options.keepAlive && mode !== "close";
  /** Answers 500 in place of the reply, when the stream fails before its first byte. */
  const fail = () =>
    writeReply(writer, plainReply(500, "Internal Server Error"), { ...options, keepAlive: false });
  let chunks: StreamChunks;
  try {
    chunks = new StreamChunks(stream);
  } catch (error) {
    options.onStreamError?.(error); // locked: someone else reads it
    return await fail();
  }
  let failure: unknown = null;
  /** The next chunk; null at the end, undefined when the stream failed. */
  const next = async () => {
    try {
      return await chunks.next();
    } catch (error) {
      failure = error;
      return undefined;
    }
  };
  try {
    // The first chunk is read before the head, so a stream failing at once gets a 500.
    let chunk = length === 0 ? null : await next();
    if (chunk === undefined) return await fail(); // told in `finally`
    const head = headBytes(reply, length, keepAlive, http10, mode === "chunked");
    if (mode === "length") {
      const limit = length ?? 0;
      let before: Uint8Array | null = head;
      let sent = 0;
      while (chunk) {
        if (chunk.length > limit - sent) break; // runs long: this chunk is not sent
        await send(writer, before, chunk);
        before = null;
        sent += chunk.length;
        chunk = await next();
      }
      if (before !== null) await writer.write(before);
      // the stream must end where its length says
      return sent === limit && chunk === null ? (keepAlive ? "keep" : "close") : "broken";
    }
    if (mode === "close") {
      let before: Uint8Array | null = head;
      for (; chunk; chunk = await next()) {
        await send(writer, before, chunk);
        before = null;
      }
      if (before !== null) await writer.write(before);
      return chunk === null ? "close" : "broken";
    }
    // chunked: each chunk framed as `<hex size>\r\n<data>\r\n`; the CRLF after a large chunk
    // goes out with what follows it
    let before: Uint8Array | null = head;
    let owed = false;
    for (; chunk; chunk = await next()) {
      const line = encoder.encode(`${owed ? "\r\n" : ""}${chunk.length.toString(16)}\r\n`);
      const prefix: Uint8Array = before === null ? line : concat(before, line);
      before = null;
      owed = chunk.length > COALESCE_BYTES;
      if (owed) await send(writer, prefix, chunk);
      else await writer.write(concat(prefix, chunk, CRLF));
    }
    if (chunk === undefined) return "broken"; // no last chunk: the client sees the cut
    const last = encoder.encode(`${owed ? "\r\n" : ""}0\r\n\r\n`);
    await writer.write(before === null ? last : concat(before, last));
    return keepAlive ? "keep" : "close";
  } finally {
    chunks.release();
    if (failure !== null) options.onStreamError?.(failure);
  }
}
