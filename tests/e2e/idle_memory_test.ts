/**
 * Memory left after a burst: the registry frees the spare upload and reply buffers that eight
 * parallel pushes and pulls leave (src/spares.ts) once they sit unused, and glibc's heap gives
 * the pages back (src/malloc.ts). Seen from outside, in the process's resident memory.
 */

import assert from "node:assert/strict";
import {
  pushBlob,
  randomBytes,
  sampleRss,
  sha256Digest,
  spawnRegistry,
} from "../helpers/registry.ts";

const MiB = 1024 * 1024;
const PARALLEL = 8;
/** Eight pushes keep 16 upload buffers of a MiB, eight pulls up to 8 more. */
const MIN_FALL_MIB = 16;

/** glibc, whose trim gives freed pages back (musl keeps them). */
const glibc = (() => {
  if (Deno.build.os !== "linux") return false;
  try {
    Deno.dlopen("libc.so.6", { malloc_trim: { parameters: ["usize"], result: "i32" } }).close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "after parallel pushes and pulls, resident memory falls back within seconds of idling",
  ignore: !glibc,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "registry-idle-memory-" });
    try {
      await using registry = await spawnRegistry(dir);
      const reg = { fetch: (path: string, init?: RequestInit) => fetch(registry.url + path, init) };
      const blobs = Array.from({ length: PARALLEL }, () => randomBytes(16 * MiB));
      // The peak over the whole burst: a sweep may already free the pushes' spares while the
      // pulls run (2–4 s after they were given back), so a sample taken at the end may miss them.
      const sampler = sampleRss(registry);
      let busy: number;
      try {
        const digests = await Promise.all(blobs.map((b, i) => pushBlob(reg, `idle/r${i}`, b)));
        await Promise.all(digests.map(async (digest, i) => {
          const response = await reg.fetch(`/v2/idle/r${i}/blobs/${digest}`);
          assert.equal(response.status, 200);
          const body = new Uint8Array(await response.arrayBuffer());
          assert.equal(await sha256Digest(body), digest, "the bytes pulled are the bytes pushed");
        }));
      } finally {
        busy = await sampler.stop();
      }
      let now = busy;
      const deadline = Date.now() + 15_000;
      while (busy - now < MIN_FALL_MIB * 1024 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        now = await registry.rssKiB();
      }
      assert.ok(
        busy - now >= MIN_FALL_MIB * 1024,
        `resident memory ${(busy / 1024).toFixed(1)} MiB at most in the burst, ${
          (now / 1024).toFixed(1)
        } MiB 15 s later (expected at least ${MIN_FALL_MIB} MiB less)`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
