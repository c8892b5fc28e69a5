/**
 * The activity tracker: touches and pulls live in memory, reach the journal in batches of at
 * most 10,000 lines only when something changed, come back after a restart, and compaction
 * keeps only what is inside the window.
 */

import assert from "node:assert/strict";
import { Activity } from "../../src/storage/activity.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { ACTIVITY_AREA } from "../../src/storage/keys.ts";
import type { Digest } from "../../src/types/oci.ts";

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}` as Digest;

Deno.test("touches and pulls are flushed once and read back after a restart", async () => {
  let now = 1_000_000;
  const driver = new MemoryDriver(() => now);
  const activity = new Activity(driver, { now: () => now });
  activity.touch(digest(1));
  now += 10;
  activity.touch(digest(1));
  activity.pulled("org/app", digest(2));
  assert.equal(activity.lastTouch(digest(1)), 1_000_010);
  assert.deepEqual(await driver.list(ACTIVITY_AREA), [], "nothing written on the hot path");
  await activity.flush();
  assert.equal((await driver.list(ACTIVITY_AREA)).length, 1);
  await activity.flush();
  assert.equal((await driver.list(ACTIVITY_AREA)).length, 1, "no change, no batch");
  const restarted = new Activity(driver, { now: () => now });
  await restarted.load();
  assert.equal(restarted.lastTouch(digest(1)), 1_000_010);
  assert.equal(restarted.lastPull("org/app", digest(2)), 1_000_010);
  assert.equal(restarted.lastPull("org/other", digest(2)), 0);
  assert.equal(restarted.lastTouch(digest(3)), 0);
});

Deno.test("batches hold at most 10,000 lines", async () => {
  const driver = new MemoryDriver();
  const activity = new Activity(driver);
  for (let i = 0; i < 25_000; i++) activity.touch(digest(i));
  await activity.flush();
  assert.equal((await driver.list(ACTIVITY_AREA)).length, 3);
  assert.equal(activity.batchesSinceCompaction, 3);
});

Deno.test("compaction keeps what is inside the window and deletes the old batches", async () => {
  let now = 5_000_000;
  const driver = new MemoryDriver(() => now);
  const activity = new Activity(driver, { now: () => now });
  activity.touch(digest(1));
  await activity.flush();
  now += 1000;
  activity.touch(digest(2));
  activity.pulled("org/app", digest(1));
  await activity.flush();
  now += 1000;
  const before = await driver.list(ACTIVITY_AREA);
  assert.equal(before.length, 2);
  assert.equal(await activity.compact(1500), 2);
  const after = await driver.list(ACTIVITY_AREA);
  assert.equal(after.length, 1);
  assert.ok(!before.includes(after[0]));
  assert.equal(activity.batchesSinceCompaction, 0);
  const restarted = new Activity(driver, { now: () => now });
  await restarted.load();
  assert.equal(restarted.lastTouch(digest(1)), 0, "outside the window: forgotten");
  assert.equal(restarted.lastTouch(digest(2)), 5_001_000);
  assert.equal(restarted.lastPull("org/app", digest(1)), 5_001_000);
});
