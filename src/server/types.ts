/**
 * What the server hands to its handler and what it takes back: the request head, the request
 * body as a reader into caller-owned buffers, and the reply as plain data (status, header
 * list, body as bytes or a stream of any byte source).
 */

/** Request header fields (a `Headers` is one). */
export interface HeaderFields extends Iterable<[string, string]> {
  /** The value of a field by case-insensitive name (repeated fields joined by ", "), or null. */
  get(name: string): string | null;
}

/** A request head as the handler sees it (its body comes apart, as a `RequestBody`). */
export interface IncomingRequest {
  /** The method, as sent (case-sensitive). */
  readonly method: string;
  /** `http://<host><target>` (`https://` on a TLS listener), the target as sent (not normalized). */
  readonly url: string;
  /** The header fields. */
  readonly headers: HeaderFields;
  /** The peer's IP address, when the transport knows it. */
  readonly remoteAddress?: string;
}

/**
 * A reply body: bytes, a stream of bytes from any source, or none. A stream is read once and
 * released (read to its end, or cancelled); it is never read for HEAD, 204 or 304.
 */
export type ReplyBody = Uint8Array | ReadableStream<Uint8Array> | null;

/**
 * A handler's answer. The server writes the framing fields itself (`Content-Length`,
 * `Transfer-Encoding`, `Connection`, `Date`): for bytes it sends their length; for a stream
 * it uses the reply's `Content-Length` when there is one (and sends exactly that many bytes,
 * or closes the connection), else chunked encoding (HTTP/1.1) or a close-delimited body
 * (HTTP/1.0). `Connection: close` in the headers closes the connection after the reply.
 */
export interface Reply {
  /** The status code. */
  readonly status: number;
  /** Header fields in order, names as written. */
  readonly headers: readonly (readonly [string, string])[];
  /** The body. */
  readonly body: ReplyBody;
}

/**
 * A request body, read into buffers the caller owns: `Content-Length` bytes or a chunked
 * body, de-framed. Reads fail with an `HttpError` when the body is malformed or the client
 * goes away before its end (the server then answers that error itself).
 */
export interface RequestBody {
  /**
   * Reads into `into` (not empty) and returns the view of what was read: at least one byte,
   * or none at the end of the body. Continue with the returned view's `buffer`.
   */
  read(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>>;
  /** Since when (epoch ms) a read has been waiting for data, or null when none is. */
  readonly waitingSince: number | null;
  /** The bytes reads have returned so far. */
  readonly received: number;
  /** How long (ms) reads have waited for data in all, the pending one included. */
  readonly waitedMs: number;
  /** Ends the body: the pending and every later read throw `error`. */
  abort(error: Error): void;
  /** The handler is done with the body; what it did not read is drained or dropped. */
  close(): void;
}

/** Answers one request; `body` is null when the request has none. */
export type Handler = (request: IncomingRequest, body: RequestBody | null) => Promise<Reply>;
