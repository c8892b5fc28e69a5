/**
 * A cache of small immutable byte strings (manifests by digest) copied into a few slabs.
 *
 * A `Map` of `Uint8Array`s costs, per entry, an ArrayBuffer, its view and a separate
 * allocation of the bytes: about 200 bytes of JavaScript heap and one `malloc` beside bytes
 * that are often only a few hundred long. Here every entry is its bytes, after a 4-byte
 * length, in one of `SEGMENTS` slabs of `capacity / SEGMENTS` bytes, and the map holds only
 * the entry's position (a small integer). The slabs are filled in turn; when the last one is
 * full, the oldest is forgotten with its entries (first in, first out) and a new slab takes
 * its place. A slab is never written again once full, so the views handed out keep their
 * bytes: a forgotten slab stays in memory until the last view into it is dropped (a response
 * still being written to a slow client holds one).
 */

/** Bytes of the length written before each entry. */
const LENGTH_BYTES = 4;

/** How many slabs share the capacity. */
const SEGMENTS = 4;

/** A cache of `capacity` bytes in all, of byte strings up to `largest` (about `capacity / 16`). */
export class SlabCache<K> {
  readonly #slabBytes: number;
  readonly #slabs: (Uint8Array<ArrayBuffer> | null)[] = new Array(SEGMENTS).fill(null);
  /** Key → position: slab index × slab bytes + the entry's offset in its slab. */
  readonly #positions = new Map<K, number>();
  /** The slab being filled, and how much of it is. */
  #current = 0;
  #used = 0;

  /** A cache of at most `capacity` bytes (lengths included), 64 bytes to 1 GiB. */
  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 64 || capacity > 2 ** 30) {
      throw new RangeError(`A slab cache of ${capacity} bytes`);
    }
    this.#slabBytes = Math.floor(capacity / SEGMENTS);
  }

  /** The longest byte string kept (longer ones are not cached). */
  get largest(): number {
    return Math.floor(this.#slabBytes / 4) - LENGTH_BYTES;
  }

  /** Entries held. */
  get size(): number {
    return this.#positions.size;
  }

  /** The bytes stored under `key`, a view into a slab (not to be written to), if any. */
  get(key: K): Uint8Array<ArrayBuffer> | undefined {
    const position = this.#positions.get(key);
    if (position === undefined) return undefined;
    const slab = this.#slabs[Math.floor(position / this.#slabBytes)]!;
    const offset = position % this.#slabBytes;
    const length = slab[offset]! | slab[offset + 1]! << 8 | slab[offset + 2]! << 16 |
      slab[offset + 3]! << 24;
    return slab.subarray(offset + LENGTH_BYTES, offset + LENGTH_BYTES + length);
  }

  /** Copies `bytes` in under `key` unless the key is there already or the bytes are too long. */
  set(key: K, bytes: Uint8Array): void {
    if (this.#positions.has(key) || bytes.length > this.largest) return;
    const need = LENGTH_BYTES + bytes.length;
    if (this.#slabs[this.#current] === null) {
      this.#slabs[this.#current] = new Uint8Array(this.#slabBytes);
    } else if (this.#used + need > this.#slabBytes) this.#next();
    const slab = this.#slabs[this.#current]!;
    const offset = this.#used;
    const length = bytes.length;
    slab[offset] = length & 0xff;
    slab[offset + 1] = (length >>> 8) & 0xff;
    slab[offset + 2] = (length >>> 16) & 0xff;
    slab[offset + 3] = length >>> 24;
    slab.set(bytes, offset + LENGTH_BYTES);
    this.#positions.set(key, this.#current * this.#slabBytes + offset);
    this.#used = offset + need;
  }

  /** Moves on to the next slab: a new one, in place of the oldest, whose entries go. */
  #next(): void {
    this.#current = (this.#current + 1) % SEGMENTS;
    this.#used = 0;
    if (this.#slabs[this.#current] !== null) {
      const first = this.#current * this.#slabBytes;
      const end = first + this.#slabBytes;
      for (const [key, position] of this.#positions) {
        if (position >= first && position < end) this.#positions.delete(key);
      }
    }
    this.#slabs[this.#current] = new Uint8Array(this.#slabBytes);
  }
}
