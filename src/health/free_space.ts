/**
 * Free space of the file system holding a path, for `/readyz`: Node's `statfs` (needs
 * `--allow-sys`, or `--allow-sys=statfs`), else `statvfs` from the C library through FFI
 * (`--allow-ffi`, which `deno task start` grants; 64-bit Linux with glibc's layout). Neither
 * is used without its permission already granted, so no permission prompt ever appears.
 */

import { statfs } from "node:fs/promises";

/** Bytes available to an unprivileged user on the file system of `path`; null: unknown. */
export type FreeSpace = (path: string) => Promise<number | null>;

let meter: FreeSpace | null | undefined;

/**
 * The best way this process has to measure free space, or null when it has none (chosen
 * once per process: the C library stays loaded).
 */
export function freeSpaceMeter(): FreeSpace | null {
  if (meter !== undefined) return meter;
  if (granted({ name: "sys", kind: "statfs" })) meter = nodeStatfs;
  else if (granted({ name: "ffi" })) meter = libcStatvfs();
  else meter = null;
  return meter;
}

function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/** `statfs` of `node:fs`: `bavail × bsize`. */
export async function nodeStatfs(path: string): Promise<number | null> {
  try {
    const s = await statfs(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/** `struct statvfs` on 64-bit Linux (glibc, musl): `f_frsize` at 8, `f_bavail` at 32. */
const STATVFS_SIZE = 256;
const FRSIZE_AT = 8;
const BAVAIL_AT = 32;

/** `statvfs(3)` through FFI: `f_bavail × f_frsize`; null when unavailable here. */
export function libcStatvfs(): FreeSpace | null {
  const arch = Deno.build.arch;
  if (Deno.build.os !== "linux" || (arch !== "x86_64" && arch !== "aarch64")) return null;
  let lib;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      lib = Deno.dlopen(
        name,
        {
          statvfs: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
        } as const,
      );
      break;
    } catch {
      // try the next name
    }
  }
  if (!lib) return null;
  const statvfs = lib.symbols.statvfs;
  const encoder = new TextEncoder();
  return async (path) => {
    const out = new Uint8Array(STATVFS_SIZE);
    const cPath = encoder.encode(`${path}\0`);
    if ((await statvfs(cPath, out)) !== 0) return null;
    const view = new DataView(out.buffer);
    const frsize = Number(view.getBigUint64(FRSIZE_AT, true));
    const bavail = Number(view.getBigUint64(BAVAIL_AT, true));
    return frsize * bavail;
  };
}
