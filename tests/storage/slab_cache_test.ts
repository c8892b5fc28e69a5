/**
 * `SlabCache`: what it answers is always the bytes stored under that key, through many
 * turns of its slabs; the newest entries stay, the oldest go first; a view handed out keeps
 * its bytes after the cache has moved on; entries longer than `largest` are not kept.
 */

import assert from "node:assert/strict";
import { SlabCache } from "../../src/storage/slab_cache.ts";
import { mulberry32 } from "../helpers/stress_model.ts";

function bytesOf(next: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(next() * 256);
  return bytes;
}

Deno.test("a slab cache answers a key with its own bytes or not at all, through many turns", () => {
  const next = mulberry32(20261203);
  const cache = new SlabCache<string>(16 * 1024);
  const model = new Map<string, Uint8Array>();
  let hits = 0;
  for (let i = 0; i < 5000; i++) {
    const key = `k${Math.floor(next() * 400)}`;
    if (!model.has(key)) model.set(key, bytesOf(next, Math.floor(next() * 700)));
    cache.set(key, model.get(key)!);
    for (let probe = 0; probe < 4; probe++) {
      const other = `k${Math.floor(next() * 400)}`;
      const got = cache.get(other);
      if (got === undefined) continue;
      hits++;
      assert.deepEqual(got, model.get(other), `entry ${i}, key ${other}`);
    }
    assert.deepEqual(cache.get(key), model.get(key), `the entry just set, ${key}`);
  }
  assert.ok(hits > 1000, `${hits} hits`);
});

Deno.test("a slab cache keeps its newest entries and forgets the oldest first", () => {
  // 4 slabs of 1,024 bytes: 9 entries of 100 bytes (104 with the length) in each.
  const cache = new SlabCache<number>(4096);
  const entry = (i: number) => new Uint8Array(100).fill(i % 256);
  for (let i = 0; i < 36; i++) cache.set(i, entry(i));
  assert.equal(cache.size, 36);
  for (let i = 0; i < 36; i++) assert.deepEqual(cache.get(i), entry(i));
  cache.set(36, entry(36));
  // the first slab (entries 0-8) made room for the 37th
  assert.equal(cache.size, 28);
  for (let i = 0; i < 9; i++) assert.equal(cache.get(i), undefined, `entry ${i}`);
  for (let i = 9; i <= 36; i++) assert.deepEqual(cache.get(i), entry(i), `entry ${i}`);
  for (let i = 37; i < 1000; i++) cache.set(i, entry(i));
  assert.ok(cache.size >= 27 && cache.size <= 36, `${cache.size} entries`);
  for (let i = 1000 - 27; i < 1000; i++) assert.deepEqual(cache.get(i), entry(i), `entry ${i}`);
  assert.equal(cache.get(1000 - 37), undefined);
});

Deno.test("a view handed out keeps its bytes after the cache has moved on", () => {
  const cache = new SlabCache<number>(4096);
  const first = new Uint8Array(200).fill(7);
  cache.set(0, first);
  const view = cache.get(0)!;
  for (let i = 1; i < 500; i++) cache.set(i, new Uint8Array(200).fill(i % 256));
  assert.equal(cache.get(0), undefined);
  assert.deepEqual(view, first);
});

Deno.test("a slab cache keeps nothing longer than its largest, nor a key twice", () => {
  const cache = new SlabCache<string>(4096);
  assert.equal(cache.largest, 252);
  cache.set("long", new Uint8Array(253));
  assert.equal(cache.get("long"), undefined);
  cache.set("edge", new Uint8Array(252).fill(1));
  assert.equal(cache.get("edge")?.length, 252);
  cache.set("edge", new Uint8Array(10).fill(2));
  assert.deepEqual(cache.get("edge"), new Uint8Array(252).fill(1));
  cache.set("empty", new Uint8Array(0));
  assert.deepEqual(cache.get("empty"), new Uint8Array(0));
  assert.equal(cache.size, 2);
  assert.throws(() => new SlabCache(32), RangeError);
  assert.throws(() => new SlabCache(2 ** 31), RangeError);
});
