/**
 * Where an S3 writer keeps the bytes of an upload that do not make a whole part yet: memory up
 * to a budget shared by all the writers of a driver (`storage.s3.uploadmemory`), and past it a
 * temporary file of the writer's own. S3 needs an object's (and a part's) length before its
 * bytes, and a chunked PATCH gives none, so these bytes stay with the replica until a part
 * fills or the PATCH ends. Without a bound, each upload in flight held up to a part (10 MiB by
 * default) in memory: eight parallel pushes took 72 MiB, and a hundred slow ones a GiB.
 *
 * A spill file is scratch, not state: it holds only bytes the client has not been told are
 * stored (the 202 comes after the tail object's PutObject), it is unlinked as soon as it is
 * created (nothing is left behind by a crash), and another replica never needs it.
 */

import type { SizedSource } from "./s3_client.ts";

/** The memory a driver's writers may hold for pending upload bytes, counted in bytes. */
export class MemoryBudget {
  #used = 0;

  /** A budget of `limit` bytes (0: every pending byte goes to a file). */
  constructor(readonly limit: number) {}

  /** The bytes the writers hold now. */
  get used(): number {
    return this.#used;
  }

  /** Takes `bytes` more when they fit, or always when `force`; whether they were taken. */
  take(bytes: number, force = false): boolean {
    if (!force && this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  /** Gives back `bytes` taken before. */
  give(bytes: number): void {
    this.#used -= bytes;
  }
}

/**
 * A temporary file of pending bytes, appended to, read as a request body, then closed. Every
 * operation waits for the one before (a body read by a retried request never interleaves its
 * seeks with an abandoned attempt's).
 */
export class SpillFile {
  #size = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(readonly file: Deno.FsFile) {}

  /** Creates one in `directory` (the system's temporary folder when absent), unlinked. */
  static async open(directory?: string): Promise<SpillFile> {
    const path = await Deno.makeTempFile({
      prefix: "registry-upload-",
      ...(directory ? { dir: directory } : {}),
    });
    let file: Deno.FsFile | null = null;
    try {
      file = await Deno.open(path, { read: true, write: true });
    } finally {
      await Deno.remove(path).catch(() => {});
    }
    return new SpillFile(file);
  }

  /** The bytes appended so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends `bytes` (written whole before the promise settles). Written synchronously: a write
   * into the page cache takes microseconds, less than the hop to a worker thread of an async
   * write, and a writer spills in its client's small frames (32 KiB from Go: eight parallel
   * 8 MiB uploads spent 70–130 ms a writer in async writes, 12–54 in these).
   */
  append(bytes: Uint8Array): Promise<void> {
    return this.#run(() => {
      this.file.seekSync(this.#size, Deno.SeekMode.Start);
      for (let at = 0; at < bytes.length;) at += this.file.writeSync(bytes.subarray(at));
      this.#size += bytes.length;
    });
  }

  /** The bytes appended so far as a request body (later appends are not part of it). */
  body(): SizedSource {
    const size = this.#size;
    return { size, readAt: (position, into) => this.#readAt(position, into, size) };
  }

  /** Reads up to `into.length` bytes at `position` (below `end`); the count, 0 at the end. */
  #readAt(position: number, into: Uint8Array, end: number): Promise<number> {
    return this.#run(async () => {
      const wanted = Math.min(into.length, end - position);
      if (wanted <= 0) return 0;
      await this.file.seek(position, Deno.SeekMode.Start);
      let got = 0;
      while (got < wanted) {
        const n = await this.file.read(into.subarray(got, wanted));
        if (n === null) throw new Error(`The spill file ended at ${position + got} of ${end}`);
        got += n;
      }
      return got;
    });
  }

  /** Closes the file once the operations queued are done; its space is freed then. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    void this.#queue.then(() => this.file.close()).catch(() => {});
  }

  /** Runs `step` after the operations queued before it; refused once the file is closed. */
  #run<T>(step: () => T | Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("The spill file is closed"));
    const run = this.#queue.then(step);
    this.#queue = run.catch(() => {});
    return run;
  }
}
