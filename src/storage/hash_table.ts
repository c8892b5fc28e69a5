/**
 * `HashTable`: a map from 52-bit hashes (non-negative safe integers below 2^52) to numbers, in
 * two typed arrays (open addressing, linear probing, at most 70% full, grown by half). A value
 * that is an integer from 0 to 2^32 - 2 is held in the table's own 4 bytes (-0 reads back as
 * 0); any other number lives in a side `Map` (meant for the rare one). Past its first 1,024
 * slots an entry costs 17 to 26 bytes, outside the JavaScript heap: the collector never walks
 * it, and no number is boxed to be a key or a value, as a `Map<number, number>` does with
 * numbers past 2^31 (about 50 bytes an entry, in the heap).
 */

const FIRST_CAPACITY = 1024;
/** The most entries per slot before the table grows (linear probing stays short below it). */
const MAX_LOAD = 0.7;
/** In `#values`: the value is in `#wide`. */
const WIDE = 0xffff_ffff;

/** A map of 52-bit hashes to numbers. */
export class HashTable {
  /** Key + 1 in each slot (0: empty; a key of 0 stays distinct). */
  #keys = new Float64Array(FIRST_CAPACITY);
  #values = new Uint32Array(FIRST_CAPACITY);
  /** Values that are not integers from 0 to 2^32 - 2, by key. */
  #wide = new Map<number, number>();
  #size = 0;

  /** The number of entries. */
  get size(): number {
    return this.#size;
  }

  /** The value of `key`, or undefined. */
  get(key: number): number | undefined {
    const slot = this.#find(key);
    if (this.#keys[slot] === 0) return undefined;
    const value = this.#values[slot];
    return value === WIDE ? this.#wide.get(key) : value;
  }

  /** Sets the value of `key`. */
  set(key: number, value: number): void {
    let slot = this.#find(key);
    if (this.#keys[slot] === 0) {
      if (this.#size + 1 > this.#keys.length * MAX_LOAD) {
        this.#grow();
        slot = this.#find(key);
      }
      this.#keys[slot] = key + 1;
      this.#size++;
    }
    this.#store(slot, key, value);
  }

  /** The largest value (-Infinity when empty). */
  maxValue(): number {
    let max = -Infinity;
    forEachEntry(this.#keys, this.#values, this.#wide, (_key, value) => {
      if (value > max) max = value;
    });
    return max;
  }

  /**
   * Makes room for `entries` entries at once (at most 70% full), so a table about to be filled
   * is not grown step by step: a step holds the old arrays beside the new ones.
   */
  reserve(entries: number): void {
    const capacity = Math.ceil(entries / MAX_LOAD) + 1;
    if (capacity > this.#keys.length) this.#replace(capacity, () => true);
  }

  /** Removes every entry, keeping the room made (for a table about to be filled again). */
  empty(): void {
    this.#keys.fill(0);
    this.#values.fill(0);
    this.#wide.clear();
    this.#size = 0;
  }

  /** Removes every entry (and gives back the memory). */
  clear(): void {
    this.#replace(FIRST_CAPACITY);
  }

  /** Replaces every value by `change(value)`, in place (`change` must not change the table). */
  update(change: (value: number) => number): void {
    const keys = this.#keys;
    const values = this.#values;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] === 0) continue;
      const key = keys[i] - 1;
      this.#store(i, key, change(values[i] === WIDE ? this.#wide.get(key)! : values[i]));
    }
  }

  /** Puts `value` in the slot of `key`: in the slot's 4 bytes when it fits, else in `#wide`. */
  #store(slot: number, key: number, value: number): void {
    if (this.#values[slot] === WIDE) this.#wide.delete(key);
    if (value >= 0 && value < WIDE && Number.isInteger(value)) {
      this.#values[slot] = value;
    } else {
      this.#values[slot] = WIDE;
      this.#wide.set(key, value);
    }
  }

  /** The slot holding `key`, or the empty slot where it would go. */
  #find(key: number): number {
    const keys = this.#keys;
    const capacity = keys.length;
    const stored = key + 1;
    let slot = (key >>> 0) % capacity; // the key's low 32 bits (ToUint32)
    while (keys[slot] !== 0 && keys[slot] !== stored) {
      if (++slot === capacity) slot = 0;
    }
    return slot;
  }

  #grow(): void {
    this.#replace(Math.ceil(this.#keys.length * 1.5), () => true);
  }

  /**
   * Moves the entries that `keep` passes into empty arrays of `capacity` slots (none without
   * it), then frees the old arrays at once: left to the garbage collector, the arrays a table
   * outgrew (or one cleared) stayed in memory by tens of MiB while the heap was quiet.
   */
  #replace(capacity: number, keep?: (key: number, value: number) => boolean): void {
    const keys = this.#keys;
    const values = this.#values;
    const wide = this.#wide;
    this.#keys = new Float64Array(capacity);
    this.#values = new Uint32Array(capacity);
    this.#wide = new Map();
    this.#size = 0;
    if (keep !== undefined) {
      forEachEntry(keys, values, wide, (key, value) => {
        if (keep(key, value)) this.set(key, value);
      });
    }
    keys.buffer.transfer(0);
    values.buffer.transfer(0);
  }
}

/** Calls `visit` with every entry of a table's arrays. */
function forEachEntry(
  keys: Float64Array,
  values: Uint32Array,
  wide: Map<number, number>,
  visit: (key: number, value: number) => void,
): void {
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] === 0) continue;
    const key = keys[i] - 1;
    visit(key, values[i] === WIDE ? wide.get(key)! : values[i]);
  }
}
