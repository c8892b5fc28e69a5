/**
 * The pieces an S3 writer keeps its pending upload bytes in past the memory budget: the budget
 * grants what fits (or what is forced) and takes back what is given, keeps buffers given back
 * for reuse only while they and the writers' bytes fit in it, and a spill file keeps
 * bytes in order, reads them back as a sized body (as of when the body was taken), leaves no
 * name in its directory and refuses work once closed.
 */

import assert from "node:assert/strict";
import { bufferSize, MemoryBudget, SpillFile } from "../../src/storage/drivers/s3_spill.ts";

Deno.test("s3 spill: the budget grants what fits or is forced, and counts what is given back", () => {
  const budget = new MemoryBudget(100);
  assert.equal(budget.take(60), true);
  assert.equal(budget.take(50), false);
  assert.equal(budget.used, 60);
  assert.equal(budget.take(40), true);
  assert.equal(budget.take(1), false);
  assert.equal(budget.take(30, true), true);
  assert.equal(budget.used, 130);
  budget.give(130);
  assert.equal(budget.used, 0);
  assert.equal(new MemoryBudget(0).take(1), false);
});

Deno.test("s3 spill: buffers given back are reused while they fit beside the writers' bytes, else freed", () => {
  const KiB = 1024;
  const budget = new MemoryBudget(256 * KiB);
  const a = budget.claim(128 * KiB)!;
  a.fill(7);
  budget.give(128 * KiB);
  budget.keep(a);
  assert.equal(budget.kept, 128 * KiB);
  assert.equal(budget.keptSize(64 * KiB, 256 * KiB), 128 * KiB);
  assert.equal(budget.keptSize(256 * KiB, 256 * KiB), null);
  // The next writer asking for that size gets that very buffer (its pages already touched),
  // even when the budget then has no room for both.
  const b = budget.claim(128 * KiB, 200 * KiB)!;
  assert.equal(b.buffer, a.buffer);
  assert.equal(budget.kept, 0);
  assert.equal(budget.used, 200 * KiB);
  // Refused: nothing taken, and a kept buffer stays kept.
  budget.give(200 * KiB);
  budget.keep(b);
  assert.equal(budget.claim(128 * KiB, 300 * KiB), null);
  assert.equal(budget.kept, 128 * KiB);
  assert.equal(budget.used, 0);
  // Another size is a new buffer; one given back past the limit is freed (detached) at once.
  const c = budget.claim(64 * KiB)!;
  assert.notEqual(c.buffer, a.buffer);
  budget.take(64 * KiB);
  budget.keep(new Uint8Array(128 * KiB)); // 128 used + 128 kept: no room for it
  assert.equal(budget.kept, 128 * KiB);
  budget.give(128 * KiB);
  budget.keep(c);
  assert.equal(budget.kept, 192 * KiB);
  // Writers' bytes taken beyond what the kept buffers leave free them, the largest first.
  assert.equal(budget.take(100 * KiB), true);
  assert.equal(budget.kept, 64 * KiB);
  assert.equal(b.buffer.byteLength, 0);
  assert.equal(c.buffer.byteLength, 64 * KiB);
  // A view of a larger buffer is never kept.
  budget.give(100 * KiB);
  budget.keep(new Uint8Array(256 * KiB).subarray(0, 64 * KiB));
  assert.equal(budget.kept, 64 * KiB);
  // Sizes: powers of two from 64 KiB, at most the part size.
  assert.deepEqual(
    [1, 64 * KiB, 64 * KiB + 1, 3000 * KiB, 9 * 1024 * KiB].map((n) =>
      bufferSize(n, 10 * 1024 * KiB)
    ),
    [64 * KiB, 64 * KiB, 128 * KiB, 4096 * KiB, 10 * 1024 * KiB],
  );
});

Deno.test("s3 spill: a spill file reads back what was appended, as of its body, and leaves no name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = await SpillFile.open(dir);
    assert.deepEqual([...Deno.readDirSync(dir)], []); // unlinked at once
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 7 + (i >> 10)) % 256);
    await file.append(bytes.subarray(0, 100_000));
    await file.append(bytes.subarray(100_000, 250_000));
    const body = file.body();
    await file.append(bytes.subarray(250_000)); // after the body was taken: not in it
    assert.equal(body.size, 250_000);
    assert.equal(file.size, 300_000);
    const read = async (source: typeof body, piece: number) => {
      const out = new Uint8Array(source.size);
      for (let at = 0; at < source.size;) {
        const n = await source.readAt(at, out.subarray(at, Math.min(source.size, at + piece)));
        assert.ok(n > 0);
        at += n;
      }
      assert.equal(await source.readAt(source.size, new Uint8Array(10)), 0);
      return out;
    };
    assert.deepEqual(await read(body, 65_536), bytes.subarray(0, 250_000));
    // reads of two bodies at once do not mix their positions
    const [a, b] = await Promise.all([read(body, 10_000), read(file.body(), 7_777)]);
    assert.deepEqual(a, bytes.subarray(0, 250_000));
    assert.deepEqual(b, bytes);
    file.close();
    await assert.rejects(file.append(bytes), /closed/);
    await assert.rejects(body.readAt(0, new Uint8Array(1)), /closed/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
