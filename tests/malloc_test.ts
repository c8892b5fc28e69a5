/**
 * glibc's mmap threshold (src/malloc.ts), seen from processes of their own: the threshold is
 * process-wide, and a process that never fixed it is the control.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { run } from "./helpers/clients.ts";

const PROBE = fileURLToPath(new URL("./helpers/malloc_probe.ts", import.meta.url));
const MODULE = new URL("../src/malloc.ts", import.meta.url).href;

/** A Deno subprocess's standard output, trimmed (it must exit 0). */
async function deno(args: string[]): Promise<string> {
  return (await run(Deno.execPath(), args, { env: { NO_COLOR: "1" } })).stdout.trim();
}

async function probe(fix: boolean): Promise<{ fixed: boolean; grown: number; freed: number }> {
  return JSON.parse(await deno(["run", "--allow-ffi", PROBE, ...(fix ? ["fix"] : [])]));
}

/** glibc 2.33 or later, with `mallinfo2`, which the probe reads (musl has neither). */
const glibc = (() => {
  if (Deno.build.os !== "linux") return false;
  try {
    Deno.dlopen("libc.so.6", { mallinfo2: { parameters: [], result: { struct: ["usize"] } } })
      .close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "without the fix, an 8 MiB buffer allocated after a 10 MiB one was freed stays in glibc's heap",
  ignore: !glibc,
  fn: async () => {
    const seen = await probe(false);
    assert.deepEqual(seen, { fixed: false, grown: 0, freed: 0 });
  },
});

Deno.test({
  name: "with the threshold fixed, the same buffer is mapped of its own and unmapped when freed",
  ignore: !glibc,
  fn: async () => {
    const seen = await probe(true);
    assert.equal(seen.fixed, true);
    assert.ok(seen.grown >= 8 * 1024 * 1024, `mapped memory grew by ${seen.grown} bytes`);
    assert.equal(seen.freed, seen.grown);
  },
});

Deno.test("without FFI permission the fix is skipped, with no prompt", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { fixMmapThreshold } from ${JSON.stringify(MODULE)};\n` +
        "console.log(fixMmapThreshold());\n",
    );
    assert.equal(await deno(["run", "--no-prompt", script]), "false");
  } finally {
    await Deno.remove(script);
  }
});
