/**
 * The reading side of a connection: a read buffer over any byte source (a socket, or an
 * in-memory source in tests) that request heads and chunked bodies are parsed from, and that
 * `Content-Length` bodies bypass when it is empty.
 */

/** Where a connection's bytes come from (a `Deno.Conn` is one). */
export interface ByteReader {
  /** Reads into `into`; the number of bytes read, or null at the end of the stream. */
  read(into: Uint8Array): Promise<number | null>;
}

/** A connection's read buffer between requests (heads are small). */
export const IDLE_BUFFER = 16 * 1024;
/** The read buffer while a chunked body streams through it. */
export const BODY_BUFFER = 256 * 1024;

/** A byte source with a read buffer: `buffer[start, end)` is read and not yet consumed. */
export class WireReader {
  /** The source read from. */
  readonly source: ByteReader;
  /** The buffer; replaced when it grows or shrinks. */
  buffer: Uint8Array = new Uint8Array(IDLE_BUFFER);
  /** Where the unconsumed bytes start. */
  start = 0;
  /** Where the unconsumed bytes end. */
  end = 0;
  readonly #maxBuffer: number;

  /** Wraps a source; the buffer grows up to `maxBuffer` bytes (at least BODY_BUFFER). */
  constructor(source: ByteReader, maxBuffer: number = BODY_BUFFER) {
    this.source = source;
    this.#maxBuffer = Math.max(BODY_BUFFER, maxBuffer);
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

  /**
   * Reads more bytes into the buffer (making room first: moving the unconsumed bytes to the
   * front, or growing the buffer up to its limit); false at the end of the source.
   */
  async fill(): Promise<boolean> {
    if (this.start === this.end) {
      this.start = this.end = 0;
    } else if (this.end === this.buffer.length) {
      if (this.start > 0) {
        this.buffer.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else if (this.buffer.length < this.#maxBuffer) {
        this.resize(Math.min(this.#maxBuffer, this.buffer.length * 2));
      } else {
        throw new Error("Connection read buffer full");
      }
    }
    const n = await this.source.read(this.buffer.subarray(this.end));
    if (n === null || n === 0) return false;
    this.end += n;
    return true;
  }

  /** Copies up to `into.length` buffered bytes into `into` and consumes them; their count. */
  take(into: Uint8Array): number {
    const n = Math.min(into.length, this.buffered);
    into.set(this.buffer.subarray(this.start, this.start + n));
    this.start += n;
    return n;
  }
}
