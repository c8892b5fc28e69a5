/**
 * Request limits enforced before a route runs: a cap on the size of the request headers, and
 * a guard on request bodies that ends a body read when the client sends nothing for a while or
 * sends too slowly (or when the registry shuts down), so a stalled client cannot hold an upload
 * lock, or a place under the connection limit, forever.
 *
 * The HTTP server itself refuses heads above its own cap or with more than 100 fields (the
 * built-in one with a plain-text 431, Deno.serve with a bare 400); the cap here is lower and
 * answers 431 with an OCI error, SIZE_INVALID (the spec's code for a size out of bounds).
 */

import { RegistryError } from "../errors.ts";
import type { RequestBody } from "./body.ts";
import type { IncomingRequest } from "./request.ts";

/** The size of the request headers as sent: each `name: value\r\n`. */
export function headerBytes(request: IncomingRequest): number {
  let total = 0;
  for (const [name, value] of request.headers) total += name.length + value.length + 4;
  return total;
}

/** Throws 431 SIZE_INVALID when the request headers are larger than `limit` bytes. */
export function checkHeaderSize(request: IncomingRequest, limit: number): void {
  const size = headerBytes(request);
  if (size > limit) {
    throw new RegistryError(
      "SIZE_INVALID",
      `Request headers are ${size} bytes, more than the ${limit} allowed`,
      { status: 431, detail: { limit } },
    );
  }
}

/**
 * The slowest a request body may come, in bytes per second of the time reads waited for it
 * (time the handler spends elsewhere, e.g. waiting for an upload's lock, does not count), once
 * reads have waited `MIN_RATE_GRACE_MS` (or the idle timeout, if shorter). As ASP.NET Core's
 * Kestrel: 240 bytes/s; a body dripping a byte short of every idle timeout is far below it.
 */
export const MIN_BODY_RATE = 240;
/** Waiting for a body's data that is allowed before its rate counts. */
export const MIN_RATE_GRACE_MS = 10_000;

/**
 * Opens request bodies as `BodyReader`s and watches them: a read that waits for data longer
 * than `idleMs` fails with 408, so does a body slower than `MIN_BODY_RATE`, and every body
 * still being read can be ended at once (503) when the registry stops. The failed read makes
 * the upload code cut the chunk back to the last acknowledged offset and release the session.
 * One timer serves every body.
 */
export class BodyGuard {
  readonly #idleMs: number;
  readonly #active = new Set<RequestBody>();
  #timer: ReturnType<typeof setInterval> | null = null;

  /** Makes a guard with an idle timeout in milliseconds. */
  constructor(idleMs: number) {
    this.#idleMs = idleMs;
  }

  /** Watches a request body (none for GET and HEAD: it is ignored); returns what to read. */
  open(reader: RequestBody | null, method: string): RequestBody | null {
    if (reader === null) return null;
    if (method === "GET" || method === "HEAD") {
      reader.close();
      return null;
    }
    this.#active.add(reader);
    if (this.#timer === null) {
      const every = Math.max(5, Math.min(1000, this.#idleMs / 4));
      this.#timer = setInterval(() => this.#check(), every);
      Deno.unrefTimer(this.#timer);
    }
    return reader;
  }

  /** Stops watching a reader once its handler is done, and discards what it did not read. */
  release(reader: RequestBody | null): void {
    if (reader === null) return;
    this.#active.delete(reader);
    reader.close();
    if (this.#active.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  /** Ends every body still being read with `error` (the registry is stopping). */
  abortAll(error: RegistryError): void {
    for (const reader of this.#active) reader.abort(error);
  }

  #check(): void {
    const now = Date.now();
    const grace = Math.min(MIN_RATE_GRACE_MS, this.#idleMs);
    for (const reader of this.#active) {
      const since = reader.waitingSince;
      if (since !== null && now - since >= this.#idleMs) {
        reader.abort(stalled(this.#idleMs));
        continue;
      }
      const waited = reader.waitedMs;
      if (waited >= grace && reader.received * 1000 < MIN_BODY_RATE * waited) {
        reader.abort(tooSlow(reader.received, waited));
      }
    }
  }
}

function tooSlow(received: number, waitedMs: number): RegistryError {
  return new RegistryError(
    "BLOB_UPLOAD_INVALID",
    `Request body too slow: ${received} bytes in ${Math.round(waitedMs / 1000)} s of waiting, ` +
      `less than ${MIN_BODY_RATE} bytes/s; an upload stays at its last acknowledged offset`,
    { status: 408, headers: { Connection: "close" } },
  );
}

function stalled(idleMs: number): RegistryError {
  return new RegistryError(
    "BLOB_UPLOAD_INVALID",
    `Request body stalled: no data for ${idleMs / 1000} s; an upload stays at its last ` +
      `acknowledged offset`,
    { status: 408, headers: { Connection: "close" } },
  );
}
