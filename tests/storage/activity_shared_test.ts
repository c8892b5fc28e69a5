/**
 * The activity journal shared by replicas (the scale-out mode): each replica writes its own
 * batches (never the same key, even at the same millisecond), a refresh reads every replica's,
 * and a compaction by one replica, or by two at once, loses none of the others' entries.
 */

import assert from "node:assert/strict";
import { Activity } from "../../src/storage/activity.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { ACTIVITY_AREA, activityTimeOf } from "../../src/storage/keys.ts";
import type { Digest } from "../../src/types/oci.ts";

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}` as Digest;

Deno.test("replicas write their own batches at the same instant; a refresh reads them all", async () => {
  const now = 5_000_000;
  const driver = new MemoryDriver(() => now);
  const a = new Activity(driver, { now: () => now, shared: true });
  const b = new Activity(driver, { now: () => now, shared: true });
  a.touch(digest(1));
  b.touch(digest(2));
  b.pulled("org/app", digest(3));
  await Promise.all([a.flush(), b.flush()]);
  const names = await driver.list(ACTIVITY_AREA);
  assert.equal(names.length, 2, `two batches, not one written over: ${names}`);
  for (const name of names) assert.equal(activityTimeOf(name), now);
  assert.equal(a.lastTouch(digest(2)), 0, "not before a refresh");
  await a.refresh();
  assert.equal(a.lastTouch(digest(2)), now);
  assert.equal(a.lastPull("org/app", digest(3)), now);
  // Alone (not shared), a refresh reads the journal once; after that, memory is the truth.
  const single = new Activity(driver, { now: () => now });
  await single.refresh();
  assert.equal(single.lastTouch(digest(2)), now);
  b.touch(digest(4));
  await b.flush();
  await single.refresh();
  assert.equal(single.lastTouch(digest(4)), 0, "not read again");
});

Deno.test("compactions by two replicas at once keep every replica's entries", async () => {
  let now = 9_000_000;
  const driver = new MemoryDriver(() => now);
  const a = new Activity(driver, { now: () => now, shared: true });
  const b = new Activity(driver, { now: () => now, shared: true });
  const c = new Activity(driver, { now: () => now, shared: true });
  a.touch(digest(1));
  b.touch(digest(2));
  c.pulled("org/app", digest(3));
  await Promise.all([a.flush(), b.flush(), c.flush()]);
  now += 1000;
  const deleted = await Promise.all([a.compact(60_000), b.compact(60_000)]);
  assert.ok(deleted.every((n) => n >= 3), String(deleted));
  const fresh = new Activity(driver, { now: () => now, shared: true });
  await fresh.load();
  assert.equal(fresh.lastTouch(digest(1)), 9_000_000);
  assert.equal(fresh.lastTouch(digest(2)), 9_000_000);
  assert.equal(fresh.lastPull("org/app", digest(3)), 9_000_000);
  // and what is older than the window goes
  now += 120_000;
  await fresh.compact(60_000);
  const after = new Activity(driver, { now: () => now, shared: true });
  await after.load();
  assert.equal(after.lastTouch(digest(1)), 0);
});
