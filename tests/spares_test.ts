/**
 * Spare buffers (src/spares.ts): kept for the next task by key and length, bounded, and freed
 * once a sweep finds them already kept at the previous one.
 */

import assert from "node:assert/strict";
import { SparePool, sweepSpares } from "../src/spares.ts";

const KiB = 1024;

Deno.test("a spare goes back to a taker with the same key and length, and to no other", () => {
  const pool = new SparePool<string>(4);
  assert.equal(pool.take("a", KiB), undefined, "an empty pool has nothing");
  const buffer = new Uint8Array(KiB);
  pool.give("a", buffer);
  assert.equal(pool.take("b", KiB), undefined, "another key");
  assert.equal(pool.take("a", 2 * KiB), undefined, "another length");
  assert.equal(pool.take("a", KiB), buffer, "the very buffer given");
  assert.equal(pool.take("a", KiB), undefined, "taken once");
});

Deno.test("the last spare given back is the first taken", () => {
  const pool = new SparePool(4);
  const first = new Uint8Array(KiB);
  const second = new Uint8Array(KiB);
  pool.give(null, first);
  pool.give(null, second);
  assert.equal(pool.take(null, KiB), second);
  assert.equal(pool.take(null, KiB), first);
});

Deno.test("a full pool frees what it is given, and a detached buffer is not kept", () => {
  const pool = new SparePool(2);
  const kept = [new Uint8Array(KiB), new Uint8Array(KiB)];
  for (const buffer of kept) pool.give(null, buffer);
  const extra = new Uint8Array(KiB);
  pool.give(null, extra);
  assert.equal(pool.size, 2);
  assert.equal(extra.buffer.detached, true, "freed at once");
  assert.equal(kept.every((b) => !b.buffer.detached), true);
  const other = new SparePool(2);
  const moved = new Uint8Array(KiB);
  moved.buffer.transfer();
  other.give(null, moved);
  assert.equal(other.size, 0);
});

Deno.test("a sweep frees the spares already kept at the previous sweep, and only those", () => {
  const pool = new SparePool(8);
  const old = new Uint8Array(KiB);
  const aligned = new Uint8Array(5 * KiB).subarray(KiB, 4 * KiB); // a view: its whole buffer counts
  pool.give(null, old);
  pool.give(null, aligned);
  sweepSpares(); // the first sweep they see: kept
  assert.equal(pool.size, 2);
  assert.equal(pool.bytes, 6 * KiB);
  const fresh = new Uint8Array(KiB);
  pool.give(null, fresh); // given back since that sweep
  // the pool is busy, but what sat through a whole interval goes all the same
  const reused = pool.take(null, KiB);
  assert.equal(reused, fresh);
  pool.give(null, reused!);
  const freed = sweepSpares();
  assert.equal(freed >= 6 * KiB, true, `${freed} bytes freed`);
  assert.equal(old.buffer.detached, true);
  assert.equal(aligned.buffer.detached, true);
  assert.equal(fresh.buffer.detached, false);
  assert.equal(pool.size, 1);
  assert.equal(pool.take(null, KiB), fresh);
  pool.give(null, fresh);
  sweepSpares();
  sweepSpares();
  assert.equal(pool.size, 0, "an idle pool is empty within two sweeps");
  assert.equal(fresh.buffer.detached, true);
});

Deno.test("a spare detached while kept is neither taken nor a failure of the sweep", () => {
  const pool = new SparePool(4);
  const held = new Uint8Array(KiB);
  pool.give(null, held);
  held.buffer.transfer(); // whoever still held it moved its memory away
  assert.equal(pool.take(null, KiB), undefined);
  pool.give(null, new Uint8Array(KiB));
  const other = new Uint8Array(KiB);
  pool.give(null, other);
  other.buffer.transfer();
  sweepSpares();
  assert.equal(pool.size, 1, "the detached ones are dropped, the sound one kept");
});
