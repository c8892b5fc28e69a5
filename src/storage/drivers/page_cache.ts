/**
 * Drops a file's clean pages from the kernel's page cache: `posix_fadvise(POSIX_FADV_DONTNEED)`
 * from the C library through FFI (Linux with glibc or musl, `--allow-ffi`, which `deno task
 * start` grants). Without the permission, or elsewhere, there is no dropper and nothing
 * changes; the permission is never asked for, so no prompt appears.
 *
 * Why: the filesystem driver writes an upload's bytes once and never reads them back (the
 * digest is computed as they arrive). Left in the cache, every pushed GiB takes a GiB of fresh
 * pages, and on a virtual machine whose free memory goes back to the host (virtio-balloon free
 * page reporting), each fresh page costs a fault in the host on first touch: writing a GiB into
 * the page cache took 1.2–2.1 s of system time there, against 0.5 s when the pages synced so
 * far are dropped every 64 MiB and reused. Dropping them also keeps a big push from evicting
 * what pulls read.
 */

/** Drops the clean cached pages of the file at `path`; never throws (it is advice). */
export type PageDropper = (path: string) => Promise<void>;

/** `O_RDONLY | O_CLOEXEC` on Linux (x86_64, aarch64). */
const OPEN_FLAGS = 0o2000000;
/** `POSIX_FADV_DONTNEED` on Linux (x86_64, aarch64). */
const FADV_DONTNEED = 4;

let dropper: PageDropper | null | undefined;

/** This process's dropper, or null when it has none (chosen once: the C library stays loaded). */
export function pageDropper(): PageDropper | null {
  if (dropper === undefined) dropper = libcDropper();
  return dropper;
}

function libcDropper(): PageDropper | null {
  const arch = Deno.build.arch;
  if (Deno.build.os !== "linux" || (arch !== "x86_64" && arch !== "aarch64")) return null;
  if (typeof Deno.dlopen !== "function") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
  } catch {
    return null;
  }
  const symbols = {
    open: { parameters: ["buffer", "i32"], result: "i32", nonblocking: true },
    posix_fadvise: {
      parameters: ["i32", "i64", "i64", "i32"],
      result: "i32",
      nonblocking: true,
    },
    close: { parameters: ["i32"], result: "i32" },
  } as const;
  let lib;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      lib = Deno.dlopen(name, symbols);
      break;
    } catch {
      // try the next name
    }
  }
  if (!lib) return null;
  const { open, posix_fadvise, close } = lib.symbols;
  const encoder = new TextEncoder();
  return async (path) => {
    const fd = await open(encoder.encode(`${path}\0`), OPEN_FLAGS);
    if (fd < 0) return;
    try {
      // offset 0, length 0: the whole file. Dirty pages are not dropped (the kernel starts
      // writing them back instead), so only what a sync made durable leaves the cache.
      await posix_fadvise(fd, 0n, 0n, FADV_DONTNEED);
    } finally {
      close(fd);
    }
  };
}
