/**
 * Request limits enforced before a route runs: a cap on the size of the request headers, and
 * a guard on request bodies that ends a body read when the client sends nothing for a while
 * (or when the registry shuts down), so a stalled client cannot hold an upload lock forever.
 *
 * Deno's HTTP server itself refuses request heads above about 64 KiB, or with more than 100
 * fields, with a bare `400`; the cap here is lower and answers with an OCI error body.
 */

import { RegistryError } from "../errors.ts";

/** The size of the request headers as sent: each `name: value\r\n`. */
export function headerBytes(request: Request): number {
  let total = 0;
  for (const [name, value] of request.headers) total += name.length + value.length + 4;
  return total;
}

/** Throws 431 SIZE_INVALID when the request headers are larger than `limit` bytes. */
export function checkHeaderSize(request: Request, limit: number): void {
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
 * Wraps request bodies so that a body read fails with 408 after `idleMs` without data, and so
 * that every body still being read can be ended at once (503) when the registry stops. The
 * failed read makes the upload code cut the chunk back to the last acknowledged offset and
 * release the session.
 */
export class BodyGuard {
  readonly #idleMs: number;
  readonly #active = new Set<(error: RegistryError) => void>();

  /** Makes a guard with an idle timeout in milliseconds. */
  constructor(idleMs: number) {
    this.#idleMs = idleMs;
  }

  /** How many request bodies are being read now. */
  get active(): number {
    return this.#active.size;
  }

  /**
   * Returns the request with its body guarded (the request itself when it has no body), and
   * `release`, to call once the handler is done with the request. The new request's URL is
   * parsed again (so `..` and `%2e%2e` are normalized): route on the original one.
   */
  wrap(request: Request): { request: Request; release: () => void } {
    if (request.body === null || request.method === "GET" || request.method === "HEAD") {
      return { request, release: () => {} };
    }
    const source = request.body.getReader();
    const idleMs = this.#idleMs;
    const active = this.#active;
    // One repeating check per body instead of a timer per chunk: a chunk only stores a time.
    let waitingSince: number | null = null;
    let ended = false;
    let stop: (error: RegistryError) => void = () => {};
    const watchdog = setInterval(() => {
      if (waitingSince !== null && Date.now() - waitingSince >= idleMs) stop(stalled(idleMs));
    }, Math.max(5, Math.min(1000, idleMs / 4)));
    const finish = () => {
      ended = true;
      clearInterval(watchdog);
      active.delete(stop);
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stop = (error) => {
          if (ended) return;
          finish();
          controller.error(error);
          source.cancel(error).catch(() => {});
        };
        active.add(stop);
      },
      async pull(controller) {
        waitingSince = Date.now();
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await source.read();
        } catch (error) {
          if (!ended) {
            finish();
            controller.error(broken(error));
          }
          return;
        } finally {
          waitingSince = null;
        }
        if (ended) return;
        if (next.done) {
          finish();
          controller.close();
        } else {
          controller.enqueue(next.value);
        }
      },
      cancel(reason) {
        finish();
        return source.cancel(reason);
      },
    }, { highWaterMark: 0 });
    const guarded = new Request(request.url, {
      method: request.method,
      headers: request.headers,
      body,
      duplex: "half",
    } as RequestInit);
    const release = () => {
      clearInterval(watchdog);
      active.delete(stop);
    };
    return { request: guarded, release };
  }

  /** Ends every body still being read with `error` (the registry is stopping). */
  abortAll(error: RegistryError): void {
    for (const stop of [...this.#active]) stop(error);
  }
}

/** A body read failed: the client closed the connection or sent a malformed body. */
function broken(error: unknown): RegistryError {
  return new RegistryError(
    "BLOB_UPLOAD_INVALID",
    "Request body could not be read to its end: the client closed the connection or sent a " +
      "malformed body",
    { status: 400, headers: { Connection: "close" }, cause: error },
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
