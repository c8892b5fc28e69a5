/**
 * How the process gives freed memory back to the system (glibc's `malloc`, which Deno and V8
 * use on Linux for `ArrayBuffer` memory and their own structures).
 *
 * glibc serves a block of 128 KiB or more from a mapping of its own, unmapped when freed, but
 * only until the first such block is freed: it then raises that threshold to the freed block's
 * size (up to 32 MiB) and serves later blocks of that size from its heap, which keeps their
 * pages once they are freed. A replica on S3 holds a part (10 MiB by default) per upload
 * writer; after eight parallel pushes, its resident memory stayed at 160 MiB at rest, against
 * 107 MiB with the threshold fixed. `mallopt(M_MMAP_THRESHOLD)` fixes it (and turns the raise
 * off): blocks of `MMAP_THRESHOLD` or more are always mapped, and unmapped when freed. Smaller
 * blocks (upload batches and read buffers of a MiB at most, the manifest cache's slabs) are
 * not affected, so the hot paths allocate as before.
 *
 * Those smaller blocks come from glibc's heap, which returns memory to the system only from its
 * top: a block freed below one still in use keeps its pages, however long it stays free. After
 * a burst of requests the main heap held 4–7 MiB free this way (`malloc_stats`, on a store of a
 * million manifests). `startTrimming` has `malloc_trim` give those pages back every few
 * seconds, called on a thread of Deno's pool. glibc locks each heap while it trims it, so the
 * JavaScript thread still waits when it allocates meanwhile, for as long as a trim takes: timed
 * on the JavaScript thread in seven runs of that bench (about 300 trims), one took over 2 ms.
 */

import { openGlibc } from "./storage/drivers/libc.ts";

/** Blocks of this many bytes or more are mapped of their own (above a MiB: see the top). */
export const MMAP_THRESHOLD = 4 * 1024 * 1024;

/** `M_MMAP_THRESHOLD` of glibc's `<malloc.h>`. */
const M_MMAP_THRESHOLD = -3;

/** How often `startTrimming` trims, in milliseconds. */
export const TRIM_INTERVAL_MS = 2_000;

/**
 * Fixes glibc's mmap threshold at `bytes`. False where there is nothing to do or it cannot be
 * done: not Linux, no glibc (`libc.so.6`; musl has no such threshold), or no FFI permission
 * (asked for without a prompt).
 */
export function fixMmapThreshold(bytes = MMAP_THRESHOLD): boolean {
  const lib = openGlibc({ mallopt: { parameters: ["i32", "i32"], result: "i32" } });
  if (lib === null) return false;
  try {
    return lib.symbols.mallopt(M_MMAP_THRESHOLD, bytes) === 1;
  } finally {
    lib.close();
  }
}

/** A running trimmer (`startTrimming`). */
export interface Trimmer {
  /**
   * Trims now; true when glibc gave memory back. Joins a trim already under way; false at once
   * once stopped.
   */
  trim(): Promise<boolean>;
  /** Stops the timer, waits for a trim under way and closes the library (once). */
  stop(): Promise<void>;
}

/**
 * Calls `malloc_trim(0)` every `intervalMs` (on a thread of Deno's pool; the timer does not
 * keep the process alive). Null where glibc cannot be reached (as `fixMmapThreshold`).
 */
export function startTrimming(intervalMs = TRIM_INTERVAL_MS): Trimmer | null {
  const lib = openGlibc({
    malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
  });
  if (lib === null) return null;
  let running: Promise<boolean> | null = null;
  let stopped: Promise<void> | null = null;
  const trim = (): Promise<boolean> => {
    if (stopped !== null) return Promise.resolve(false);
    running ??= lib.symbols.malloc_trim(0n).then(
      (released) => released === 1,
      () => false,
    ).finally(() => running = null);
    return running;
  };
  const timer = setInterval(trim, intervalMs);
  Deno.unrefTimer(timer);
  return {
    trim,
    stop: () =>
      stopped ??= (async () => {
        clearInterval(timer);
        await running;
        lib.close();
      })(),
  };
}
