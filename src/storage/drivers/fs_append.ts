/**
 * The filesystem driver's append writer (an upload's data). Bytes are written through the page
 * cache, one write at a time, and reach the disk as they come rather than at the final sync:
 *
 * - every `WRITEBACK_EVERY` bytes, the write-back of what was written since the last start is
 *   started (`page_cache.ts`), without waiting for it;
 * - about every `FLUSH_EVERY` bytes, the device's write cache is flushed by an `fdatasync` of
 *   the data root's folder, not of the upload: on ext4 (and XFS) a sync of a clean file only
 *   flushes the device, so the next writes do not wait for it, where an `fdatasync` of the
 *   upload held them until the flush was done. At most one such flush of a data root runs at a
 *   time; an upload that finds one running joins it;
 * - at the same marks, the pages written before the previous mark are dropped (the object is
 *   past `UNCACHED_FROM` by then): the bytes are written once and not read back.
 *
 * The final sync is the upload's own `fdatasync`, as always, and all durability rests on it:
 * what the steps above did is advice, and a failure of any of them is only a slower sync.
 * Without advice (not Linux with glibc, or no FFI permission), the writer syncs the upload in
 * the background every `SYNC_EVERY` bytes instead, the portable way to start write-back early.
 */

import type { AppendWriter } from "../driver.ts";
import { writeAll } from "./fs_files.ts";
import { type CacheAdvice, type CacheAdvisor, pageCache } from "./page_cache.ts";

/** Where an appended object stops being kept in the page cache. */
const UNCACHED_FROM = 8 * 1024 * 1024;
/** Bytes between two starts of write-back. */
const WRITEBACK_EVERY = 8 * 1024 * 1024;
/**
 * Bytes between two flushes of the device. Each flush takes a few ms of the disk's time, and
 * what it leaves unflushed the upload's final sync has to flush: on the VM of BENCHMARKS.md,
 * 16 PATCHes of 64 MiB each went from 377–399 MiB/s with a flush every 64 MiB to 440–454 with
 * one every 16 (456–475 every 8), and single pushes were no slower.
 */
const FLUSH_EVERY = 16 * 1024 * 1024;
/** Bytes between two background syncs of the upload when there is no advice. */
const SYNC_EVERY = 64 * 1024 * 1024;

/** What the writer does beside its writes; tests pass their own. */
export interface Writeback {
  /** Advice about the page cache, or null for none. */
  readonly advisor: CacheAdvisor | null;
  /**
   * Starts flushing the device's cache, or joins the flush that runs already: settles when it
   * is done, and never rejects.
   */
  flushDevice(): Promise<void>;
}

/** The flushes running in this process, by the folder synced. */
const flushing = new Map<string, Promise<void>>();

/**
 * Starts an `fdatasync` of the folder `dir` (clean, so only the device's cache is flushed)
 * unless one of it started by this function still runs; settles when that one is done, and
 * never rejects.
 */
export function flushDeviceOf(dir: string): Promise<void> {
  const running = flushing.get(dir);
  if (running) return running;
  const flush = (async () => {
    const folder = await Deno.open(dir, { read: true });
    try {
      await folder.syncData();
    } finally {
      folder.close();
    }
  })().catch(() => {}).finally(() => flushing.delete(dir));
  flushing.set(dir, flush);
  return flush;
}

/** This process's way to write back, for a data root at `root`. */
export function writebackFor(root: string): Writeback {
  return { advisor: pageCache(), flushDevice: () => flushDeviceOf(root) };
}

/**
 * Appends to `file` (open for writing, its cursor at `offset`, the object's end) at OS path
 * `path`.
 */
export function fileAppender(
  path: string,
  file: Deno.FsFile,
  offset: number,
  writeback: Writeback,
): AppendWriter {
  return new FileAppender(path, file, offset, writeback);
}

class FileAppender implements AppendWriter {
  readonly #path: string;
  readonly #file: Deno.FsFile;
  readonly #writeback: Writeback;
  readonly writesBack = true;
  /** The object's size: where the next write goes. */
  #end: number;
  /** Where the write-back started last ends. */
  #startedTo: number;
  /** `#end` at the last flush of the device (or background sync). */
  #flushedAt: number;
  /** Where the last drop of pages ended. */
  #droppedTo = 0;
  /** The advice descriptor: not opened yet, or null when there is none. */
  #advice: CacheAdvice | null | undefined = undefined;
  /** The work started beside the writes, if any runs. */
  #beside: Promise<void> | null = null;
  /** The last flush of the device this writer started or joined (it never rejects). */
  #flush: Promise<void> = Promise.resolve();
  /**
   * What a background sync of the upload (without advice) failed with: a write-back error is
   * reported once per open file, so the final sync must not succeed after it.
   */
  #failure: unknown = null;
  #closed = false;

  constructor(path: string, file: Deno.FsFile, offset: number, writeback: Writeback) {
    this.#path = path;
    this.#file = file;
    this.#writeback = writeback;
    this.#end = offset;
    this.#startedTo = offset;
    this.#flushedAt = offset;
    if (writeback.advisor === null) this.#advice = null;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#failure !== null) throw this.#failure;
    await writeAll(this.#file, bytes);
    this.#end += bytes.length;
    if (this.#beside === null) this.#startBeside();
  }

  /** Starts the next step of write-back, flush and drop that is due, without waiting for it. */
  #startBeside(): void {
    const end = this.#end;
    if (this.#advice === null) {
      if (end - this.#flushedAt < SYNC_EVERY) return;
      this.#flushedAt = end;
      this.#run(() =>
        this.#file.syncData().catch((error) => {
          this.#failure ??= error;
        })
      );
      return;
    }
    if (end - this.#startedTo < WRITEBACK_EVERY) return;
    const from = this.#startedTo;
    this.#startedTo = end;
    const flush = end - this.#flushedAt >= FLUSH_EVERY;
    // what was written by the previous flush is most likely written back by now
    const dropTo = flush ? this.#flushedAt : 0;
    if (flush) this.#flushedAt = end;
    this.#run(async () => {
      const advice = await this.#openAdvice();
      if (advice === null) return;
      await advice.writeBack(from, end - from);
      if (!flush || this.#closed) return;
      this.#flush = this.#writeback.flushDevice();
      if (dropTo > this.#droppedTo) {
        await advice.drop(this.#droppedTo, dropTo - this.#droppedTo);
        this.#droppedTo = dropTo;
      }
    });
  }

  /** Runs `step` beside the writes; a failure of advice only leaves more for the final sync. */
  #run(step: () => Promise<void>): void {
    this.#beside = step().catch(() => {}).finally(() => {
      this.#beside = null;
    });
  }

  async idle(): Promise<void> {
    if (this.#beside) await this.#beside;
    await this.#flush;
  }

  async sync(): Promise<void> {
    const upTo = this.#end;
    if (this.#beside) await this.#beside;
    if (this.#failure !== null) throw this.#failure;
    await this.#file.syncData();
    // the device was flushed again by this sync: the last folder flush is done or needless,
    // and nothing of this writer's is left running
    await this.#flush;
    if (upTo < UNCACHED_FROM || this.#droppedTo >= upTo) return;
    const advice = await this.#openAdvice();
    // everything is clean now: every page of the object goes
    if (advice !== null) await advice.drop(0, upTo);
    this.#droppedTo = upTo;
  }

  /** Releases the writer; work beside the writes still running ends on its own (see `idle`). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
    // the advice closes itself once the calls on it are done
    if (this.#advice) this.#advice.close();
  }

  /** The advice descriptor, opened on first use (a step, or a sync, never both at once). */
  async #openAdvice(): Promise<CacheAdvice | null> {
    if (this.#advice !== undefined) return this.#advice;
    const advice = await this.#writeback.advisor!(this.#path);
    this.#advice = advice;
    if (this.#closed) advice?.close();
    return advice;
  }
}
