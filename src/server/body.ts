/**
 * Request bodies on a connection: `Content-Length` bytes, or chunked. Reads go straight into
 * the caller's buffer when nothing is buffered (length bodies), else copy from the connection
 * buffer; one read returns as much as is at hand, across chunk boundaries.
 */

import { ChunkedDecoder, cutShort } from "./chunked.ts";
import { HttpError } from "./errors.ts";
import type { WireReader } from "./reader.ts";
import { Tripwire } from "./tripwire.ts";
import type { RequestBody } from "./types.ts";

/**
 * A request body read off a connection. Implements the handler's `RequestBody`, plus what the
 * connection needs to know once the handler is done: whether the body was read whole, can be
 * drained, or failed by the client's fault (`fault`, answered by the server itself).
 */
export class WireBody implements RequestBody {
  readonly #reader: WireReader;
  readonly #chunked: ChunkedDecoder | null;
  /** Length bodies: bytes still to come. */
  #left: number;
  #continue: (() => Promise<void>) | null;
  #failure: Error | null = null;
  #fault: HttpError | null = null;
  /** Trips when the body is aborted: the pending read fails at once. */
  readonly #aborted = new Tripwire();
  #waitingSince: number | null = null;
  #reading = false;
  #received = 0;
  /** Time reads spent waiting before the pending one (ms). */
  #waited = 0;

  /**
   * A body of `length` bytes, or chunked when `length` is null, read from `reader`.
   * `sendContinue` (for `Expect: 100-continue`) runs before the first read.
   */
  constructor(
    reader: WireReader,
    length: number | null,
    sendContinue: (() => Promise<void>) | null = null,
  ) {
    this.#reader = reader;
    this.#chunked = length === null ? new ChunkedDecoder(reader) : null;
    this.#left = length ?? 0;
    this.#continue = sendContinue;
    if (this.#chunked) reader.widen();
  }

  /** @inheritdoc */
  get waitingSince(): number | null {
    return this.#waitingSince;
  }

  /** @inheritdoc */
  get received(): number {
    return this.#received;
  }

  /** @inheritdoc */
  get waitedMs(): number {
    const pending = this.#waitingSince === null ? 0 : Date.now() - this.#waitingSince;
    return this.#waited + pending;
  }

  /** The whole body has been read. */
  get done(): boolean {
    return this.#chunked ? this.#chunked.done : this.#left === 0;
  }

  /** The connection can no longer be read in step: a read failed, was aborted, or is pending. */
  get broken(): boolean {
    return this.#failure !== null || this.#reading;
  }

  /** The client was never told to send the body (`Expect: 100-continue` without a read). */
  get unrequested(): boolean {
    return this.#continue !== null;
  }

  /**
   * Why the body failed when the client is to blame (malformed framing, a body cut short,
   * the connection failing): the server answers it instead of the handler's reply. Null
   * when the body did not fail, or was ended by `abort`.
   */
  get fault(): HttpError | null {
    return this.#fault;
  }

  /** @inheritdoc */
  async read(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#failure) throw this.#failure;
    if (into.length === 0) throw new RangeError("WireBody.read needs a non-empty buffer");
    if (this.#reading) throw new Error("WireBody.read while another read is pending");
    this.#reading = true;
    this.#waitingSince = Date.now();
    try {
      const n = await this.#aborted.race(this.#read(into));
      this.#received += n;
      return into.subarray(0, n);
    } catch (error) {
      if (this.#failure) throw this.#failure;
      const fault = error instanceof HttpError ? error : new HttpError(
        400,
        "Request body could not be read to its end: the connection failed",
        { cause: error },
      );
      this.#fault = fault;
      this.abort(fault);
      throw fault;
    } finally {
      this.#reading = false;
      this.#waited += Date.now() - this.#waitingSince!;
      this.#waitingSince = null;
    }
  }

  /**
   * Ends the body: the pending and every later read throw `error`. A source read already
   * under way is abandoned, not stopped: it may still fill the caller's buffer, and the
   * connection is closed after the reply (`broken`).
   */
  abort(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#aborted.trip(error);
  }

  /** @inheritdoc */
  close(): void {}

  async #read(into: Uint8Array): Promise<number> {
    if (this.#continue) {
      const send = this.#continue;
      this.#continue = null;
      await send();
    }
    return this.#chunked ? await this.#chunked.read(into) : await this.#readLength(into);
  }

  async #readLength(into: Uint8Array): Promise<number> {
    if (this.#left === 0) return 0;
    const reader = this.#reader;
    const want = Math.min(into.length, this.#left);
    let n: number;
    if (reader.buffered > 0) {
      n = reader.take(into.subarray(0, want));
    } else {
      const got = await reader.source.read(into.subarray(0, want));
      if (got === null || got === 0) throw cutShort();
      n = got;
    }
    this.#left -= n;
    return n;
  }
}
