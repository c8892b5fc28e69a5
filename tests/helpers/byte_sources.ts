/** Byte sources over bytes in memory, for the store and service tests. */

import type { ByteSource } from "../../src/storage/byte_source.ts";

/** A byte source over `bytes`, handing out at most `chunk` bytes per read. */
export function sourceOf(bytes: Uint8Array, chunk = 64 * 1024): ByteSource {
  let at = 0;
  return {
    read(into) {
      const n = Math.min(into.length, chunk, bytes.length - at);
      into.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(into.subarray(0, n));
    },
  };
}
