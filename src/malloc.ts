/**
 * How the process gives freed big buffers back to the system (glibc's `malloc`, which Deno and
 * V8 use on Linux for `ArrayBuffer` memory).
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
 */

/** Blocks of this many bytes or more are mapped of their own (above a MiB: see the top). */
export const MMAP_THRESHOLD = 4 * 1024 * 1024;

/** `M_MMAP_THRESHOLD` of glibc's `<malloc.h>`. */
const M_MMAP_THRESHOLD = -3;

/**
 * Fixes glibc's mmap threshold at `bytes`. False where there is nothing to do or it cannot be
 * done: not Linux, no glibc (`libc.so.6`; musl has no such threshold), or no FFI permission
 * (asked for without a prompt).
 */
export function fixMmapThreshold(bytes = MMAP_THRESHOLD): boolean {
  if (Deno.build.os !== "linux" || typeof Deno.dlopen !== "function") return false;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return false;
  } catch {
    return false;
  }
  let lib;
  try {
    lib = Deno.dlopen("libc.so.6", { mallopt: { parameters: ["i32", "i32"], result: "i32" } });
  } catch {
    return false;
  }
  try {
    return lib.symbols.mallopt(M_MMAP_THRESHOLD, bytes) === 1;
  } finally {
    lib.close();
  }
}
