/**
 * Advice to the kernel's page cache about a file being appended to: start writing a range
 * back (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) and drop clean pages
 * (`posix_fadvise(POSIX_FADV_DONTNEED)`), from glibc (`libc.so.6`) through FFI, on Linux on
 * x86_64 or aarch64 with `--allow-ffi` (which `deno task start` grants). Elsewhere, or without
 * the permission, there is no advice and the filesystem driver does without; the permission is
 * never asked for, so no prompt appears.
 *
 * Why write-back: an upload is written through the page cache and made durable by one
 * `fdatasync` before its 201. Left alone, the kernel writes the dirty pages out late and that
 * `fdatasync` has most of the upload still to write; and an `fdatasync` while the upload is
 * written holds its writes for as long as the device flushes (37–55 ms per 64 MiB on the
 * machine of BENCHMARKS.md). Starting the write-back of each few MiB as it is written keeps the
 * disk busy from the first MiB, and the writes do not wait for it.
 *
 * Why drops: the upload's bytes are written once and not read back (the digest is computed as
 * they arrive). Left in the cache, every pushed GiB takes a GiB of fresh pages, and on a
 * virtual machine whose free memory goes back to the host (virtio-balloon free page
 * reporting), each fresh page costs a fault in the host on first touch: writing a GiB into the
 * page cache took 1.2–2.1 s of system time there, against 0.5 s when the pages synced so far
 * were dropped every 64 MiB (as the writer did then) and reused by the writes that follow.
 *
 * Both are advice: neither makes anything durable (the writer's own `fdatasync` does), and
 * neither can change a file's bytes or consume a write-back error the writer's `fdatasync` is
 * to report. So the descriptor is opened by path, read-only, with no check that it is still the
 * writer's file: one put at the path meanwhile would only have its clean pages dropped.
 */

import { libcSymbols } from "./libc.ts";

/**
 * Advice about one file, on a descriptor of its own. Nothing here ever rejects: each call tells
 * whether the kernel took it (false once closed, or for anything but a regular file).
 */
export interface CacheAdvice {
  /**
   * Starts writing back the dirty pages of `length` bytes from `from`; does not wait for the
   * write-back (the call may still wait for room in the device's queue).
   */
  writeBack(from: number, length: number): Promise<boolean>;
  /** Drops the clean cached pages of `length` bytes from `from`. */
  drop(from: number, length: number): Promise<boolean>;
  /** Closes the descriptor, once no call on it is running. */
  close(): void;
}

/**
 * Opens the file at `path` for advice; null when it cannot be opened (gone, or a symbolic
 * link). Advice about anything but a regular file does nothing (the calls fail quietly).
 */
export type CacheAdvisor = (path: string) => Promise<CacheAdvice | null>;

/** `O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW` on Linux. */
const OPEN_FLAGS = 0o2000000 | 0o4000 | (Deno.build.arch === "aarch64" ? 0o100000 : 0o400000);
/** `POSIX_FADV_DONTNEED` on Linux (x86_64, aarch64). */
const FADV_DONTNEED = 4;
/** `SYNC_FILE_RANGE_WRITE`: start write-back of the range's dirty pages, wait for nothing. */
const SYNC_FILE_RANGE_WRITE = 2;

let advisor: CacheAdvisor | null | undefined;

/** This process's advisor, or null when it has none (chosen once: the C library stays loaded). */
export function pageCache(): CacheAdvisor | null {
  if (advisor === undefined) advisor = libcAdvisor();
  return advisor;
}

function libcAdvisor(): CacheAdvisor | null {
  const libc = libcSymbols({
    open: { parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
    sync_file_range: { parameters: ["i32", "i64", "i64", "u32"], result: "i32", nonblocking: true },
    posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32", nonblocking: true },
    close: { parameters: ["i32"], result: "i32" },
  });
  if (libc === null) return null;
  const { open, sync_file_range, posix_fadvise, close } = libc;
  const encoder = new TextEncoder();
  return async (path) => {
    let fd: number;
    try {
      fd = await open(encoder.encode(`${path}\0`), OPEN_FLAGS);
    } catch {
      return null;
    }
    if (fd < 0) return null;
    /** The call running on `fd`, if any: closing waits for it (the number could be reused). */
    let running: Promise<unknown> = Promise.resolve();
    let closed = false;
    const call = (make: () => Promise<number>): Promise<boolean> => {
      if (closed) return Promise.resolve(false);
      const next = running.then(make).then((result) => result === 0, () => false);
      running = next;
      return next;
    };
    return {
      writeBack: (from, length) =>
        call(() => sync_file_range(fd, BigInt(from), BigInt(length), SYNC_FILE_RANGE_WRITE)),
      // only clean pages leave: what a sync or a write-back already wrote
      drop: (from, length) =>
        call(() => posix_fadvise(fd, BigInt(from), BigInt(length), FADV_DONTNEED)),
      close() {
        if (closed) return;
        closed = true;
        void running.then(() => close(fd));
      },
    };
  };
}
