import assert from "node:assert/strict";
import { BoundedMap, CACHE_BUDGETS } from "../../src/storage/cache.ts";

Deno.test("a bounded map counts its bytes through set, overwrite, delete and grow", () => {
  const map = new BoundedMap<string, string[]>(10_000, (v) => v.join("").length);
  map.set("a", ["xx"]);
  assert.equal(map.bytes, 64 + 1 + 2);
  map.set("a", ["xxxx"]); // an overwrite replaces the old value's cost
  assert.equal(map.bytes, 64 + 1 + 4);
  map.get("a")!.push("yyy");
  map.grow(3);
  assert.equal(map.bytes, 64 + 1 + 7);
  map.delete("a"); // the cost removed is the value's cost now, grown included
  assert.equal(map.bytes, 0);
  assert.equal(map.size, 0);
});

Deno.test("a bounded map empties itself rather than pass its budget", () => {
  const map = new BoundedMap<string, number>(1_000, () => 8);
  for (let i = 0; i < 12; i++) map.set(`key-${String(i).padStart(2, "0")}`, i); // 78 bytes each
  assert.equal(map.size, 12);
  assert.ok(map.bytes <= 1_000);
  map.set("key-12", 12);
  assert.equal(map.size, 1, "emptied, then the new entry");
  assert.equal(map.get("key-12"), 12);
  assert.equal(map.bytes, 78);
  map.grow(10_000);
  assert.equal(map.size, 0, "a value grown past the budget empties the map");
  assert.equal(map.bytes, 0);
});

Deno.test("the caches' budgets add up to at most 12 MiB", () => {
  const total = Object.values(CACHE_BUDGETS).reduce((a, b) => a + b, 0);
  assert.ok(total <= 12 * 1024 * 1024, `${total}`);
});
