/**
 * The HTTP/1.1 transport: `serveHttp1` serves a `Handler` on a TCP listener. It knows nothing
 * of what it serves; refused requests and unreadable bodies get its own plain-text answers
 * (`HttpError`).
 */

export { HttpError } from "./errors.ts";
export { type Http1Server, serveHttp1, type ServerOptions, type TlsPair } from "./server.ts";
export type {
  Handler,
  HeaderFields,
  IncomingRequest,
  Reply,
  ReplyBody,
  RequestBody,
} from "./types.ts";
