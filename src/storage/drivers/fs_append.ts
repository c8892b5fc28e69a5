/**
 * The filesystem driver's append writer (an upload's data). Its first 8 MiB are written
 * through the page cache, so that a config or a small layer pulled right after its push is
 * read from memory. Past that, whole blocks are written around the cache (`direct_io.ts`)
 * when the process can, and each sync drops the pages of what it made durable
 * (`page_cache.ts`): the bytes are written once and not read back, and a GiB copied into
 * the cache costs more CPU than hashing it.
 */

import type { AppendLayout, AppendWriter } from "../driver.ts";
import { BLOCK, type DirectIo, directIo } from "./direct_io.ts";
import { writeAll } from "./fs_files.ts";
import { pageDropper } from "./page_cache.ts";

/** Where an appended object stops being kept in the page cache. */
const UNCACHED_FROM = 8 * 1024 * 1024;

/**
 * Appends to `file` (open for writing at `offset`, the object's end) at OS path `path`, with
 * this process's direct writes (tests pass their own).
 */
export function fileAppender(
  path: string,
  file: Deno.FsFile,
  offset: number,
  io: DirectIo | null = directIo(),
): AppendWriter {
  return new FileAppender(path, file, offset, io);
}

class FileAppender implements AppendWriter {
  readonly #path: string;
  readonly #file: Deno.FsFile;
  readonly #io: DirectIo | null;
  readonly #drop = pageDropper();
  /** The object's size: where the next write goes. */
  #end: number;
  /** Where `#file`'s cursor is (direct writes do not move it). */
  #cursor: number;
  /** The direct descriptor: not opened yet, or null once it cannot be used. */
  #fd: number | null | undefined = undefined;
  #closed = false;
  /**
   * Set once a direct write on `#fd` wrote all it was given: from then on, a write of whole
   * blocks at a block boundary starts at once, at an offset reserved for it (`#reserved`).
   */
  #reserving = false;
  /** Reserved writes running, in the order they started. */
  readonly #flying: Promise<void>[] = [];
  /** Writes that run alone (through the cursor, or opening the descriptor), queued or running. */
  #alone = 0;
  /** The last of those; the next one starts after it and after every reserved write. */
  #lastAlone: Promise<void> = Promise.resolve();
  /** A reserved write failed: the descriptor closes before the next write that runs alone. */
  #stopPending = false;
  readonly layout?: AppendLayout;
  readonly overlaps?: boolean;

  constructor(path: string, file: Deno.FsFile, offset: number, io: DirectIo | null) {
    this.#path = path;
    this.#file = file;
    this.#io = io;
    this.#end = offset;
    this.#cursor = offset;
    if (io) {
      this.layout = { head: (BLOCK - (offset % BLOCK)) % BLOCK, allocate: io.allocate };
      this.overlaps = true;
    }
  }

  write(bytes: Uint8Array): Promise<void> {
    const fd = this.#fd;
    if (
      this.#reserving && this.#alone === 0 && typeof fd === "number" && this.#end % BLOCK === 0 &&
      bytes.length > 0 && bytes.length % BLOCK === 0 && this.#io!.isAligned(bytes)
    ) return this.#reserved(fd, bytes);
    const before = [this.#lastAlone, ...this.#flying];
    this.#alone++;
    const written = Promise.allSettled(before).then(() => this.#writeAlone(bytes)).finally(() =>
      this.#alone--
    );
    this.#lastAlone = written.catch(() => {});
    return written;
  }

  /**
   * A direct write of whole blocks at the object's end, started without waiting for the
   * writes before it: they have their offsets already. Should it write less than all, the
   * rest goes through the cache at its place once the writes started before it are done
   * (the cache reports the medium's error, if any), and no write is reserved after it.
   */
  async #reserved(fd: number, bytes: Uint8Array): Promise<void> {
    const at = this.#end;
    this.#end += bytes.length;
    const earlier = [...this.#flying];
    const flight = this.#io!.write(fd, bytes, at).then(async (wrote) => {
      if (wrote === bytes.length) return;
      this.#reserving = false;
      if (wrote <= 0) this.#stopPending = true;
      await Promise.allSettled(earlier);
      const done = Math.max(0, wrote);
      await this.#cachedAt(bytes.subarray(done), at + done);
    });
    this.#flying.push(flight);
    try {
      await flight;
    } finally {
      this.#flying.splice(this.#flying.indexOf(flight), 1);
    }
  }

  /** A write that no other runs beside: every write before it is done. */
  async #writeAlone(bytes: Uint8Array): Promise<void> {
    if (this.#stopPending) {
      this.#stopPending = false;
      this.#stopDirect();
    }
    let done = 0;
    const io = this.#io;
    if (io && this.#fd !== null && this.#end >= UNCACHED_FROM) {
      // [head: to the next block boundary][whole blocks][tail]; only the middle goes direct
      const head = (BLOCK - (this.#end % BLOCK)) % BLOCK;
      const blocks = Math.floor(Math.max(0, bytes.length - head) / BLOCK) * BLOCK;
      const middle = bytes.subarray(head, head + blocks);
      if (blocks > 0 && io.isAligned(middle)) {
        const fd = this.#fd ?? await this.#openDirect(io);
        if (fd !== null) {
          if (head > 0) await this.#cached(bytes.subarray(0, head));
          // closed meanwhile (not by this module's callers): the number may name another file
          if (this.#fd !== fd) throw new Error("append writer closed during a write");
          const wrote = await io.write(fd, middle, this.#end);
          if (wrote > 0) this.#end += wrote;
          else this.#stopDirect(); // the rest goes through the cache, which reports any error
          this.#reserving = wrote === blocks;
          done = head + Math.max(0, wrote);
        }
      }
    }
    if (done < bytes.length) await this.#cached(done === 0 ? bytes : bytes.subarray(done));
  }

  async sync(): Promise<void> {
    const upTo = this.#end;
    // fdatasync covers the direct writes too: their new size and the disk's write cache
    await this.#file.syncData();
    if (this.#drop && upTo >= UNCACHED_FROM) await this.#drop(this.#path, upTo);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
    this.#stopDirect();
  }

  async #cached(bytes: Uint8Array): Promise<void> {
    await this.#cachedAt(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** Writes `bytes` at `at` through the page cache. */
  async #cachedAt(bytes: Uint8Array, at: number): Promise<void> {
    if (this.#cursor !== at) await this.#file.seek(at, Deno.SeekMode.Start);
    this.#cursor = at;
    await writeAll(this.#file, bytes);
    this.#cursor = at + bytes.length;
  }

  async #openDirect(io: DirectIo): Promise<number | null> {
    this.#fd = await io.open(this.#path, await this.#file.stat());
    if (this.#closed) this.#stopDirect();
    return this.#fd;
  }

  #stopDirect(): void {
    if (typeof this.#fd === "number") this.#io?.close(this.#fd);
    this.#fd = null;
  }
}
