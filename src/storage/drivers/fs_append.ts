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

/** Appends to `file` (open for writing at `offset`, the object's end) at OS path `path`. */
export function fileAppender(path: string, file: Deno.FsFile, offset: number): AppendWriter {
  return new FileAppender(path, file, offset, directIo());
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
  readonly layout?: AppendLayout;

  constructor(path: string, file: Deno.FsFile, offset: number, io: DirectIo | null) {
    this.#path = path;
    this.#file = file;
    this.#io = io;
    this.#end = offset;
    this.#cursor = offset;
    if (io) this.layout = { head: (BLOCK - (offset % BLOCK)) % BLOCK, allocate: io.allocate };
  }

  async write(bytes: Uint8Array): Promise<void> {
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
    if (this.#cursor !== this.#end) await this.#file.seek(this.#end, Deno.SeekMode.Start);
    this.#cursor = this.#end;
    await writeAll(this.#file, bytes);
    this.#end += bytes.length;
    this.#cursor = this.#end;
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
