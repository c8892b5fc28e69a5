/**
 * Streams a `ByteSource` into a driver's append writer in large batches, overlapping the
 * work: the source reads straight into one buffer while the batch before is being written
 * (on Deno's blocking pool, for files) and observed (e.g. hashed on a pool thread). A writer
 * that `overlaps` gets the next batch while it still writes one when no other batch writer
 * runs, so a disk that finishes a write finds the next waiting, not a round trip through this
 * thread (beside another upload, the disk has that one's writes). Nothing is allocated or
 * copied per chunk, and memory stays at two buffers (three for the overlapping one) whatever
 * the upload's size.
 */

import type { ByteSource } from "./byte_source.ts";
import type { AppendWriter } from "./driver.ts";
import { SparePool } from "../spares.ts";

/** Bytes between two background write-back starts. */
const SYNC_EVERY = 64 * 1024 * 1024;

type Allocate = (size: number) => Uint8Array<ArrayBuffer>;

const plainAllocate: Allocate = (size) => new Uint8Array(size);

/** Buffers kept for later writers (eight parallel uploads use 16). */
const POOLED = 16;

/**
 * The buffers of finished writers, kept with the allocator that made them, for the next ones.
 * A dropped `ArrayBuffer` is freed only when V8 next collects, so without this a burst of
 * uploads left two buffers each behind as garbage; and a new buffer's pages are all touched
 * afresh. Buffers beyond `POOLED` are freed at once, and the registry frees those left unused
 * for a few seconds (src/spares.ts).
 */
const spares = new SparePool<Allocate>(POOLED);

function take(allocate: Allocate, size: number): Uint8Array<ArrayBuffer> {
  return spares.take(allocate, size) ?? allocate(size);
}

/** Batch writers in `writeFrom`, in this process. */
let running = 0;

/** Sequential writer of a source into an append writer. */
export class BatchWriter {
  readonly #file: AppendWriter;
  readonly #allocate: Allocate;
  readonly #batchSize: number;
  #buffers: Uint8Array<ArrayBuffer>[] = [];
  #started = false;
  readonly #observe: ((batch: Uint8Array) => Promise<void>) | null;
  /** How many batches may be written at once: 1, or 2 (see the module's comment). */
  #depth = 1;
  /** The batches being written and observed, oldest first; none of them ever rejects. */
  #inFlight: Promise<void>[] = [];
  /** The last batch's observation: the next one starts after it (they never overlap). */
  #observed: Promise<void> = Promise.resolve();
  #failure: unknown = null;
  #written = 0;
  #syncedUpTo = 0;
  #syncing: Promise<void> | null = null;
  /** The size of the first batch when it must be short (see the constructor); 0 otherwise. */
  #head: number;

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
    // A writer that writes whole blocks around the page cache gets its buffers from itself,
    // and a first batch that brings the object to a block boundary, so every batch after it
    // starts on one (`batchSize` is a multiple of the block).
    this.#allocate = file.layout?.allocate ?? plainAllocate;
    this.#batchSize = batchSize;
    this.#head = file.layout?.head ?? 0;
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
    this.#depth = this.#file.overlaps && running === 0 ? 2 : 1;
    // one being filled while the others are written
    for (let i = 0; i <= this.#depth; i++) {
      this.#buffers.push(take(this.#allocate, this.#batchSize));
    }
    running++;
    try {
      await this.#writeAll(source);
    } finally {
      // a failed read may leave the batches before it being written or observed
      await Promise.all(this.#inFlight);
      running--;
      for (const buffer of this.#buffers) spares.give(this.#allocate, buffer);
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
      const size = this.#head > 0 ? this.#head : length;
      this.#head = 0;
      while (filled < size) {
        const view = await source.read(buffer.subarray(filled, size));
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
    await this.flush();
  }

  /** Waits for every write, observation and background flush. Throws what a write threw. */
  async flush(): Promise<void> {
    try {
      await this.#settle();
    } finally {
      // a failed write still waits for the background flush: the caller may then truncate
      if (this.#syncing) await this.#syncing;
    }
  }

  /**
   * Starts writing `data` once fewer than `#depth` batches are in flight (the buffer to fill
   * next is then free); does not wait for this one. Throws what an earlier batch failed with.
   */
  async #submit(data: Uint8Array): Promise<void> {
    while (this.#inFlight.length >= this.#depth) await this.#inFlight.shift();
    if (this.#failure !== null) throw this.#failure;
    // in order, one at a time; after a failed one, the later ones fail with it unobserved
    const observe = this.#observe;
    const observed = observe ? this.#observed.then(() => observe(data)) : Promise.resolve();
    this.#observed = observed;
    // both settle before the batch counts as done: its buffer is reused after that
    const batch = Promise.allSettled([this.#file.write(data), observed]).then(
      ([write, observe]) => {
        if (write.status === "rejected") this.#failure = write.reason;
        else if (observe.status === "rejected") this.#failure = observe.reason;
        else {
          this.#written += data.length;
          this.#startWriteback();
        }
      },
    );
    this.#inFlight.push(batch);
  }

  /**
   * Every SYNC_EVERY bytes, starts flushing what is written so far without waiting, so the
   * final fdatasync before the 201 only has the tail left to write (no sync_file_range in
   * Deno; a background fdatasync is the portable way to start write-back early).
   */
  #startWriteback(): void {
    if (this.#syncing || this.#written - this.#syncedUpTo < SYNC_EVERY) return;
    const upTo = this.#written;
    this.#syncing = this.#file.sync().then(
      () => {
        this.#syncedUpTo = upTo;
        this.#syncing = null;
      },
      () => {
        this.#syncing = null;
      },
    );
  }

  async #settle(): Promise<void> {
    while (this.#inFlight.length > 0) await this.#inFlight.shift();
    if (this.#failure !== null) throw this.#failure;
  }
}
