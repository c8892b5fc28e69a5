/**
 * The benchmark's "push beside a busy disk" ceiling (bench/beside_disk.ts): real curl pushes
 * into a real registry on tmpfs, alone and beside real `dd` direct writes, and nothing left
 * behind.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pushBesideDisk, sharedTmpfs } from "../../bench/beside_disk.ts";

const REPO_ROOT = join(import.meta.dirname!, "..", "..");
const SIZE = 8 * 1024 * 1024;

async function ours(tmpfs: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(tmpfs)) {
    if (e.name.startsWith("bench-beside-disk-")) names.push(e.name);
  }
  return names.sort();
}

Deno.test("a push beside a busy disk: every run measured, the tmpfs root removed", async (t) => {
  const tmpfs = await sharedTmpfs();
  if (tmpfs === null) {
    await t.step({ name: "no tmpfs at /dev/shm on this machine", ignore: true, fn: () => {} });
    return;
  }
  const work = await Deno.makeTempDir({ prefix: "beside-disk-test-" });
  try {
    const file = join(work, "blob.bin");
    const bytes = new Uint8Array(SIZE);
    for (let o = 0; o < SIZE; o += 65536) crypto.getRandomValues(bytes.subarray(o, o + 65536));
    await Deno.writeFile(file, bytes);
    const hex = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const before = await ours(tmpfs);
    const options = {
      repoRoot: REPO_ROOT,
      tmpfs,
      logDir: work,
      diskDir: work,
      file,
      size: SIZE,
      ddMiB: 16,
      runs: 2,
    };

    const result = await pushBesideDisk({ ...options, digest: `sha256:${hex}` });
    assert.equal(result.alone.length, 2);
    assert.equal(result.besideDd.length, 2);
    assert.ok(result.dd.length >= 2, `dd ran ${result.dd.length} times`);
    for (const rate of [...result.alone, ...result.besideDd, ...result.dd]) {
      assert.ok(Number.isFinite(rate) && rate > 0, `rate ${rate}`);
    }
    assert.deepEqual(await ours(tmpfs), before);
    // dd's file is gone from the disk folder too
    assert.deepEqual((await Array.fromAsync(Deno.readDir(work))).map((e) => e.name).sort(), [
      "blob.bin",
      "ours-beside-disk.log",
    ]);

    // a push the registry refuses is an error, not a rate
    const wrong = `sha256:${hex.replace(/^./, (c) => c === "0" ? "1" : "0")}`;
    await assert.rejects(
      pushBesideDisk({ ...options, digest: wrong, runs: 1 }),
      /curl -T PUT: HTTP 400/,
    );
    assert.deepEqual(await ours(tmpfs), before);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
