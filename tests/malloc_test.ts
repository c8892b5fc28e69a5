/**
 * glibc's mmap threshold and the trimmer (src/malloc.ts), seen from processes of their own:
 * both are process-wide, and a process that never fixed or trimmed is the control.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { run } from "./helpers/clients.ts";

const PROBE = fileURLToPath(new URL("./helpers/malloc_probe.ts", import.meta.url));
const TRIM_PROBE = fileURLToPath(new URL("./helpers/trim_probe.ts", import.meta.url));
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

interface TrimSeen {
  started: boolean;
  byHand: boolean | null;
  fellMiB: number;
  afterStop: boolean | null;
  kept: number;
}

/** The probe's findings; it must end by itself within 20 s. */
async function trimProbe(mode: "none" | "timer" | "call" | "forget"): Promise<TrimSeen> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", TRIM_PROBE, mode],
    env: { NO_COLOR: "1" },
    stderr: "inherit",
    signal: AbortSignal.timeout(20_000),
  }).output();
  assert.equal(out.code, 0, `the probe (${mode}) ended with ${out.code} (${out.signal})`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test({
  name: "untrimmed, 32 MiB freed below buffers in use stay resident",
  ignore: !glibc,
  fn: async () => {
    const seen = await trimProbe("none");
    assert.equal(seen.started, false);
    assert.ok(seen.fellMiB < 4, `the resident size fell by ${seen.fellMiB} MiB`);
    assert.equal(seen.kept, 32);
  },
});

Deno.test({
  name: "the trimmer gives those pages back on its timer, and trims nothing once stopped",
  ignore: !glibc,
  fn: async () => {
    const seen = await trimProbe("timer");
    assert.equal(seen.started, true);
    assert.ok(seen.fellMiB >= 20, `the resident size fell by ${seen.fellMiB} MiB`);
    assert.equal(seen.afterStop, false);
    assert.equal(seen.kept, 32, "the buffers in use are untouched");
  },
});

Deno.test({
  name: "a trim by hand gives them back at once and says so",
  ignore: !glibc,
  fn: async () => {
    const seen = await trimProbe("call");
    assert.equal(seen.byHand, true);
    assert.ok(seen.fellMiB >= 20, `the resident size fell by ${seen.fellMiB} MiB`);
    assert.equal(seen.kept, 32);
  },
});

Deno.test({
  name: "a trimmer never stopped does not keep the process alive",
  ignore: !glibc,
  fn: async () => {
    const seen = await trimProbe("forget"); // ends, or fails on the 20 s limit
    assert.equal(seen.started, true);
  },
});

/** What `console.log(call)` prints in a process without FFI permission, run with no prompt. */
async function printedWithoutFfi(name: string, call: string): Promise<string> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { ${name} } from ${JSON.stringify(MODULE)};\nconsole.log(${call});\n`,
    );
    return await deno(["run", "--no-prompt", script]);
  } finally {
    await Deno.remove(script);
  }
}

Deno.test("without FFI permission the fix is skipped, with no prompt", async () => {
  assert.equal(await printedWithoutFfi("fixMmapThreshold", "fixMmapThreshold()"), "false");
});

Deno.test("without FFI permission there is no trimmer, and no prompt", async () => {
  assert.equal(await printedWithoutFfi("startTrimming", "startTrimming()"), "null");
});
