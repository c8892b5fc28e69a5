/**
 * Writes that go around the kernel's page cache: `open(O_DIRECT)` and `pwrite` from glibc
 * (`libc.so.6`) through FFI, on Linux on x86_64 or aarch64 with `--allow-ffi` (which
 * `deno task start` grants). Elsewhere, or without the permission, there is none and the
 * filesystem driver writes through the page cache as always; the permission is never asked
 * for, so no prompt appears.
 *
 * Why: an upload's bytes are written once and not read back (the digest is computed as they
 * arrive), so caching them buys nothing, and copying them into the cache is most of what a
 * write costs. Writing 1 GiB in 1 MiB pieces took 0.6–0.8 s of system time through the cache
 * (with a flush and a drop of the flushed pages every 64 MiB) and 0.1–0.2 s with `O_DIRECT`,
 * on the two cores that also receive and hash the bytes.
 *
 * A direct write must start at a file offset, and come from a memory address, that are
 * multiples of the device's block, and its length must be one too; `BLOCK` (4096) is a
 * multiple of every usual logical block size. Whoever writes checks `isAligned` and writes
 * anything else through the cache.
 */

import { libcSymbols } from "./libc.ts";

/** The alignment of offsets, lengths and addresses of direct writes. */
export const BLOCK = 4096;

/** Direct writes, as this process can make them. */
export interface DirectIo {
  /**
   * Opens the existing regular file at `path` for direct writes: its descriptor, or null when
   * the file system refuses direct I/O (tmpfs before Linux 6.6), the path is a symbolic link,
   * a FIFO or anything but a regular file, or it is not the
   * file `expected` describes (its device and inode, as `Deno.FsFile.stat` gives them).
   */
  open(path: string, expected: Deno.FileInfo): Promise<number | null>;
  /** Writes `bytes` at `offset`: the count written, or -1 when the write failed. */
  write(fd: number, bytes: Uint8Array, offset: number): Promise<number>;
  /** Closes a descriptor `open` gave. */
  close(fd: number): void;
  /** Whether `bytes` starts at an address that is a multiple of `BLOCK`. */
  isAligned(bytes: Uint8Array): boolean;
  /** A zeroed buffer of `size` bytes starting at an address that is a multiple of `BLOCK`. */
  allocate(size: number): Uint8Array<ArrayBuffer>;
}

const arch = Deno.build.arch;
/**
 * `O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_DIRECT` on Linux (the last two differ on
 * aarch64). `O_NONBLOCK` keeps a FIFO planted at the path from holding the open; it changes
 * nothing for a regular file.
 */
const OPEN_FLAGS = 0o1 | 0o2000000 | 0o4000 |
  (arch === "aarch64" ? 0o100000 | 0o200000 : 0o400000 | 0o40000);

let io: DirectIo | null | undefined;

/** This process's direct writes, or null when it has none (chosen once). */
export function directIo(): DirectIo | null {
  if (io === undefined) io = libcDirectIo();
  return io;
}

function libcDirectIo(): DirectIo | null {
  try {
    // the identity check reads /proc/self/fd; without the permission it would prompt
    const proc = Deno.permissions.querySync({ name: "read", path: "/proc/self/fd" });
    if (proc.state !== "granted") return null;
  } catch {
    return null;
  }
  const libc = libcSymbols({
    open: { parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
    pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
    close: { parameters: ["i32"], result: "i32" },
  });
  if (libc === null) return null;
  const { open, pwrite, close } = libc;
  const encoder = new TextEncoder();
  const address = (bytes: Uint8Array) =>
    Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
  return {
    async open(path, expected) {
      const fd = await open(encoder.encode(`${path}\0`), OPEN_FLAGS);
      if (fd < 0) return null;
      try {
        // the path may have been replaced since `expected` was opened: write only to that file
        const info = await Deno.stat(`/proc/self/fd/${fd}`);
        if (info.isFile && info.dev === expected.dev && info.ino === expected.ino) return fd;
      } catch {
        // no /proc: not the Linux this module expects
      }
      close(fd);
      return null;
    },
    async write(fd, bytes, offset) {
      return Number(await pwrite(fd, bytes, BigInt(bytes.length), BigInt(offset)));
    },
    close(fd) {
      close(fd);
    },
    isAligned(bytes) {
      return bytes.length === 0 || address(bytes) % BLOCK === 0;
    },
    allocate(size) {
      const whole = new Uint8Array(size + BLOCK);
      const skip = (BLOCK - (address(whole) % BLOCK)) % BLOCK;
      return whole.subarray(skip, skip + size);
    },
  };
}
