/**
 * Spare buffers: big buffers kept when a task is done with them, for the next task, and let go
 * once they have sat unused for a while.
 *
 * Upload batches (storage/batch_writer.ts) and the buffers reply streams are read into
 * (server/stream_chunks.ts) are a MiB each. Taking a kept one saves the page faults of fresh
 * memory and leaves no garbage for V8 to collect later. Kept for good, though, the buffers of
 * eight parallel pushes and a pull (24 MiB) stayed resident through everything that came after
 * them: 64 connections of HEAD requests then peaked at 125 MiB instead of about 100
 * (BENCHMARKS.md). So the registry sweeps every pool every few seconds (`startSweeping`): a
 * spare that was already there at the previous sweep is freed (a detached `ArrayBuffer`'s
 * memory goes back to glibc at once, and to the system at its next trim, src/malloc.ts).
 * A busy pool keeps what it uses; an idle one is empty within two sweeps.
 */

/** How often `startSweeping` sweeps, in milliseconds. */
export const SWEEP_INTERVAL_MS = 2_000;

interface Spare<K> {
  readonly key: K;
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The sweep count when it was given back. */
  readonly since: number;
}

/** Every pool made, for `sweepSpares` (pools live as long as the modules that make them). */
const pools = new Set<SparePool<unknown>>();
/** Sweeps so far. */
let sweeps = 0;

/**
 * A bounded pool of spare buffers, each kept with a key (e.g. the allocator that made it); the
 * last given back is the first taken, so spares that are not needed sink to be swept.
 */
export class SparePool<K = null> {
  readonly #max: number;
  #spares: Spare<K>[] = [];

  /** A pool of at most `max` spares. */
  constructor(max: number) {
    this.#max = max;
    pools.add(this as SparePool<unknown>);
  }

  /** Spares held now. */
  get size(): number {
    return this.#spares.length;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#spares.reduce((sum, spare) => sum + spare.bytes.buffer.byteLength, 0);
  }

  /** A spare of `length` bytes kept with `key` (taken out of the pool), or undefined. */
  take(key: K, length: number): Uint8Array<ArrayBuffer> | undefined {
    const at = this.#spares.findLastIndex((s) =>
      s.key === key && s.bytes.length === length && !s.bytes.buffer.detached
    );
    return at < 0 ? undefined : this.#spares.splice(at, 1)[0].bytes;
  }

  /**
   * Keeps `bytes` for a later `take` with the same key, or frees it now when the pool is full.
   * A detached buffer (one a read transferred away) is ignored.
   */
  give(key: K, bytes: Uint8Array<ArrayBuffer>): void {
    if (bytes.buffer.detached) return;
    if (this.#spares.length < this.#max) this.#spares.push({ key, bytes, since: sweeps });
    else bytes.buffer.transfer(0);
  }

  /**
   * Frees the spares given back before sweep number `before`; the bytes freed. A spare that
   * was detached while kept (whoever still held it transferred it) is only dropped.
   */
  sweep(before: number): number {
    let freed = 0;
    this.#spares = this.#spares.filter((spare) => {
      const { buffer } = spare.bytes;
      if (buffer.detached) return false;
      if (spare.since >= before) return true;
      freed += buffer.byteLength;
      buffer.transfer(0);
      return false;
    });
    return freed;
  }
}

/**
 * One sweep of every pool: frees the spares that were already kept at the previous sweep (none
 * has been taken since). Returns the bytes freed.
 */
export function sweepSpares(): number {
  let freed = 0;
  for (const pool of pools) freed += pool.sweep(sweeps);
  sweeps++;
  return freed;
}

/**
 * Sweeps every `intervalMs` (the timer does not keep the process alive); returns a function
 * that stops it.
 */
export function startSweeping(intervalMs = SWEEP_INTERVAL_MS): () => void {
  const timer = setInterval(sweepSpares, intervalMs);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}
