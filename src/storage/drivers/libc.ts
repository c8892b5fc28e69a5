/**
 * glibc (`libc.so.6`) through FFI, only when FFI is already permitted, so that no permission
 * prompt ever appears: for the filesystem driver's page-cache advice (only on
 * Linux on x86_64 or aarch64, whose flag values those modules use), and for `src/malloc.ts`.
 */

/** glibc with the symbols asked for, or null off Linux, off glibc or without FFI. */
export function openGlibc<const S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S> | null {
  if (Deno.build.os !== "linux" || typeof Deno.dlopen !== "function") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    return Deno.dlopen("libc.so.6", symbols);
  } catch {
    return null; // not glibc
  }
}

/** The symbols of glibc asked for, or null off glibc, off those systems or without FFI. */
export function libcSymbols<const S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | null {
  const arch = Deno.build.arch;
  if (arch !== "x86_64" && arch !== "aarch64") return null;
  return openGlibc(symbols)?.symbols ?? null;
}
