/**
 * `HashTable`: a map from 52-bit hashes (non-negative safe integers below 2^52) to numbers, in
 * two typed arrays (open addressing, linear probing, at most half full). Past its first 1,024
 * slots an entry costs 32 to 64 bytes, outside the JavaScript heap: the collector never walks it, and no number is boxed
 * to be a key or a value, as a `Map<number, number>` does with numbers past 2^31 (about 50
 * bytes an entry, in the heap).
 */

const FIRST_CAPACITY = 1024;

/** A map of 52-bit hashes to numbers. */
export class HashTable {
  /** Key + 1 in each slot (0: empty; a key of 0 stays distinct). */
  #keys = new Float64Array(FIRST_CAPACITY);
  #values = new Float64Array(FIRST_CAPACITY);
  #size = 0;

  /** The number of entries. */
  get size(): number {
    return this.#size;
  }

  /** The value of `key`, or undefined. */
  get(key: number): number | undefined {
    const slot = this.#find(key);
    return this.#keys[slot] === 0 ? undefined : this.#values[slot];
  }

  /** Sets the value of `key`. */
  set(key: number, value: number): void {
    let slot = this.#find(key);
    if (this.#keys[slot] === 0) {
      if (2 * (this.#size + 1) > this.#keys.length) {
        this.#grow();
        slot = this.#find(key);
      }
      this.#keys[slot] = key + 1;
      this.#size++;
    }
    this.#values[slot] = value;
  }

  /** The largest value (-Infinity when empty). */
  maxValue(): number {
    let max = -Infinity;
    for (let i = 0; i < this.#keys.length; i++) {
      if (this.#keys[i] !== 0 && this.#values[i] > max) max = this.#values[i];
    }
    return max;
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
      if (keys[i] !== 0) values[i] = change(values[i]);
    }
  }

  /**
   * Keeps only the entries whose value passes `keep` (called twice for each entry: it counts
   * them first, so the new arrays are made once, of the size they need). `keep` must not change
   * the table.
   */
  retain(keep: (value: number) => boolean): void {
    const keys = this.#keys;
    const values = this.#values;
    let kept = 0;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== 0 && keep(values[i])) kept++;
    }
    let capacity = FIRST_CAPACITY;
    while (2 * kept > capacity) capacity *= 2;
    this.#replace(capacity, (set) => {
      for (let i = 0; i < keys.length; i++) {
        if (keys[i] !== 0 && keep(values[i])) set(keys[i] - 1, values[i]);
      }
    });
  }

  /** The slot holding `key`, or the empty slot where it would go. */
  #find(key: number): number {
    const keys = this.#keys;
    const mask = keys.length - 1;
    const stored = key + 1;
    let slot = key & mask; // the key's low bits (ToInt32 keeps the low 32)
    while (keys[slot] !== 0 && keys[slot] !== stored) slot = (slot + 1) & mask;
    return slot;
  }

  #grow(): void {
    const keys = this.#keys;
    const values = this.#values;
    this.#replace(keys.length * 2, (set) => {
      for (let i = 0; i < keys.length; i++) {
        if (keys[i] !== 0) set(keys[i] - 1, values[i]);
      }
    });
  }

  /**
   * Makes empty arrays of `capacity` slots, lets `fill` set entries (from the old arrays), then
   * frees the old arrays at once: left to the garbage collector, the arrays a table outgrew
   * (and a compaction's `retain` replaced) stayed in memory by tens of MiB while the heap was
   * quiet.
   */
  #replace(capacity: number, fill?: (set: (key: number, value: number) => void) => void): void {
    const keys = this.#keys;
    const values = this.#values;
    this.#keys = new Float64Array(capacity);
    this.#values = new Float64Array(capacity);
    this.#size = 0;
    fill?.((key, value) => this.set(key, value));
    keys.buffer.transfer(0);
    values.buffer.transfer(0);
  }
}
