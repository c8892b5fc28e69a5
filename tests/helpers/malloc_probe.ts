/**
 * Run as `deno run --allow-ffi tests/helpers/malloc_probe.ts [fix]`: frees a 10 MiB buffer (as a
 * replica frees its first upload part), fixes glibc's mmap threshold when asked (`fix`), then
 * allocates an 8 MiB buffer and frees it. Prints, as JSON, whether the fix took and how much
 * glibc's mapped memory (`mallinfo2().hblkhd`) grew with the buffer and with its freeing.
 */

import { fixMmapThreshold } from "../../src/malloc.ts";

const USIZE = "usize" as const;
const libc = Deno.dlopen("libc.so.6", {
  mallinfo2: { parameters: [], result: { struct: Array(10).fill(USIZE) } },
});
/** `hblkhd`, the fifth `size_t` of `struct mallinfo2`: bytes in mapped blocks. */
const mapped = () => {
  const info = libc.symbols.mallinfo2() as Uint8Array<ArrayBuffer>;
  return Number(new DataView(info.buffer, info.byteOffset).getBigUint64(4 * 8, true));
};

new Uint8Array(10 * 1024 * 1024).buffer.transfer(0);
const fixed = Deno.args[0] === "fix" ? fixMmapThreshold() : false;
const before = mapped();
const block = new Uint8Array(8 * 1024 * 1024);
const grown = mapped() - before;
block.buffer.transfer(0);
const freed = before + grown - mapped();
console.log(JSON.stringify({ fixed, grown, freed }));
