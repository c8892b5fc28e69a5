/**
 * The transport's one error type: a request the server refuses (malformed or ambiguous
 * framing, an oversized head, a head not finished in time) or a request body it cannot read
 * to its end. The server answers it itself, with its status and a plain-text message, and
 * closes the connection.
 */

/** A transport-level refusal: an HTTP status and a message for the client. */
export class HttpError extends Error {
  /** The status the server answers with (400, 408, 413, 417, 431, ...). */
  readonly status: number;

  /** Makes an error answered with `status`; `message` is sent to the client as text. */
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
  }
}
