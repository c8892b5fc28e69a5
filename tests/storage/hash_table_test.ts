/**
 * `HashTable` against a `Map` given the same operations: keys of 0, near 2^52, and keys whose
 * low bits collide (the same first slot), values held in the table's 4 bytes and others (negative,
 * fractions, 2^32 - 1 and past it), through growth, `reserve`, `update`, `clear` and `empty`.
 */

import assert from "node:assert/strict";
import { HashTable } from "../../src/storage/hash_table.ts";
import { mulberry32 } from "../helpers/stress_model.ts";

/** A value: mostly one that fits the table's 4 bytes, else one that does not, or the edges. */
function valueOf(next: () => number): number {
  const roll = next();
  if (roll < 0.6) return Math.floor(next() * (2 ** 32 - 1));
  if (roll < 0.7) return [0, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, -1, 0.5][Math.floor(next() * 6)];
  if (roll < 0.8) return next() * 2 ** 32;
  return Math.floor(next() * 2 ** 53) - 2 ** 52;
}

function agree(table: HashTable, model: Map<number, number>, keys: readonly number[]): void {
  assert.equal(table.size, model.size);
  for (const key of keys) assert.equal(table.get(key), model.get(key), `key ${key}`);
}

Deno.test("a hash table answers as a Map does, through growth, room made ahead, clear and empty", () => {
  const next = mulberry32(20261203);
  // A pool of keys: 0, the largest, and groups sharing their low 32 bits.
  const keys = [0, 2 ** 52 - 1, 1, 2 ** 32, 2 ** 33];
  for (let i = 0; i < 3000; i++) {
    const low = Math.floor(next() * 2 ** 32);
    const high = Math.floor(next() * 2 ** 20);
    keys.push(high * 2 ** 32 + low);
    if (i % 10 === 0) keys.push(((high + 1) % 2 ** 20) * 2 ** 32 + low); // same low bits
  }
  const table = new HashTable();
  const model = new Map<number, number>();
  for (let op = 0; op < 40_000; op++) {
    const key = keys[Math.floor(next() * keys.length)];
    const roll = next();
    if (roll < 0.8) {
      const value = valueOf(next);
      table.set(key, value);
      model.set(key, value);
    } else if (roll < 0.9991) {
      assert.equal(table.get(key), model.get(key));
    } else if (roll < 0.9993) {
      // Room made ahead, for fewer or more entries than the table holds.
      table.reserve(Math.floor(next() * 2 * (model.size + 1)));
      agree(table, model, keys);
    } else if (roll < 0.9995) {
      // Moves values into and out of the table's 4 bytes.
      const change = (value: number) => value % 2 === 0 ? value / 2 - 7 : 2 ** 32 - 1 - value;
      table.update(change);
      for (const [k, v] of model) model.set(k, change(v));
      agree(table, model, keys);
    } else {
      if (roll < 0.9999) table.clear();
      else table.empty();
      model.clear();
    }
    assert.equal(table.size, model.size);
  }
  agree(table, model, keys);
  assert.ok(model.size > 1000, `the run ended with ${model.size} entries`);
  assert.equal(table.maxValue(), Math.max(...model.values()));
});

Deno.test("update changes every value in place, and only the values", () => {
  const table = new HashTable();
  const model = new Map<number, number>();
  for (let i = 0; i < 3000; i++) {
    const key = i * 7919 * 2 ** 20 + i;
    table.set(key, i + 0.5);
    model.set(key, i + 0.5);
  }
  table.update(Math.floor);
  for (const [key, value] of model) model.set(key, Math.floor(value));
  agree(table, model, [...model.keys(), 1, 2, 3]);
});
