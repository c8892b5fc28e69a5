/**
 * Request heads (RFC 9112 sections 2-6): read from a connection's buffer, parsed, and checked
 * strictly where leniency invites request smuggling. A request with both `Transfer-Encoding`
 * and `Content-Length`, a malformed or repeated length, a coding other than a single
 * `chunked`, two `Host` fields, obs-folded or whitespace-padded field names, bare LF line ends
 * and control characters are refused with 400 (431 for too many or too large fields, 417 for an
 * unknown expectation), and the connection closes.
 */

import { HttpError } from "./errors.ts";
import type { HeaderFields, IncomingRequest } from "./types.ts";
import type { WireReader } from "./reader.ts";
import type { Tripwire } from "./tripwire.ts";

/** The most header fields accepted in a request head. */
export const MAX_FIELDS = 100;

/** A decimal length as HTTP carries it (15 digits stay exact in a double). */
const DECIMAL = /^[0-9]{1,15}$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const TARGET = /^[\x21-\x7e]+$/;
const AUTHORITY = /^[A-Za-z0-9.\-_~%!$&'()*+;=:\[\]]+$/;
const ascii = new TextDecoder();
let lastAuthority = "";

/** Header fields parsed by the server: a map by lower-case name, cheaper than `Headers`. */
export class FieldMap implements HeaderFields {
  readonly #fields = new Map<string, string>();

  /** Adds a field; a repeated name joins its values with ", ". True when the name repeats. */
  append(name: string, value: string): boolean {
    const key = name.toLowerCase();
    const known = this.#fields.get(key);
    this.#fields.set(key, known === undefined ? value : `${known}, ${value}`);
    return known !== undefined;
  }

  /** @inheritdoc */
  get(name: string): string | null {
    return this.#fields.get(name.toLowerCase()) ?? null;
  }

  /** The fields, names in lower case. */
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.#fields.entries();
  }
}

/** How a request body is framed: none, a length, or chunked. */
export type Framing = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" };

/** A parsed request head and how its body is framed. */
export interface Head {
  /** The request as the handler sees it. */
  readonly request: IncomingRequest;
  /** HTTP/1.0 (no chunked replies, close unless keep-alive is asked). */
  readonly http10: boolean;
  /** The client asked to keep the connection open (or did not ask to close it). */
  readonly keepAlive: boolean;
  /** `Expect: 100-continue`: the client waits for an interim 100 before sending its body. */
  readonly expectContinue: boolean;
  /** The body's framing. */
  readonly framing: Framing;
}

/** How `readHead` reads. */
export interface HeadOptions {
  /** Largest head accepted (request line and fields); above it 431. */
  readonly maxHeadBytes: number;
  /** The authority of requests without one (HTTP/1.0 without Host, or an empty Host). */
  readonly defaultAuthority: string;
  /** The scheme of the requests' URLs: `https` on a TLS connection; default `http`. */
  readonly scheme?: "http" | "https";
  /** Called once when the first byte of the head arrives. */
  readonly onFirstByte?: () => void;
  /** Trips to end the wait for the head early (e.g. with a 408 when it takes too long). */
  readonly expiry?: Tripwire;
}

/** Bytes as a string, one character per byte (ASCII fast path; latin1 otherwise). */
function latin1(bytes: Uint8Array): string {
  let plain = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      plain = false;
      break;
    }
  }
  if (plain) return ascii.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

/**
 * Reads the next request head and consumes it from the buffer (the body, if any, follows
 * there). Returns null when the source ends cleanly before a request starts; throws
 * `HttpError` for a malformed or oversized head, and `Error` when the source ends in the
 * middle of one.
 */
export async function readHead(reader: WireReader, options: HeadOptions): Promise<Head | null> {
  /** Bytes from `reader.start` already checked for bare LFs. */
  let scanned = 0;
  let started = false;
  while (true) {
    const buffer = reader.buffer;
    if (!started) {
      // Empty lines before a request line are ignored (RFC 9112 section 2.2).
      while (
        reader.buffered >= 2 && buffer[reader.start] === 13 && buffer[reader.start + 1] === 10
      ) {
        reader.start += 2;
      }
      if (reader.buffered > 0 && !(reader.buffered === 1 && buffer[reader.start] === 13)) {
        started = true;
        options.onFirstByte?.();
      }
    }
    if (started) {
      const end = findHeadEnd(buffer, reader.start, reader.start + scanned, reader.end);
      if (end >= 0) {
        if (end - reader.start > options.maxHeadBytes) throw tooLarge(options.maxHeadBytes);
        const text = latin1(buffer.subarray(reader.start, end - 4));
        reader.start = end;
        return parseHead(text, options.defaultAuthority, options.scheme);
      }
      scanned = reader.buffered;
    }
    if (reader.buffered > options.maxHeadBytes) throw tooLarge(options.maxHeadBytes);
    const more = options.expiry ? await options.expiry.race(reader.fill()) : await reader.fill();
    if (!more) {
      if (!started) return null;
      throw new Error("Connection closed in the middle of a request head");
    }
  }
}

function tooLarge(maxHeadBytes: number): HttpError {
  return new HttpError(431, `Request head is larger than ${maxHeadBytes} bytes`);
}

/**
 * Where the head in `buffer[start, to)` ends: the index just past its `\r\n\r\n`, or -1
 * when it has not arrived. Checks every LF from `from` on: one without its CR (a bare LF)
 * is refused at once rather than waited on.
 */
function findHeadEnd(buffer: Uint8Array, start: number, from: number, to: number): number {
  const bytes = buffer.subarray(0, to);
  for (let i = bytes.indexOf(10, from); i >= 0; i = bytes.indexOf(10, i + 1)) {
    if (i === start || bytes[i - 1] !== 13) {
      throw new HttpError(400, "Header line ends with a bare LF");
    }
    // every earlier LF had its CR: an LF two bytes back means an empty line
    if (i - 2 > start && bytes[i - 2] === 10) return i + 1;
  }
  return -1;
}

/**
 * Parses a head (without its final empty line) into a request whose URL has `scheme`; throws
 * `HttpError` for a refused one.
 */
export function parseHead(
  text: string,
  defaultAuthority: string,
  scheme: "http" | "https" = "http",
): Head {
  const lines = text.split("\r\n");
  const parts = lines[0].split(" ");
  if (parts.length !== 3) throw new HttpError(400, "Malformed request line");
  const [method, target, version] = parts;
  if (!TOKEN.test(method)) throw new HttpError(400, "Malformed request method");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    // 400 rather than 505: bad input never gets a 5xx here
    throw new HttpError(400, `Unsupported HTTP version ${JSON.stringify(version)}; use HTTP/1.1`);
  }
  const http10 = version === "HTTP/1.0";
  if (!TARGET.test(target)) throw new HttpError(400, "Malformed request target");

  if (lines.length - 1 > MAX_FIELDS) {
    throw new HttpError(431, `More than ${MAX_FIELDS} header fields`);
  }
  const headers = new FieldMap();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpError(400, "Malformed header field");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpError(400, "Malformed header field name");
    const value = trimmed(line, colon + 1);
    if (CONTROL.test(value)) throw new HttpError(400, "Control character in a header field");
    if (headers.append(name, value)) {
      const key = name.toLowerCase();
      if (key === "host") throw new HttpError(400, "More than one Host field");
      if (key === "content-length") throw new HttpError(400, "Repeated Content-Length");
    }
  }

  let path = target;
  const host = headers.get("host");
  // every HTTP/1.1 request has a Host field, even one with an absolute-form target
  // (RFC 9112 section 3.2)
  if (host === null && !http10) throw new HttpError(400, "HTTP/1.1 request without Host");
  let authority = host ?? defaultAuthority;
  if (/^https?:\/\//i.test(target)) {
    // absolute-form: its authority wins over Host (RFC 9112 section 3.2.2); an http(s) URI
    // with an empty host is invalid (RFC 9110 section 4.2.1)
    const afterScheme = target.indexOf("//") + 2;
    // the authority ends at the path, or at the query of an empty path (`http://h?q`)
    let end = afterScheme;
    while (end < target.length && target[end] !== "/" && target[end] !== "?") end++;
    authority = target.slice(afterScheme, end);
    if (authority === "") throw new HttpError(400, "Request target without a host");
    path = target[end] === "/" ? target.slice(end) : `/${target.slice(end)}`;
  } else if (!target.startsWith("/")) {
    throw new HttpError(400, "Request target must be a path");
  }
  if (authority === "") authority = defaultAuthority;
  if (authority !== lastAuthority) {
    if (!AUTHORITY.test(authority) || !URL.canParse(`http://${authority}/`)) {
      throw new HttpError(400, "Malformed Host");
    }
    lastAuthority = authority; // clients send the same Host on every request: check it once
  }

  const connection = (headers.get("connection") ?? "").toLowerCase();
  const tokens = connection.split(",").map((token) => token.trim());
  const keepAlive = http10 ? tokens.includes("keep-alive") : !tokens.includes("close");

  const expect = headers.get("expect");
  let expectContinue = false;
  if (expect !== null) {
    if (expect.toLowerCase() !== "100-continue") {
      throw new HttpError(417, `Expectation ${JSON.stringify(expect)} is not supported`);
    }
    expectContinue = !http10;
  }

  return {
    request: { method, url: `${scheme}://${authority}${path}`, headers },
    http10,
    keepAlive,
    expectContinue,
    framing: framingOf(headers, http10),
  };
}

/** `line` from `from` on, without leading and trailing spaces and tabs. */
function trimmed(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 32 || line.charCodeAt(start) === 9)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 32 || line.charCodeAt(end - 1) === 9)) end--;
  return line.slice(start, end);
}

/** The body framing the head declares; throws `HttpError` for an ambiguous or unknown one. */
function framingOf(headers: FieldMap, http10: boolean): Framing {
  const transferEncoding = headers.get("transfer-encoding");
  const contentLength = headers.get("content-length");
  if (transferEncoding !== null) {
    if (http10) throw new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (contentLength !== null) {
      throw new HttpError(400, "Both Transfer-Encoding and Content-Length");
    }
    const codings = transferEncoding.toLowerCase().split(",").map((c) => c.trim()).filter((c) =>
      c !== ""
    );
    if (codings.length === 0 || codings[codings.length - 1] !== "chunked") {
      throw new HttpError(400, "Transfer-Encoding must end with chunked");
    }
    if (codings.length > 1) {
      throw new HttpError(400, `Transfer-Encoding ${transferEncoding} is not supported`);
    }
    return { kind: "chunked" };
  }
  if (contentLength !== null) {
    if (!DECIMAL.test(contentLength)) throw new HttpError(400, "Malformed Content-Length");
    const length = Number(contentLength);
    if (length > 0) return { kind: "length", length };
  }
  return { kind: "none" };
}
