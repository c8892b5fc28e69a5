/**
 * Request header parsing shared by the routes.
 */

import { RegistryError } from "../errors.ts";
import type { ByteSource } from "../storage/byte_source.ts";
import type { IncomingRequest } from "../server/mod.ts";
import { readAll } from "./body.ts";

/** A decimal length or count as HTTP carries it (15 digits stay exact in a double). */
export const DECIMAL = /^[0-9]{1,15}$/;

/**
 * A request as the routes see it: what a `Request` offers, without its body (which reaches
 * them as a `ByteSource`). Both `Deno.serve`'s requests and the built-in server's are one.
 * Defined by the transport (src/server/types.ts).
 */
export type { HeaderFields, IncomingRequest } from "../server/mod.ts";

/**
 * The host the request was sent to: the authority of its URL, where the transport put the
 * target's own when the target is in absolute form (which wins over `Host`, RFC 9112 §3.2.2),
 * else the `Host` field's; the `Host` field itself when the URL does not parse, else "".
 */
export function requestHost(request: IncomingRequest): string {
  try {
    return new URL(request.url).host;
  } catch {
    return request.headers.get("host") ?? "";
  }
}

/** The request's `Content-Length`, or null when absent; throws SIZE_INVALID when malformed. */
export function contentLength(request: IncomingRequest): number | null {
  const value = request.headers.get("content-length");
  if (value === null) return null;
  if (!DECIMAL.test(value.trim())) {
    throw new RegistryError("SIZE_INVALID", `Invalid Content-Length ${JSON.stringify(value)}`);
  }
  return Number(value.trim());
}

/**
 * Reads a body whole, up to `limit` bytes; throws 413 SIZE_INVALID above it, before reading
 * more than `limit + 1` bytes. Only for small documents such as manifests.
 */
export async function readLimited(
  request: IncomingRequest,
  body: ByteSource | null,
  limit: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const tooLarge = () =>
    new RegistryError("SIZE_INVALID", `Body is larger than the ${limit} bytes allowed`, {
      status: 413,
      detail: { limit },
    });
  const declared = contentLength(request);
  if (declared !== null && declared > limit) throw tooLarge();
  if (body === null) return new Uint8Array(0);
  return await readAll(body, limit, tooLarge);
}
