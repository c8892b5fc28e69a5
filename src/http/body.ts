/**
 * Request bodies as `ByteSource`s, abortable so the body guard can end a stalled or
 * interrupted body with a clear error: the built-in server's bodies (their transport errors
 * become OCI errors in the error step), and `Deno.serve`'s body streams read with a BYOB
 * reader straight into the caller's buffers (no allocation or copy per chunk).
 */

import { RegistryError } from "../errors.ts";
import type { RequestBody } from "../server/mod.ts";
import type { ByteSource } from "../storage/byte_source.ts";

/**
 * The size of the views handed to BYOB reads, at least and at most. Deno 2.9 leaves a BYOB
 * read with a tiny view (a few bytes) pending forever when the body ends, so smaller requests
 * go through a scratch buffer of this size; and it slows down sharply on chunked bodies as
 * views grow past this size (measured on 256 MiB: 773 MiB/s with 64 KiB views, 50 MiB/s with
 * 256 KiB, 16 MiB/s with 1 MiB), so larger requests are cut to it.
 */
const BYOB_VIEW = 64 * 1024;

/**
 * A request body as the app reads it: a `ByteSource` the body guard can watch and end.
 * Defined by the transport (src/server/types.ts).
 */
export type { RequestBody } from "../server/mod.ts";

/**
 * The OCI error for a body that could not be read to its end. The built-in server's bodies
 * fail with its `HttpError` (malformed framing, a body cut short), which the error step turns
 * into this (the server answers such a request itself, whatever the app replies).
 */
export function unreadable(detail: string, cause?: unknown): RegistryError {
  return new RegistryError(
    "BLOB_UPLOAD_INVALID",
    `Request body could not be read to its end: ${detail}`,
    { status: 400, headers: { Connection: "close" }, cause },
  );
}

/** A request body stream (`Deno.serve`'s) read into caller-provided buffers. */
export class BodyReader implements RequestBody {
  readonly #byob: ReadableStreamBYOBReader | null;
  readonly #plain: ReadableStreamDefaultReader<Uint8Array> | null;
  #leftover: Uint8Array | null = null;
  #scratch: Uint8Array<ArrayBuffer> | null = null;
  #failure: Error | null = null;
  #waitingSince: number | null = null;
  #received = 0;
  #waited = 0;

  /** Wraps a body stream; uses a BYOB reader when the stream is a byte stream. */
  constructor(body: ReadableStream<Uint8Array>) {
    let byob: ReadableStreamBYOBReader | null = null;
    try {
      byob = body.getReader({ mode: "byob" });
    } catch {
      byob = null; // not a byte stream (a body made in JavaScript): copy from its chunks
    }
    this.#byob = byob;
    this.#plain = byob ? null : body.getReader();
  }

  /** Since when (epoch ms) a read has been waiting for data, or null when none is. */
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

  /** @inheritdoc */
  async read(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#failure) throw this.#failure;
    if (into.length === 0) throw new RangeError("BodyReader.read needs a non-empty buffer");
    this.#waitingSince = Date.now();
    try {
      const view = this.#leftover
        ? this.#fromLeftover(into)
        : this.#byob && into.length >= BYOB_VIEW
        ? await this.#readByob(into.length > BYOB_VIEW ? into.subarray(0, BYOB_VIEW) : into)
        : this.#byob
        ? await this.#readSmall(into)
        : await this.#readPlain(into);
      if (this.#failure) throw this.#failure;
      this.#received += view.length;
      return view;
    } catch (error) {
      if (this.#failure) throw this.#failure;
      if (error instanceof RegistryError) throw error;
      throw unreadable("the client closed the connection or sent a malformed body", error);
    } finally {
      this.#waited += Date.now() - this.#waitingSince!;
      this.#waitingSince = null;
    }
  }

  /** Ends the body: the pending and every later read throw `error`. */
  abort(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    (this.#byob ?? this.#plain)?.cancel(error).catch(() => {});
  }

  /** Releases the body when the handler is done with it (unread data is discarded). */
  close(): void {
    (this.#byob ?? this.#plain)?.cancel().catch(() => {});
  }

  async #readByob(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    // The buffer is transferred even by the read that reports the end: hand it back.
    const { value } = await this.#byob!.read(into);
    if (value === undefined) throw new TypeError("Request body was cancelled");
    return value as Uint8Array<ArrayBuffer>;
  }

  /** A small request on a byte stream: read a full scratch view, hand over what fits. */
  async #readSmall(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    const view = await this.#readByob(this.#scratch ?? new Uint8Array(BYOB_VIEW));
    this.#scratch = new Uint8Array(view.buffer);
    if (view.length === 0) return into.subarray(0, 0);
    // The scratch buffer is reused by the next small read: keep a copy of the rest.
    this.#leftover = view.slice();
    return this.#fromLeftover(into);
  }

  async #readPlain(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
    while (true) {
      const { value, done } = await this.#plain!.read();
      if (done) return into.subarray(0, 0);
      if (value.length > 0) {
        this.#leftover = value;
        return this.#fromLeftover(into);
      }
    }
  }

  /** Copies what fits of the pending bytes into `into`. */
  #fromLeftover(into: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
    const chunk = this.#leftover!;
    const n = Math.min(chunk.length, into.length);
    into.set(chunk.subarray(0, n));
    this.#leftover = n < chunk.length ? chunk.subarray(n) : null;
    return into.subarray(0, n);
  }
}

/** Reads a whole source into one array, up to `limit` bytes; `tooLarge` above it. */
export async function readAll(
  source: ByteSource,
  limit: number,
  tooLarge: () => Error,
): Promise<Uint8Array<ArrayBuffer>> {
  let buffer = new Uint8Array(Math.min(limit + 1, 64 * 1024));
  let filled = 0;
  while (true) {
    if (filled === buffer.length) {
      if (filled > limit) throw tooLarge();
      const bigger = new Uint8Array(Math.min(limit + 1, buffer.length * 2));
      bigger.set(buffer);
      buffer = bigger;
    }
    const view = await source.read(buffer.subarray(filled));
    buffer = new Uint8Array(view.buffer);
    if (view.length === 0) break;
    filled += view.length;
  }
  if (filled > limit) throw tooLarge();
  return buffer.slice(0, filled);
}
