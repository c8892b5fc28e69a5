/**
 * Drops a file's clean pages from the kernel's page cache: `posix_fadvise(POSIX_FADV_DONTNEED)`
 * from glibc (`libc.so.6`) through FFI, on Linux on x86_64 or aarch64 with `--allow-ffi` (which
 * `deno task start` grants). Elsewhere, or without the permission, there is no dropper and
 * nothing changes; the permission is never asked for, so no prompt appears.
 *
 * Why: the filesystem driver writes an upload's bytes once and does not read them back (the
 * digest is computed as they arrive). Left in the cache, every pushed GiB takes a GiB of fresh
 * pages, and on a virtual machine whose free memory goes back to the host (virtio-balloon free
 * page reporting), each fresh page costs a fault in the host on first touch: writing a GiB into
 * the page cache took 1.2–2.1 s of system time there, against 0.5 s when the pages synced so
 * far are dropped every 64 MiB and reused by the writes that follow.
 */

import { libcSymbols } from "./libc.ts";

/**
 * Drops the clean cached pages of the first `length` bytes of the file at `path`. Never throws
 * (it is advice): a file that is gone, a link or anything but a regular file is left alone.
 */
export type PageDropper = (path: string, length: number) => Promise<void>;

/** `O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW` on Linux. */
const OPEN_FLAGS = 0o2000000 | 0o4000 | (Deno.build.arch === "aarch64" ? 0o100000 : 0o400000);
/** `POSIX_FADV_DONTNEED` on Linux (x86_64, aarch64). */
const FADV_DONTNEED = 4;

let dropper: PageDropper | null | undefined;

/** This process's dropper, or null when it has none (chosen once: the C library stays loaded). */
export function pageDropper(): PageDropper | null {
  if (dropper === undefined) dropper = libcDropper();
  return dropper;
}

function libcDropper(): PageDropper | null {
  const libc = libcSymbols({
    open: { parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
    posix_fadvise: {
      parameters: ["i32", "i64", "i64", "i32"],
      result: "i32",
      nonblocking: true,
    },
    close: { parameters: ["i32"], result: "i32" },
  });
  if (libc === null) return null;
  const { open, posix_fadvise, close } = libc;
  const encoder = new TextEncoder();
  return async (path, length) => {
    const cPath = encoder.encode(`${path}\0`);
    try {
      const fd = await open(cPath, OPEN_FLAGS);
      if (fd < 0) return;
      try {
        // Only clean pages leave: what a sync (or the kernel's own write-back) already wrote.
        // For dirty pages in the range the kernel starts writing them back instead.
        await posix_fadvise(fd, 0n, BigInt(length), FADV_DONTNEED);
      } finally {
        close(fd);
      }
    } catch {
      // advice only: the sync it follows has succeeded
    }
  };
}
