/**
 * The chunked transfer coding's decoder (RFC 9112 section 7.1): reads a chunked body out of a
 * connection's buffer into the caller's buffers, across as many chunks as are at hand. Strict:
 * a line without its CR, a chunk longer than its size, a size that is not plain hex (signs,
 * `0x`, whitespace without an extension, more than 13 significant digits), control characters
 * in an extension and oversized lines or trailers are refused with an `HttpError` (400).
 */

import { HttpError } from "./errors.ts";
import type { WireReader } from "./reader.ts";

/** The longest chunk-size line or trailer field accepted. */
export const MAX_LINE = 8 * 1024;
/** The most trailer bytes accepted after the last chunk. */
export const MAX_TRAILERS = 64 * 1024;

type State = "size" | "data" | "data-end" | "trailers" | "done";

/** The value of a hex digit's byte, or -1. */
function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  const lower = byte | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/** A malformed chunked body. */
function malformed(what: string): HttpError {
  return new HttpError(400, `Malformed chunked body: ${what}`);
}

/** A body that ended before its last chunk. */
export function cutShort(): HttpError {
  return new HttpError(400, "Request body cut short: the client closed the connection");
}

/** Decodes one chunked body from a reader; the reader is left just past its end. */
export class ChunkedDecoder {
  readonly #reader: WireReader;
  #state: State = "size";
  /** Bytes left in the current chunk. */
  #left = 0;
  #trailerBytes = 0;

  /** Decodes the chunked body that starts at the reader's position. */
  constructor(reader: WireReader) {
    this.#reader = reader;
  }

  /** The last chunk and the trailers have been read. */
  get done(): boolean {
    return this.#state === "done";
  }

  /**
   * Copies body bytes into `into`, as many as the buffer holds (at least one: it reads the
   * source when the buffer has none); 0 only at the end of the body. Throws `HttpError` for
   * malformed framing or a source that ends early.
   */
  async read(into: Uint8Array): Promise<number> {
    const reader = this.#reader;
    let filled = 0;
    while (filled < into.length && this.#state !== "done") {
      if (this.#state === "data") {
        if (reader.buffered === 0) {
          if (filled > 0) break; // return what is at hand rather than wait
          if (!(await reader.fill())) throw cutShort();
        }
        const n = Math.min(reader.buffered, this.#left, into.length - filled);
        into.set(reader.buffer.subarray(reader.start, reader.start + n), filled);
        reader.start += n;
        filled += n;
        this.#left -= n;
        if (this.#left === 0) this.#state = "data-end";
        continue;
      }
      // size, data-end and trailers: one whole line from the buffer
      const lf = reader.buffer.subarray(reader.start, reader.end).indexOf(10);
      if (lf < 0) {
        if (reader.buffered > MAX_LINE) throw malformed("a chunk line is too long");
        if (filled > 0) break;
        if (!(await reader.fill())) throw cutShort();
        continue;
      }
      this.#line(reader.buffer, reader.start, reader.start + lf);
      reader.start += lf + 1;
    }
    return filled;
  }

  /**
   * Applies one line of the framing, `bytes[from, lf)` where `bytes[lf]` is its LF: the CRLF
   * after a chunk's data, a chunk-size line, or a trailer field (ignored).
   */
  #line(bytes: Uint8Array, from: number, lf: number): void {
    if (lf === from || bytes[lf - 1] !== 13) throw malformed("a line does not end with CRLF");
    if (lf - from > MAX_LINE) throw malformed("a chunk line is too long");
    const end = lf - 1;
    if (this.#state === "data-end") {
      if (end !== from) throw malformed("a chunk is longer than its size");
      this.#state = "size";
    } else if (this.#state === "size") {
      this.#left = chunkSize(bytes, from, end);
      this.#state = this.#left === 0 ? "trailers" : "data";
    } else {
      // trailers: ignored, up to an empty line
      this.#trailerBytes += end - from + 2;
      if (this.#trailerBytes > MAX_TRAILERS) throw malformed("the trailers are too large");
      if (end !== from && (bytes[from] === 32 || bytes[from] === 9)) {
        throw malformed("a folded trailer line");
      }
      if (end === from) this.#state = "done";
    }
  }
}

/** The size on a chunk-size line `bytes[from, end)` (CRLF excluded), extensions ignored. */
function chunkSize(bytes: Uint8Array, from: number, end: number): number {
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
  if (i === from || i - digits > 13) throw malformed("a chunk size is not hex or too large");
  // whitespace only before an extension (";" starts one)
  while (i < end && (bytes[i] === 32 || bytes[i] === 9)) i++;
  if (i < end ? bytes[i] !== 59 : bytes[i - 1] === 32 || bytes[i - 1] === 9) {
    throw malformed("a chunk size is not hex");
  }
  for (; i < end; i++) {
    if ((bytes[i] < 32 && bytes[i] !== 9) || bytes[i] === 127) {
      throw malformed("a control character in a chunk extension");
    }
  }
  return size;
}
