/**
 * The types every SHA-256 backend shares: the hasher interface and the canonical midstate.
 * Kept apart so that the backends and `sha256.ts` import them without a circle.
 */

/** Canonical, implementation-independent SHA-256 midstate. */
export interface Sha256State {
  /** The eight 32-bit chaining words H0..H7. */
  readonly words: readonly number[];
  /** Total number of bytes hashed so far. */
  readonly length: number;
  /** Bytes of the pending partial block (length % 64 bytes). */
  readonly pending: Uint8Array;
}

/** An incremental SHA-256 hasher. */
export interface Sha256 {
  /** Feeds bytes. */
  update(data: Uint8Array): void;
  /**
   * Feeds bytes off the JS thread where the backend can (native: a pool thread). `data` must
   * not change until the promise settles, and calls must not overlap; throws like `update`.
   */
  updateAsync(data: Uint8Array): Promise<void>;
  /** Bytes hashed so far. */
  readonly length: number;
  /** Canonical state; does not finalize; the hasher can keep going. */
  exportState(): Sha256State;
  /** Finalizes and returns the 64-char lowercase hex digest. The hasher must not be used afterwards. */
  digestHex(): string;
  /** Name of the backend: "native" or "portable". */
  readonly backend: "native" | "portable";
}
