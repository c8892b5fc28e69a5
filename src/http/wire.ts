/**
 * HTTP/1.1 on the wire (RFC 9112), the reading side: a buffered connection reader, the request
 * head parser, and request bodies (`Content-Length` or chunked) read straight into the
 * caller's buffers. `server.ts` drives them.
 *
 * Framing is strict where leniency invites request smuggling: a request with both
 * `Transfer-Encoding` and `Content-Length`, a malformed or repeated length, a coding other than
 * a single `chunked`, obs-folded or whitespace-padded field names, bare LF line ends and
 * control characters are refused with 400, and the connection closes.
 */

import { RegistryError } from "../errors.ts";
import type { RequestBody } from "./body.ts";
import { DECIMAL, FieldMap, type IncomingRequest } from "./request.ts";

/** A connection's read buffer between requests (heads are small). */
const IDLE_BUFFER = 16 * 1024;
/** The read buffer while a chunked body streams through it, and the most it grows to. */
const BODY_BUFFER = 256 * 1024;
/** The longest chunk-size line or trailer field accepted. */
const MAX_LINE = 8 * 1024;
/** The most header fields accepted in a request head. */
const MAX_FIELDS = 100;
/** The most trailer bytes accepted after the last chunk. */
const MAX_TRAILERS = 64 * 1024;

/** A request head that cannot be served; answered with `status` and the connection closed. */
export class BadRequest extends Error {
  /** Makes the error for a status (400, 417 or 431). */
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A parsed request head and how its body is framed. */
export interface Head {
  readonly request: IncomingRequest;
  /** HTTP/1.0 (no chunked responses, close unless keep-alive is asked). */
  readonly http10: boolean;
  /** The client asked to keep the connection open (or did not ask to close it). */
  readonly keepAlive: boolean;
  /** `Expect: 100-continue`: the client waits for an interim 100 before sending its body. */
  readonly expectContinue: boolean;
  /** The body's framing: none, a length, or chunked. */
  readonly framing: { kind: "none" } | { kind: "length"; length: number } | {
    kind: "chunked";
  };
}

/** A connection's socket with a read buffer; heads and bodies read through it. */
export class Wire {
  readonly conn: Deno.Conn;
  buffer = new Uint8Array(IDLE_BUFFER);
  start = 0;
  end = 0;
  /** While a write is pending: when it last made progress (epoch ms); else null. */
  writingSince: number | null = null;

  /** Wraps a connection. */
  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Bytes buffered and not yet consumed. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Makes the buffer `size` bytes (at least what is buffered), keeping the buffered bytes. */
  resize(size: number): void {
    const next = new Uint8Array(Math.max(size, this.buffered));
    next.set(this.buffer.subarray(this.start, this.end));
    this.end -= this.start;
    this.start = 0;
    this.buffer = next;
  }

  /** Back to the small buffer after a large body, so idle connections hold little memory. */
  relax(): void {
    if (this.buffer.length > IDLE_BUFFER && this.buffered <= IDLE_BUFFER) this.resize(IDLE_BUFFER);
  }

  /** Grows the buffer for a chunked body, which streams through it. */
  widen(): void {
    if (this.buffer.length < BODY_BUFFER) this.resize(BODY_BUFFER);
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async fill(): Promise<boolean> {
    if (this.start === this.end) {
      this.start = this.end = 0;
    } else if (this.end === this.buffer.length) {
      if (this.start > 0) {
        this.buffer.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else if (this.buffer.length < BODY_BUFFER) {
        this.resize(this.buffer.length * 2);
      } else {
        throw new Error("Connection buffer full");
      }
    }
    const n = await this.conn.read(this.buffer.subarray(this.end));
    if (n === null || n === 0) return false;
    this.end += n;
    return true;
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    this.writingSince = Date.now();
    try {
      while (offset < bytes.length) {
        offset += await this.conn.write(bytes.subarray(offset));
        this.writingSince = Date.now();
      }
    } finally {
      this.writingSince = null;
    }
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const TARGET = /^[\x21-\x7e]+$/;
const AUTHORITY = /^[A-Za-z0-9.\-_~%!$&'()*+;=:\[\]]+$/;
const ascii = new TextDecoder();
let lastAuthority = "";

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
 * Reads the next request head. Returns null when the connection ends cleanly before one
 * starts; throws `BadRequest` for a malformed or oversized head, and `Error` when the
 * connection ends in the middle of one.
 */
export async function readHead(
  wire: Wire,
  maxHeadBytes: number,
  defaultAuthority: string,
  onFirstByte: () => void,
): Promise<Head | null> {
  let scanFrom = 0;
  let started = false;
  while (true) {
    const { buffer } = wire;
    // Empty lines before a request line are ignored (RFC 9112 section 2.2).
    while (wire.buffered >= 2 && buffer[wire.start] === 13 && buffer[wire.start + 1] === 10) {
      wire.start += 2;
    }
    if (wire.buffered > 0 && !started) {
      started = true;
      onFirstByte();
    }
    const end = findHeadEnd(buffer, wire.start + scanFrom, wire.end);
    if (end >= 0) {
      const text = latin1(buffer.subarray(wire.start, end));
      wire.start = end + 4;
      return parseHead(text, defaultAuthority);
    }
    if (wire.buffered > maxHeadBytes) {
      throw new BadRequest(431, `Request head is larger than ${maxHeadBytes} bytes`);
    }
    scanFrom = Math.max(0, wire.buffered - 3);
    if (!(await wire.fill())) {
      if (wire.buffered === 0) return null;
      throw new Error("Connection closed in the middle of a request head");
    }
  }
}

/**
 * Where the `\r\n\r\n` ending a head starts in `buffer[from, to)`, or -1; a line ending in
 * a bare LF is refused at once rather than waited on.
 */
function findHeadEnd(buffer: Uint8Array, from: number, to: number): number {
  const bytes = buffer.subarray(0, to);
  let i = bytes.indexOf(10, from + 1);
  while (i >= 0) {
    if (bytes[i - 1] !== 13) throw new BadRequest(400, "Header line ends with a bare LF");
    if (i + 2 >= to) return -1;
    if (bytes[i + 1] === 13 && bytes[i + 2] === 10) return i - 1;
    i = bytes.indexOf(10, i + 1);
  }
  return -1;
}

function parseHead(text: string, defaultAuthority: string): Head {
  const lines = text.split("\r\n");
  const requestLine = lines[0];
  const parts = requestLine.split(" ");
  if (parts.length !== 3) throw new BadRequest(400, "Malformed request line");
  const [method, target, version] = parts;
  if (!TOKEN.test(method)) throw new BadRequest(400, "Malformed request method");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    // 400 rather than 505: bad input never gets a 5xx here
    throw new BadRequest(400, `Unsupported HTTP version ${JSON.stringify(version)}; use HTTP/1.1`);
  }
  const http10 = version === "HTTP/1.0";
  if (!TARGET.test(target)) throw new BadRequest(400, "Malformed request target");

  if (lines.length - 1 > MAX_FIELDS) {
    throw new BadRequest(431, `More than ${MAX_FIELDS} header fields`);
  }
  const headers = new FieldMap();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) throw new BadRequest(400, "Malformed header field");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new BadRequest(400, "Malformed header field name");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (CONTROL.test(value)) throw new BadRequest(400, "Control character in a header field");
    headers.append(name, value);
  }

  let path = target;
  let authority = headers.get("host");
  if (/^https?:\/\//i.test(target)) {
    // absolute-form: its authority wins over Host (RFC 9112 section 3.2.2)
    const afterScheme = target.indexOf("//") + 2;
    const slash = target.indexOf("/", afterScheme);
    authority = target.slice(afterScheme, slash < 0 ? undefined : slash);
    path = slash < 0 ? "/" : target.slice(slash);
  } else if (!target.startsWith("/")) {
    throw new BadRequest(400, "Request target must be a path");
  }
  if (authority === null) {
    if (!http10) throw new BadRequest(400, "HTTP/1.1 request without Host");
    authority = defaultAuthority;
  }
  if (authority === "") authority = defaultAuthority;
  if (authority !== lastAuthority) {
    if (!AUTHORITY.test(authority) || !URL.canParse(`http://${authority}/`)) {
      throw new BadRequest(400, "Malformed Host");
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
      throw new BadRequest(417, `Expectation ${JSON.stringify(expect)} is not supported`);
    }
    expectContinue = !http10;
  }

  const transferEncoding = headers.get("transfer-encoding");
  const contentLength = headers.get("content-length");
  let framing: Head["framing"] = { kind: "none" };
  if (transferEncoding !== null) {
    if (http10) throw new BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (contentLength !== null) {
      throw new BadRequest(400, "Both Transfer-Encoding and Content-Length");
    }
    const codings = transferEncoding.toLowerCase().split(",").map((c) => c.trim()).filter((c) =>
      c !== ""
    );
    if (codings.length === 0 || codings[codings.length - 1] !== "chunked") {
      throw new BadRequest(400, "Transfer-Encoding must end with chunked");
    }
    if (codings.length > 1) {
      throw new BadRequest(400, `Transfer-Encoding ${transferEncoding} is not supported`);
    }
    framing = { kind: "chunked" };
  } else if (contentLength !== null) {
    if (!DECIMAL.test(contentLength)) throw new BadRequest(400, "Malformed Content-Length");
    const length = Number(contentLength);
    if (length > 0) framing = { kind: "length", length };
  }
  return {
    request: { method, url: `http://${authority}${path}`, headers },
    http10,
    keepAlive,
    expectContinue,
    framing,
  };
}

function unreadable(message: string, cause?: unknown): RegistryError {
  return new RegistryError(
    "BLOB_UPLOAD_INVALID",
    `Request body could not be read to its end: ${message}`,
    { status: 400, headers: { Connection: "close" }, cause },
  );
}

/** The value of a hex digit's byte, or -1. */
function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  const lower = byte | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

type ChunkState = "size" | "data" | "data-end" | "trailers" | "done";

/**
 * A request body on a connection: `Content-Length` bytes, or chunked. Reads go straight into
 * the caller's buffer when nothing is buffered (length bodies), else copy from the connection
 * buffer. One read returns as much as is at hand, across chunk boundaries.
 */
export class WireBody implements RequestBody {
  readonly #wire: Wire;
  readonly #chunked: boolean;
  /** Length bodies: bytes still to come; chunked: bytes left in the current chunk. */
  #left: number;
  #state: ChunkState;
  #trailerBytes = 0;
  #continue: (() => Promise<void>) | null;
  #failure: RegistryError | null = null;
  #failed: Promise<never>;
  #fail: (error: RegistryError) => void = () => {};
  #waitingSince: number | null = null;
  #reading = false;

  /**
   * A body of `length` bytes, or chunked when `length` is null. `sendContinue` (for
   * `Expect: 100-continue`) runs before the first read.
   */
  constructor(wire: Wire, length: number | null, sendContinue: (() => Promise<void>) | null) {
    this.#wire = wire;
    this.#chunked = length === null;
    this.#left = length ?? 0;
    this.#state = length === null ? "size" : length > 0 ? "data" : "done";
    this.#continue = sendContinue;
    if (this.#chunked) wire.widen();
    this.#failed = new Promise<never>((_, reject) => (this.#fail = reject));
    this.#failed.catch(() => {});
  }

  /** Since when (epoch ms) a read has been waiting for data, or null when none is. */
  get waitingSince(): number | null {
    return this.#waitingSince;
  }

  /** The whole body has been read. */
  get done(): boolean {
    return this.#state === "done";
  }

  /** The connection can no longer be read in step: a read failed, was aborted, or is pending. */
  get broken(): boolean {
    return this.#failure !== null || this.#reading;
  }

  /** The client was never told to send the body (`Expect: 100-continue` without a read). */
  get unrequested(): boolean {
    return this.#continue !== null;
  }

  /** @inheritdoc */
  async read(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#failure) throw this.#failure;
    if (into.length === 0) throw new RangeError("WireBody.read needs a non-empty buffer");
    if (this.#reading) throw new Error("WireBody.read while another read is pending");
    this.#reading = true;
    this.#waitingSince = Date.now();
    try {
      const n = await Promise.race([this.#read(into), this.#failed]);
      return into.subarray(0, n);
    } catch (error) {
      if (this.#failure) throw this.#failure;
      const failure = error instanceof RegistryError ? error : unreadable(
        "the client closed the connection or sent a malformed body",
        error,
      );
      this.abort(failure);
      throw failure;
    } finally {
      this.#reading = false;
      this.#waitingSince = null;
    }
  }

  /**
   * Ends the body: the pending and every later read throw `error`. A socket read already
   * under way is abandoned, not stopped: it may still fill the caller's buffer (BatchWriter
   * makes fresh buffers per upload, so nothing reuses them) and the connection is closed
   * after the response (`broken`).
   */
  abort(error: RegistryError): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#fail(error);
  }

  /** The handler is done with the body; the server drains or drops what is left. */
  close(): void {}

  async #read(into: Uint8Array): Promise<number> {
    if (this.#continue) {
      const send = this.#continue;
      this.#continue = null;
      await send();
    }
    return this.#chunked ? await this.#readChunked(into) : await this.#readLength(into);
  }

  async #readLength(into: Uint8Array): Promise<number> {
    if (this.#left === 0) return 0;
    const wire = this.#wire;
    const want = Math.min(into.length, this.#left);
    let n: number;
    if (wire.buffered > 0) {
      n = Math.min(want, wire.buffered);
      into.set(wire.buffer.subarray(wire.start, wire.start + n));
      wire.start += n;
    } else {
      const got = await wire.conn.read(into.subarray(0, want));
      if (got === null || got === 0) throw unreadable("the client closed the connection");
      n = got;
    }
    this.#left -= n;
    if (this.#left === 0) this.#state = "done";
    return n;
  }

  /** Chunked: copies data out of the connection buffer, across as many frames as it holds. */
  async #readChunked(into: Uint8Array): Promise<number> {
    const wire = this.#wire;
    let filled = 0;
    while (filled < into.length && this.#state !== "done") {
      if (this.#state === "data") {
        if (wire.buffered === 0) {
          if (filled > 0) break; // return what is at hand rather than wait
          if (!(await wire.fill())) throw unreadable("the client closed the connection");
        }
        const n = Math.min(wire.buffered, this.#left, into.length - filled);
        into.set(wire.buffer.subarray(wire.start, wire.start + n), filled);
        wire.start += n;
        filled += n;
        this.#left -= n;
        if (this.#left === 0) this.#state = "data-end";
        continue;
      }
      // size, data-end and trailers: one whole line from the connection buffer
      const lf = wire.buffer.subarray(wire.start, wire.end).indexOf(10);
      if (lf < 0) {
        if (wire.buffered > MAX_LINE) throw unreadable("chunk line too long");
        if (filled > 0) break;
        if (!(await wire.fill())) throw unreadable("the client closed the connection");
        continue;
      }
      this.#line(wire.buffer, wire.start, wire.start + lf);
      wire.start += lf + 1;
    }
    return filled;
  }

  /**
   * Applies one line of the chunked framing, `bytes[from, lf)` where `bytes[lf]` is its LF:
   * the CRLF after a chunk's data, a chunk-size line, or a trailer field (ignored).
   */
  #line(bytes: Uint8Array, from: number, lf: number): void {
    if (lf === from || bytes[lf - 1] !== 13) {
      throw unreadable("a chunk line does not end with CRLF");
    }
    const end = lf - 1;
    if (this.#state === "data-end") {
      if (end !== from) throw unreadable("a chunk is longer than its size");
      this.#state = "size";
    } else if (this.#state === "size") {
      let size = 0;
      let i = from;
      while (i < end - 1 && bytes[i] === 48) i++; // leading zeros
      const digits = i;
      for (; i < end; i++) {
        const digit = hexValue(bytes[i]);
        if (digit < 0) break;
        size = size * 16 + digit;
      }
      // 13 hex digits stay exact in a double; nobody sends a chunk of 4 PiB
      if (i === from || i - digits > 13) throw unreadable("malformed chunk size");
      // whitespace only before an extension (";" starts one)
      while (i < end && (bytes[i] === 32 || bytes[i] === 9)) i++;
      if (i < end ? bytes[i] !== 59 : bytes[i - 1] === 32 || bytes[i - 1] === 9) {
        throw unreadable("malformed chunk size");
      }
      for (; i < end; i++) {
        if ((bytes[i] < 32 && bytes[i] !== 9) || bytes[i] === 127) {
          throw unreadable("control character in a chunk extension");
        }
      }
      this.#left = size;
      this.#state = size === 0 ? "trailers" : "data";
    } else {
      // trailers: ignored, up to an empty line
      this.#trailerBytes += end - from + 2;
      if (this.#trailerBytes > MAX_TRAILERS) throw unreadable("trailers too large");
      if (end === from) this.#state = "done";
    }
  }
}
