/**
 * Reading a reply's body stream for the socket: one read ahead (the next chunk is asked for
 * before the current one is written, so producing and sending overlap), and, for byte streams
 * (`type: "bytes"`), reads into a few reused 1 MiB buffers through a BYOB reader instead of a
 * fresh buffer per chunk: fresh memory costs page faults and garbage collection that, on a
 * 256 MiB reply, take about twice the CPU of the whole send.
 */

import { SparePool } from "../spares.ts";

/** The size of the buffers handed to byte streams. */
export const STREAM_BUFFER = 1024 * 1024;
/**
 * Spare buffers kept for later replies (shared by every connection); the registry frees those
 * left unused for a few seconds (src/spares.ts).
 */
const spares = new SparePool(8);

function takeBuffer(): ArrayBuffer {
  return spares.take(null, STREAM_BUFFER)?.buffer ?? new ArrayBuffer(STREAM_BUFFER);
}

function giveBuffer(buffer: ArrayBuffer | undefined): void {
  if (buffer !== undefined && !buffer.detached && buffer.byteLength === STREAM_BUFFER) {
    spares.give(null, new Uint8Array(buffer));
  }
}

type Result = ReadableStreamReadResult<Uint8Array>;

/**
 * The chunks of a stream, read one ahead. A chunk returned by `next` stays valid until the
 * following call to `next` or `release` (its buffer may then take a later read).
 */
export class StreamChunks {
  readonly #byob: ReadableStreamBYOBReader | null;
  readonly #plain: ReadableStreamDefaultReader<Uint8Array> | null;
  /** The read started ahead of the consumer, or null. */
  #ahead: Promise<Result> | null = null;
  /** The chunk last returned (its buffer goes back once the consumer is done with it). */
  #current: Uint8Array | null = null;
  #spare: ArrayBuffer[] = [];
  #ended = false;

  /** Locks `stream` for reading; throws when it is locked already. */
  constructor(stream: ReadableStream<Uint8Array>) {
    let byob: ReadableStreamBYOBReader | null = null;
    try {
      byob = stream.getReader({ mode: "byob" });
    } catch {
      byob = null; // not a byte stream (or locked: getReader throws again)
    }
    this.#byob = byob;
    this.#plain = byob ? null : stream.getReader();
  }

  /**
   * The next non-empty chunk, or null at the end of the stream; starts reading the one after
   * it. Throws what the stream fails with, or a TypeError for a chunk that is not bytes.
   */
  async next(): Promise<Uint8Array | null> {
    this.#recycle();
    while (true) {
      const reading = this.#ahead ?? this.#read();
      this.#ahead = null;
      let result: Result;
      try {
        result = await reading;
      } catch (error) {
        this.#ended = true;
        throw error;
      }
      if (result.done) {
        this.#ended = true;
        if (result.value) this.#spare.push(result.value.buffer as ArrayBuffer);
        return null;
      }
      const chunk = result.value;
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError("A reply stream chunk is not a Uint8Array");
      }
      if (chunk.length === 0) {
        if (this.#byob) this.#spare.push(chunk.buffer as ArrayBuffer);
        continue;
      }
      this.#current = chunk;
      this.#ahead = this.#read();
      this.#ahead.catch(() => {}); // a failure is thrown by the next `next`
      return chunk;
    }
  }

  /**
   * Done with the stream: cancels it unless it ended (or failed), and keeps the buffers that
   * came back for later replies.
   */
  release(): void {
    this.#recycle();
    if (!this.#ended) {
      this.#ended = true;
      (this.#byob ?? this.#plain)!.cancel().catch(() => {});
    }
    for (const buffer of this.#spare.splice(0)) giveBuffer(buffer);
  }

  #recycle(): void {
    if (this.#current !== null && this.#byob) this.#spare.push(this.#current.buffer as ArrayBuffer);
    this.#current = null;
  }

  #read(): Promise<Result> {
    if (this.#plain) return this.#plain.read();
    const buffer = this.#spare.pop() ?? takeBuffer();
    return this.#byob!.read(new Uint8Array(buffer));
  }
}
