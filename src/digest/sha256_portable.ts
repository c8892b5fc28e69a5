/**
 * Pure TypeScript SHA-256 (FIPS 180-4), used when libcrypto is unavailable.
 *
 * Whole 64-byte blocks are compressed straight from the caller's array; only
 * a partial block is buffered. No allocation happens per update.
 *
 * @module
 */

import type { Sha256, Sha256State } from "./sha256_types.ts";

// deno-fmt-ignore
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
  0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** The SHA-256 initial hash value H(0). */
// deno-fmt-ignore
export const SHA256_IV: readonly number[] = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c,
  0x1f83d9ab, 0x5be0cd19,
];

/** Message schedule scratch; shared, since compression is synchronous. */
const W = new Int32Array(64);

/**
 * Compresses the whole blocks in `d[off, end)` into `h`; `end - off` must be a
 * multiple of 64. (The `!` marks are for noUncheckedIndexedAccess: every index
 * here is in range by construction.)
 */
function compress(h: Int32Array, d: Uint8Array, off: number, end: number) {
  const w = W;
  let h0 = h[0]!, h1 = h[1]!, h2 = h[2]!, h3 = h[3]!;
  let h4 = h[4]!, h5 = h[5]!, h6 = h[6]!, h7 = h[7]!;
  while (off < end) {
    for (let i = 0; i < 16; i++, off += 4) {
      w[i] = (d[off]! << 24) | (d[off + 1]! << 16) | (d[off + 2]! << 8) |
        d[off + 3]!;
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15]!, y = w[i - 2]!;
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^
        (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^
        (y >>> 10);
      w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
    }
    let a = h0, b = h1, c = h2, dd = h3, e = h4, f = h5, g = h6, hh = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^
        ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^
        ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (dd + t1) | 0;
      dd = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + dd) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + hh) | 0;
  }
  h[0] = h0, h[1] = h1, h[2] = h2, h[3] = h3;
  h[4] = h4, h[5] = h5, h[6] = h6, h[7] = h7;
}

// Run every statement of compress() once at load: otherwise V8 may compile it
// via on-stack replacement before the stores after its loop have type
// feedback, then deoptimize on every return (halving throughput).
compress(new Int32Array(8), new Uint8Array(64), 0, 64);

/** Pure TypeScript SHA-256 hasher; takes an already validated state. */
export class PortableSha256 implements Sha256 {
  readonly backend = "portable" as const;
  #h = new Int32Array(8);
  #buf = new Uint8Array(64);
  #length = 0;
  #done = false;

  /** Starts a new hash, or resumes from a validated `state`; never throws. */
  constructor(state?: Sha256State) {
    if (state === undefined) {
      this.#h.set(SHA256_IV);
    } else {
      this.#h.set(state.words);
      this.#length = state.length;
      this.#buf.set(state.pending);
    }
  }

  /** Bytes hashed so far. */
  get length(): number {
    return this.#length;
  }

  /** Feeds bytes on the JS thread (this backend has no other); throws like `update`. */
  updateAsync(data: Uint8Array): Promise<void> {
    try {
      this.update(data);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Feeds bytes; throws an Error after finalization. */
  update(data: Uint8Array): void {
    if (this.#done) throw new Error("SHA-256 hasher already finalized");
    const n = data.length;
    if (n === 0) return;
    let used = this.#length % 64;
    this.#length += n;
    let off = 0;
    if (used > 0) {
      const take = Math.min(64 - used, n);
      this.#buf.set(data.subarray(0, take), used);
      used += take;
      off = take;
      if (used < 64) return;
      compress(this.#h, this.#buf, 0, 64);
    }
    const end = off + ((n - off) & ~63);
    if (end > off) compress(this.#h, data, off, end);
    if (end < n) this.#buf.set(data.subarray(end), 0);
  }

  /** Returns the canonical midstate without finalizing; throws after finalization. */
  exportState(): Sha256State {
    if (this.#done) throw new Error("SHA-256 hasher already finalized");
    return {
      words: Array.from(this.#h, (w) => w >>> 0),
      length: this.#length,
      pending: this.#buf.slice(0, this.#length % 64),
    };
  }

  /** Finalizes and returns the lowercase hex digest; throws if called twice. */
  digestHex(): string {
    if (this.#done) throw new Error("SHA-256 hasher already finalized");
    this.#done = true;
    const buf = this.#buf;
    let used = this.#length % 64;
    buf[used++] = 0x80;
    if (used > 56) {
      buf.fill(0, used);
      compress(this.#h, buf, 0, 64);
      used = 0;
    }
    buf.fill(0, used, 56);
    // Bit length as a 64-bit big-endian integer, without leaving safe range.
    const hi = Math.floor(this.#length / 0x20000000);
    const lo = (this.#length % 0x20000000) * 8;
    const view = new DataView(buf.buffer, buf.byteOffset, 64);
    view.setUint32(56, hi);
    view.setUint32(60, lo);
    compress(this.#h, buf, 0, 64);
    let s = "";
    for (let i = 0; i < 8; i++) {
      s += (this.#h[i]! >>> 0).toString(16).padStart(8, "0");
    }
    return s;
  }
}

const HEX: string[] = Array.from(
  { length: 256 },
  (_, i) => i.toString(16).padStart(2, "0"),
);

/** Returns the lowercase hex of `bytes`; never throws. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]!];
  return s;
}
