/**
 * Coalesces small chunks into large writes and overlaps them with the caller: while one
 * batch is being written (on Deno's blocking pool), the next one fills (and the caller hashes
 * its chunks on the JS thread). Two buffers of `batchSize` bytes per writer, whatever the
 * size of the upload.
 */

import { writeAll } from "./fs.ts";

/** Bytes between two background write-back starts. */
const SYNC_EVERY = 64 * 1024 * 1024;

/** Sequential writer of chunks into an open file at its current position. */
export class BatchWriter {
  readonly #file: Deno.FsFile;
  readonly #buffers: [Uint8Array, Uint8Array];
  #current = 0;
  #filled = 0;
  #inFlight: Promise<void> | null = null;
  #failure: unknown = null;
  #written = 0;
  #syncedUpTo = 0;
  #syncing: Promise<void> | null = null;

  readonly #observe: ((batch: Uint8Array) => Promise<void>) | null;

  /**
   * Makes a writer over an open file, with two buffers of `batchSize` bytes. `observe` sees
   * every batch, in order, while it is being written (e.g. to hash it on another thread);
   * the batch is not reused before both settle.
   */
  constructor(
    file: Deno.FsFile,
    batchSize: number,
    observe: ((batch: Uint8Array) => Promise<void>) | null = null,
  ) {
    this.#file = file;
    this.#observe = observe;
    this.#buffers = [new Uint8Array(batchSize), new Uint8Array(batchSize)];
  }

  /** Bytes written to the file so far (complete writes only). */
  get written(): number {
    return this.#written;
  }

  /** Queues a chunk; may wait for an earlier write. Throws what a write threw. */
  async push(chunk: Uint8Array): Promise<void> {
    const buffer = this.#buffers[this.#current];
    if (this.#filled > 0 && this.#filled + chunk.length > buffer.length) await this.#submitBuffer();
    if (chunk.length >= buffer.length) {
      await this.#submit(chunk);
      return;
    }
    this.#buffers[this.#current].set(chunk, this.#filled);
    this.#filled += chunk.length;
  }

  /** Writes what is buffered and waits for every write. Throws what a write threw. */
  async flush(): Promise<void> {
    if (this.#filled > 0) await this.#submitBuffer();
    await this.#settle();
    if (this.#syncing) await this.#syncing;
  }

  async #submitBuffer(): Promise<void> {
    const data = this.#buffers[this.#current].subarray(0, this.#filled);
    await this.#submit(data);
    this.#current = 1 - this.#current;
    this.#filled = 0;
  }

  /** Starts writing `data` once the previous write is done; does not wait for this one. */
  async #submit(data: Uint8Array): Promise<void> {
    await this.#settle();
    const observed = this.#observe ? this.#observe(data) : Promise.resolve();
    this.#inFlight = Promise.all([writeAll(this.#file, data), observed]).then(
      () => {
        this.#written += data.length;
        this.#startWriteback();
      },
      (error) => {
        this.#failure = error;
      },
    );
  }

  /**
   * Every SYNC_EVERY bytes, starts flushing what is written so far without waiting, so the
   * final fdatasync before the 201 only has the tail left to write (no sync_file_range in
   * Deno; a background fdatasync is the portable way to start write-back early).
   */
  #startWriteback(): void {
    if (this.#syncing || this.#written - this.#syncedUpTo < SYNC_EVERY) return;
    const upTo = this.#written;
    this.#syncing = this.#file.syncData().then(
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
    if (this.#inFlight) await this.#inFlight;
    this.#inFlight = null;
    if (this.#failure !== null) throw this.#failure;
  }
}
