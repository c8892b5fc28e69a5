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

/**
 * The memory a driver's writers may hold for pending upload bytes, counted in bytes, and the
 * buffers they gave back, kept for the next ones while the two together stay within the
 * limit. A fresh buffer's pages cost a fault each on first touch, and on a VM that gives its
 * free memory back to the host (as these machines do) a fault in the host too: with every
 * buffer new, eight parallel 8 MiB uploads spent more of the replica's one thread zeroing and
 * faulting in buffers than copying bytes into them. A kept buffer's pages are already there.
 * Writers ask for sizes of `bufferSize`, and past a MiB take a larger kept buffer rather than
 * a new one, so that one writer's buffer serves the next.
 */
export class MemoryBudget {
  #used = 0;
  #kept = 0;
  /** Kept buffers by size, the most recently given last. */
  readonly #free = new Map<number, ArrayBuffer[]>();

  /** A budget of `limit` bytes (0: every pending byte goes to a file). */
  constructor(readonly limit: number) {}

  /** The bytes the writers hold now. */
  get used(): number {
    return this.#used;
  }

  /** The bytes of the buffers kept for reuse. */
  get kept(): number {
    return this.#kept;
  }

  /**
   * Takes `bytes` more when they fit, or always when `force`; whether they were taken. Kept
   * buffers are freed as far as the writers' bytes need their room.
   */
  take(bytes: number, force = false): boolean {
    if (!force && this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    this.#trim();
    return true;
  }

  /** Gives back `bytes` taken before. */
  give(bytes: number): void {
    this.#used -= bytes;
  }

  /** The size of the smallest kept buffer of `least` to `most` bytes; null when none. */
  keptSize(least: number, most: number): number | null {
    let found: number | null = null;
    for (const [size, list] of this.#free) {
      if (list.length > 0 && size >= least && size <= most && size < (found ?? Infinity)) {
        found = size;
      }
    }
    return found;
  }

  /**
   * Takes `bytes` (as `take`) for a buffer of `size`, and returns it: a kept one of that size
   * when there is one (out of the kept ones before the count, so that making room does not
   * free it), else a new one; null when refused.
   */
  claim(size: number, bytes = size, force = false): Uint8Array<ArrayBuffer> | null {
    const list = this.#free.get(size);
    const kept = list?.pop();
    if (kept !== undefined) this.#kept -= size;
    if (!this.take(bytes, force)) {
      if (kept !== undefined) {
        list!.push(kept);
        this.#kept += size;
      }
      return null;
    }
    if (list?.length === 0) this.#free.delete(size);
    return new Uint8Array(kept ?? new ArrayBuffer(size));
  }

  /**
   * Takes back a buffer no one reads or writes any more (its bytes given back apart): kept
   * while there is room, else freed now (see `release`).
   */
  keep(bytes: Uint8Array): void {
    const size = bytes.byteLength;
    if (
      !ownBuffer(bytes) || bytes.buffer.resizable || this.#used + this.#kept + size > this.limit
    ) {
      release(bytes);
      return;
    }
    const list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, [bytes.buffer]);
    else list.push(bytes.buffer);
    this.#kept += size;
  }

  /** Frees kept buffers, the largest first, until the writers' bytes and them fit. */
  #trim(): void {
    if (this.#used + this.#kept <= this.limit) return;
    for (const size of [...this.#free.keys()].sort((a, b) => b - a)) {
      const list = this.#free.get(size)!;
      while (list.length > 0 && this.#used + this.#kept > this.limit) {
        release(new Uint8Array(list.pop()!));
        this.#kept -= size;
      }
      if (list.length === 0) this.#free.delete(size);
      if (this.#used + this.#kept <= this.limit) return;
    }
  }
}

/** Whether `bytes` is a whole, non-empty ArrayBuffer of its own (not a view of a larger one). */
function ownBuffer(bytes: Uint8Array): bytes is Uint8Array<ArrayBuffer> {
  return bytes.byteLength > 0 && bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
}

/** The least buffer size writers ask for. */
const LEAST_BUFFER = 64 * 1024;

/**
 * The buffer size for at least `wanted` bytes (at most `part`, the part size: a buffer never
 * holds more): a power of two from 64 KiB, or the part size, so that buffers fit many writers.
 */
export function bufferSize(wanted: number, part: number): number {
  let size = LEAST_BUFFER;
  while (size < wanted) size *= 2;
  return Math.min(part, size);
}

/**
 * Frees a buffer's memory now rather than at some later garbage collection, by detaching its
 * ArrayBuffer (`transfer(0)`): V8 frees a dropped buffer only when it collects, and an idle
 * process may not collect for long (in a plain Deno process, twenty dropped 10 MiB buffers
 * were all still resident). With a part (10 MiB by default) per writer, that was most of a
 * replica's memory after parallel pushes. The buffer must be a whole ArrayBuffer of its own
 * that nothing reads any more; a view of a larger one, or an empty one, is left alone, and a
 * buffer that cannot be detached is left to the collector.
 */
function release(bytes: Uint8Array): void {
  if (!ownBuffer(bytes)) return;
  try {
    bytes.buffer.transfer(0);
  } catch {
    // not detachable: the collector frees it
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
