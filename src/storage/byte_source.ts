/**
 * A source of bytes read into buffers the caller owns (like a BYOB stream reader), so that
 * streaming a body to disk allocates nothing per chunk.
 */
export interface ByteSource {
  /**
   * Reads into `into` (which must not be empty) and returns the view of what was read: at
   * least one byte, or none at the end of the source. `into`'s buffer may be transferred,
   * also at the end: always continue with the returned view's `buffer` (same size); the bytes
   * are at the returned view's offset. Throws what the source failed with.
   */
  read(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>>;
}
