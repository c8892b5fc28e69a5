/**
 * Run as `deno run --allow-ffi tests/helpers/trim_probe.ts MODE`: fixes glibc's mmap threshold
 * (as the registry does), fills 64 buffers of 1 MiB from glibc's heap and frees every other one,
 * so 32 MiB of free pages sit below buffers still in use, where glibc keeps them. Then:
 *
 * - `none`: waits 500 ms;
 * - `timer`: starts the trimmer on a 100 ms timer and waits (up to 5 s) for the resident size
 *   to fall by 20 MiB, then stops it;
 * - `call`: starts the trimmer on an hour's timer and trims once by hand, then stops it;
 * - `forget`: starts the trimmer on a 100 ms timer and never stops it (the process must still
 *   end by itself).
 *
 * Prints, as JSON, whether a trimmer ran, what a trim by hand answered, how far the resident
 * size fell, what a trim answers once the trimmer is stopped, and how many buffers are in use.
 */

import { fixMmapThreshold, startTrimming } from "../../src/malloc.ts";

const MiB = 1024 * 1024;
const mode = Deno.args[0] ?? "none";
fixMmapThreshold();
const buffers = Array.from({ length: 64 }, () => new Uint8Array(MiB).fill(1));
for (let i = 0; i < buffers.length; i += 2) buffers[i]!.buffer.transfer(0); // freed at once
const before = Deno.memoryUsage().rss;
const t0 = performance.now();
const trimmer = mode === "none" ? null : startTrimming(mode === "call" ? 3_600_000 : 100);
const byHand = mode === "call" ? await trimmer!.trim() : null;
let fell = before - Deno.memoryUsage().rss;
while (mode !== "call" && performance.now() - t0 < (mode === "timer" ? 5_000 : 500)) {
  await new Promise((resolve) => setTimeout(resolve, 50));
  fell = before - Deno.memoryUsage().rss;
  if (fell >= 20 * MiB) break;
}
if (mode !== "forget") await trimmer?.stop();
console.log(JSON.stringify({
  started: trimmer !== null,
  byHand,
  fellMiB: Math.round(fell / MiB),
  afterStop: mode === "forget" ? null : await trimmer?.trim() ?? null,
  kept: buffers.filter((b) => b.length > 0).length,
}));
