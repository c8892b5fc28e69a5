/**
 * Streams a `ByteSource` into a driver's append writer in large batches, overlapping the
 * work: the source reads straight into one of two buffers while the other is being written
 * (on Deno's blocking pool, for files) and observed (e.g. hashed on a pool thread). Nothing is
 * allocated or copied per chunk, and memory stays at two buffers whatever the upload's size.
 */

import type { ByteSource } from "./byte_source.ts";
import type { AppendWriter } from "./driver.ts";
import { SparePool } from "../spares.ts";

/** Bytes between two background syncs, for writers that do not write back as they go. */
const SYNC_EVERY = 64 * 1024 * 1024;

/** Buffers kept for later writers (eight parallel uploads use 16). */
const POOLED = 16;

/**
 * The buffers of finished writers, for the next ones. A dropped `ArrayBuffer` is freed only
 * when V8 next collects, so without this a burst of uploads left two buffers each behind as
 * garbage; and a new buffer's pages are all touched afresh. Buffers beyond `POOLED` are freed
 * at once, and the registry frees those left unused for a few seconds (src/spares.ts).
 */
const spares = new SparePool(POOLED);

function take(size: number): Uint8Array<ArrayBuffer> {
  return spares.take(null, size) ?? new Uint8Array(size);
}

/** Sequential writer of a source into an append writer. */
export class BatchWriter {
  readonly #file: AppendWriter;
  readonly #batchSize: number;
  #buffers: Uint8Array<ArrayBuffer>[] = [];
  #started = false;
  readonly #observe: ((batch: Uint8Array) => Promise<void>) | null;
  /** The batch being written and observed, if any; it never rejects. */
  #inFlight: Promise<void> | null = null;
  #failure: unknown = null;
  #written = 0;
  #syncedUpTo = 0;
  #syncing: Promise<void> | null = null;

  /**
   * Makes a writer over an append writer, with batches of `batchSize` bytes. `observe` sees
   * every batch, in order, while it is being written; a batch is not reused before both settle.
   */
  constructor(
    file: AppendWriter,
    batchSize: number,
    observe: ((batch: Uint8Array) => Promise<void>) | null = null,
  ) {
    this.#file = file;
    this.#observe = observe;
    this.#batchSize = batchSize;
  }

  /** Bytes written to the file so far (complete writes only). */
  get written(): number {
    return this.#written;
  }

  /**
   * Reads the source to its end, writing batch by batch; throws what the source or a write
   * threw. Once only: when it returns or throws, nothing uses its buffers any more and they go
   * back to the pool.
   */
  async writeFrom(source: ByteSource): Promise<void> {
    if (this.#started) throw new Error("BatchWriter.writeFrom called twice");
    this.#started = true;
    // one being filled while the other is written
    this.#buffers = [take(this.#batchSize), take(this.#batchSize)];
    try {
      await this.#writeAll(source);
    } finally {
      // a failed read may leave the batch before it being written or observed
      if (this.#inFlight) await this.#inFlight;
      for (const buffer of this.#buffers) spares.give(null, buffer);
    }
  }

  async #writeAll(source: ByteSource): Promise<void> {
    let current = 0;
    let ended = false;
    while (!ended) {
      let buffer = this.#buffers[current];
      // where the buffer lies in its ArrayBuffer (a detached view would say 0 and 0)
      const { byteOffset, length } = buffer;
      let filled = 0;
      while (filled < length) {
        const view = await source.read(buffer.subarray(filled));
        // A BYOB read transfers the buffer: keep the one it came back in, at the same place.
        buffer = new Uint8Array(view.buffer, byteOffset, length);
        if (view.length === 0) {
          ended = true;
          break;
        }
        filled += view.length;
      }
      this.#buffers[current] = buffer;
      if (filled > 0) await this.#submit(buffer.subarray(0, filled));
      current = (current + 1) % this.#buffers.length;
    }
    await this.#drain();
  }

  /**
   * Waits for every write, observation and background sync, and for the writer's own work
   * beside the writes (after a failure, before the caller truncates what was written). Throws
   * what a write or a background sync threw.
   */
  async flush(): Promise<void> {
    try {
      await this.#drain();
    } finally {
      if (this.#file.idle) await this.#file.idle();
    }
  }

  /** Waits for every write, observation and background sync; throws what one of them threw. */
  async #drain(): Promise<void> {
    try {
      await this.#settle();
    } finally {
      // a failed write still waits for the background sync: the caller may then truncate
      if (this.#syncing) await this.#syncing;
    }
    if (this.#failure !== null) throw this.#failure;
  }

  /**
   * Starts writing `data` once the previous batch is done (the buffer to fill next is then
   * free); does not wait for this one. Throws what the previous batch failed with.
   */
  async #submit(data: Uint8Array): Promise<void> {
    await this.#settle();
    const observed = this.#observe ? this.#observe(data) : Promise.resolve();
    // both settle before the batch counts as done: its buffer is reused after that
    this.#inFlight = Promise.allSettled([this.#file.write(data), observed]).then(
      ([write, observe]) => {
        if (write.status === "rejected") this.#failure = write.reason;
        else if (observe.status === "rejected") this.#failure = observe.reason;
        else {
          this.#written += data.length;
          this.#startSync();
        }
      },
    );
  }

  /**
   * Every SYNC_EVERY bytes, unless the writer writes back as it goes, starts a sync of what is
   * written so far without waiting, so that the final sync only has the tail left.
   */
  #startSync(): void {
    if (this.#file.writesBack || this.#syncing) return;
    if (this.#written - this.#syncedUpTo < SYNC_EVERY) return;
    const upTo = this.#written;
    this.#syncing = this.#file.sync().then(
      () => {
        this.#syncedUpTo = upTo;
        this.#syncing = null;
      },
      (error) => {
        // a sync may report a write-back error only once: the upload fails with it
        this.#failure ??= error;
        this.#syncing = null;
      },
    );
  }

  async #settle(): Promise<void> {
    if (this.#inFlight) await this.#inFlight;
    this.#inFlight = null;
    if (this.#failure !== null) throw this.#failure;
  }
}
