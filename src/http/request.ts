/**
 * Request header parsing shared by the routes.
 */

import { RegistryError } from "../errors.ts";

/** The request's `Content-Length`, or null when absent; throws SIZE_INVALID when malformed. */
export function contentLength(request: Request): number | null {
  const value = request.headers.get("content-length");
  if (value === null) return null;
  if (!/^[0-9]{1,15}$/.test(value.trim())) {
    throw new RegistryError("SIZE_INVALID", `Invalid Content-Length ${JSON.stringify(value)}`);
  }
  return Number(value.trim());
}

/**
 * Reads a body whole, up to `limit` bytes; throws 413 SIZE_INVALID above it, before reading
 * more than `limit + 1` bytes. Only for small documents such as manifests.
 */
export async function readLimited(request: Request, limit: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new RegistryError("SIZE_INVALID", `Body is larger than the ${limit} bytes allowed`, {
      status: 413,
      detail: { limit },
    });
  const declared = contentLength(request);
  if (declared !== null && declared > limit) throw tooLarge();
  if (request.body === null) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of request.body) {
    total += chunk.length;
    if (total > limit) throw tooLarge();
    parts.push(chunk);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
