/**
 * The activity tracker: touches and pulls live in memory, reach the journal in batches of at
 * most 10,000 lines only when something changed, come back after a restart, and compaction
 * keeps only what is inside the window.
 */

import assert from "node:assert/strict";
import { Activity, keyHash, MAX_ENTRIES } from "../../src/storage/activity.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { ACTIVITY_AREA } from "../../src/storage/keys.ts";
import type { PutOptions } from "../../src/storage/driver.ts";
import { HeldDriver } from "./held_driver.ts";
import type { Digest } from "../../src/types/oci.ts";

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}` as Digest;

/** Every line of the journal, batch by batch in name order. */
async function journalLines(driver: MemoryDriver): Promise<string[]> {
  const out: string[] = [];
  for (const name of await driver.list(ACTIVITY_AREA)) {
    const bytes = await driver.get(`${ACTIVITY_AREA}/${name}`);
    out.push(...new TextDecoder().decode(bytes!).split("\n"));
  }
  return out;
}

Deno.test("touches and pulls are flushed once and read back after a restart", async () => {
  let now = 1_700_000_000_000;
  const driver = new MemoryDriver(() => now);
  const activity = new Activity(driver, { now: () => now });
  activity.touch(digest(1));
  now += 1010;
  activity.touch(digest(1));
  activity.pulled("org/app", digest(2));
  // Kept to the second.
  assert.equal(activity.lastTouch(digest(1)), 1_700_000_001_000);
  assert.deepEqual(await driver.list(ACTIVITY_AREA), [], "nothing written on the hot path");
  await activity.flush();
  assert.equal((await driver.list(ACTIVITY_AREA)).length, 1);
  await activity.flush();
  assert.equal((await driver.list(ACTIVITY_AREA)).length, 1, "no change, no batch");
  const restarted = new Activity(driver, { now: () => now });
  await restarted.load();
  assert.equal(restarted.lastTouch(digest(1)), 1_700_000_001_000);
  assert.equal(restarted.lastPull("org/app", digest(2)), 1_700_000_001_000);
  assert.equal(restarted.lastPull("org/other", digest(2)), 0);
  assert.equal(restarted.lastTouch(digest(3)), 0);
});

Deno.test("a new tracker reads the journal at its first refresh or compaction, merging what it saw before", async () => {
  let now = 1_700_020_000_000;
  const driver = new MemoryDriver(() => now);
  const first = new Activity(driver, { now: () => now });
  first.touch(digest(1));
  now += 10_000;
  first.touch(digest(2));
  first.pulled("org/app", digest(2));
  await first.flush();
  // A restart: touches before the journal is read.
  now -= 5_000;
  const second = new Activity(driver, { now: () => now });
  second.touch(digest(1)); // later than the journal's
  second.touch(digest(2)); // earlier than the journal's
  assert.equal(second.lastTouch(digest(2)), 1_700_020_005_000, "the journal is not read yet");
  assert.equal(second.lastPull("org/app", digest(2)), 0);
  await second.refresh();
  assert.equal(second.lastTouch(digest(1)), 1_700_020_005_000);
  assert.equal(second.lastTouch(digest(2)), 1_700_020_010_000);
  assert.equal(second.lastPull("org/app", digest(2)), 1_700_020_010_000);
  // A compaction first thing after a restart keeps what only the journal knew.
  const third = new Activity(driver, { now: () => now });
  await third.compact(3_600_000);
  const fourth = new Activity(driver, { now: () => now });
  await fourth.load();
  assert.equal(fourth.lastTouch(digest(1)), 1_700_020_005_000);
  assert.equal(fourth.lastTouch(digest(2)), 1_700_020_010_000);
  assert.equal(fourth.lastPull("org/app", digest(2)), 1_700_020_010_000);
});

Deno.test("a table overflowing while the journal is read keeps what it held as the floor; a compaction first thing loses no pull", async () => {
  let now = 1_700_030_000_000;
  const driver = new MemoryDriver(() => now);
  const first = new Activity(driver, { now: () => now });
  for (let i = 0; i < MAX_ENTRIES; i++) first.pulled(`org/app${i % 1000}`, digest(i));
  await first.flush();
  // An hour later, a restart: a pull, then the timer's compaction before any collection.
  now += 3_600_000;
  const pulledAt = now;
  const second = new Activity(driver, { now: () => now });
  second.pulled("org/x", digest(1));
  await second.compact(7 * 24 * 3_600_000);
  assert.equal(second.lastPull("org/x", digest(1)), pulledAt);
  const third = new Activity(driver, { now: () => now });
  await third.load();
  assert.equal(third.lastPull("org/x", digest(1)), pulledAt, "after a restart too");
  assert.ok(third.lastPull("org/app1", digest(1)) >= 1_700_030_000_000);
});

Deno.test("a pull recorded while the journal is read survives the table's overflow", async () => {
  let now = 1_700_040_000_000;
  const driver = new HeldDriver(() => now);
  const first = new Activity(driver, { now: () => now });
  for (let i = 0; i < MAX_ENTRIES; i++) first.pulled(`org/app${i % 1000}`, digest(i));
  await first.flush();
  now += 3_600_000;
  const second = new Activity(driver, { now: () => now });
  const [batch] = await driver.list(ACTIVITY_AREA);
  const release = driver.hold("get", `${ACTIVITY_AREA}/${batch}`);
  const refreshing = second.refresh(); // the first read of the journal
  await driver.whenHeld("get", `${ACTIVITY_AREA}/${batch}`);
  second.pulled("org/x", digest(1)); // while it is read
  release();
  await refreshing;
  assert.equal(second.lastPull("org/x", digest(1)), now);
});

Deno.test("a table overflowing during a compaction sets the floor to a time it held, not to a mark", async () => {
  const now = 1_700_050_000_100;
  const driver = new HeldDriver(() => now);
  const activity = new Activity(driver, { now: () => now });
  for (let i = 0; i < MAX_ENTRIES; i++) activity.touch(digest(i));
  await activity.flush();
  await activity.refresh(); // read once: the compaction below reads each batch only for its lines
  const batches = await driver.list(ACTIVITY_AREA);
  const last = `${ACTIVITY_AREA}/${batches[batches.length - 1]}`;
  const release = driver.hold("get", last);
  const compacting = activity.compact(60_000);
  await driver.whenHeld("get", last); // the earlier batches' keys are written and marked
  activity.touch(digest(MAX_ENTRIES)); // a new key: the table is full and forgets everything
  assert.equal(activity.lastTouch(digest(MAX_ENTRIES + 1)), now, "the floor is the touch's time");
  release();
  await compacting;
  assert.equal(activity.lastTouch(digest(MAX_ENTRIES + 1)), now);
});

Deno.test("the batches found at start count towards the next compaction", async () => {
  const driver = new MemoryDriver();
  const first = new Activity(driver);
  for (let i = 0; i < 3; i++) {
    first.touch(digest(i));
    await first.flush();
  }
  const second = new Activity(driver);
  await second.countJournal();
  assert.equal(second.batchesSinceCompaction, 3);
  await second.compact(3_600_000);
  assert.equal(second.batchesSinceCompaction, 0);
});

Deno.test("batches hold at most 10,000 lines", async () => {
  const driver = new MemoryDriver();
  const activity = new Activity(driver);
  for (let i = 0; i < 25_000; i++) activity.touch(digest(i));
  await activity.flush();
  assert.equal((await driver.list(ACTIVITY_AREA)).length, 3);
  assert.equal(activity.batchesSinceCompaction, 3);
  assert.equal(activity.linesSinceCompaction, 25_000);
  const written = (await journalLines(driver)).sort();
  await activity.compact(3_600_000);
  assert.equal(activity.batchesSinceCompaction, 0);
  assert.equal(activity.linesSinceCompaction, 0);
  // The compacted journal: the same 25,000 lines, byte for byte, again in batches of 10,000.
  const names = await driver.list(ACTIVITY_AREA);
  assert.equal(names.length, 3);
  const sizes = [];
  for (const name of names) {
    sizes.push(
      new TextDecoder().decode((await driver.get(`${ACTIVITY_AREA}/${name}`))!)
        .split("\n").length,
    );
  }
  assert.deepEqual(sizes.sort(), [10_000, 10_000, 5_000]);
  const compacted = (await journalLines(driver)).sort();
  assert.ok(compacted.length === 25_000 && compacted.every((line, i) => line === written[i]));
});

Deno.test("a journal is read line by line as written, and odd lines as before", async () => {
  const driver = new MemoryDriver();
  const hex = "0123456789abcdef".repeat(4);
  const lines = [
    `t sha256:${hex} 1700000000000`, // as written
    `t sha512:${hex}${hex} 1700000001000`,
    `p org/app@sha256:${hex} 1700000002000`,
    `t sha256:${hex.toUpperCase()} 1700000003000`, // not a digest: ignored
    `t sha256:${hex.slice(1)}0 1700000004000 `, // a fourth field: ignored
    `t sha256:${hex.slice(2)}00 0001700000005000`, // leading zeros
    `p org/ñ@sha256:${hex} 1700000006000`, // not ASCII: read as text
    `p org/tab\t@sha256:${hex} 1700000007000`, // a tab in the key
    `p org/no-at 1700000008000`, // no @: ignored
    `x sha256:${hex} 1700000009000`, // no such kind
    `t sha256:${hex.slice(3)}000 4102542245000000`, // 16 digits, read as text
    `t sha256:${hex.slice(4)}0000 1.7e12`, // not written so, but a number
    `t sha256:${hex.slice(6)}000000 +1700000011000`, // a sign: read as text
    `t sha256:${hex.slice(7)}0000000 1700000+12000`, // not a number: ignored
    "",
    `t sha256:${hex.slice(5)}00000`, // no time
    "f 1500000000000",
  ];
  await driver.put(`${ACTIVITY_AREA}/0001700000000000-00000001`, lines.join("\n"));
  const activity = new Activity(driver);
  await activity.load();
  const d = (s: string) => `sha256:${s}` as Digest;
  const floor = 1_500_000_000_000;
  assert.equal(activity.lastTouch(d(hex)), 1_700_000_000_000);
  assert.equal(activity.lastTouch(`sha512:${hex}${hex}` as Digest), 1_700_000_001_000);
  assert.equal(activity.lastPull("org/app", d(hex)), 1_700_000_002_000);
  assert.equal(activity.lastTouch(d(hex.toUpperCase())), floor);
  assert.equal(activity.lastTouch(d(`${hex.slice(1)}0`)), floor);
  assert.equal(activity.lastTouch(d(`${hex.slice(2)}00`)), 1_700_000_005_000);
  assert.equal(activity.lastPull("org/ñ", d(hex)), 1_700_000_006_000);
  assert.equal(activity.lastPull("org/tab\t", d(hex)), 1_700_000_007_000);
  assert.equal(activity.lastTouch(d(`${hex.slice(3)}000`)), 4_102_542_245_000_000);
  assert.equal(activity.lastTouch(d(`${hex.slice(4)}0000`)), 1_700_000_000_000, "1.7e12");
  assert.equal(activity.lastTouch(d(`${hex.slice(6)}000000`)), 1_700_000_011_000);
  assert.equal(activity.lastTouch(d(`${hex.slice(7)}0000000`)), floor);
  assert.equal(activity.lastTouch(d(`${hex.slice(5)}00000`)), floor);
  // A journal read twice over (two replicas' batches) gives the same answers.
  await driver.put(`${ACTIVITY_AREA}/0001700000000001-00000001`, lines.join("\n"));
  const twice = new Activity(driver);
  await twice.load();
  assert.equal(twice.lastPull("org/ñ", d(hex)), 1_700_000_006_000);
  assert.equal(twice.lastTouch(d(hex)), 1_700_000_000_000);
  // Compacted (a window reaching back before every line), odd lines are written as the
  // tracker writes lines, once per key, and read back alike.
  const now = 1_700_000_020_000;
  const compacting = new Activity(driver, { now: () => now });
  await compacting.compact(now);
  assert.deepEqual(
    (await journalLines(driver)).sort(),
    [
      "f 1500000000000", // the batch's first line
      "f 1500000000000", // the floor kept
      `p org/app@sha256:${hex} 1700000002000`,
      `p org/tab\t@sha256:${hex} 1700000007000`,
      `p org/ñ@sha256:${hex} 1700000006000`,
      `t sha256:${hex.slice(2)}00 1700000005000`,
      `t sha256:${hex.slice(3)}000 4102542245000000`,
      `t sha256:${hex.slice(4)}0000 1700000000000`,
      `t sha256:${hex.slice(6)}000000 1700000011000`,
      `t sha256:${hex} 1700000000000`,
      `t sha512:${hex}${hex} 1700000001000`,
    ].sort(),
  );
  const restarted = new Activity(driver);
  await restarted.load();
  for (const [name, seen] of [["restarted", restarted], ["read twice", twice]] as const) {
    assert.equal(seen.lastTouch(d(`${hex.slice(2)}00`)), 1_700_000_005_000, name);
    assert.equal(seen.lastPull("org/ñ", d(hex)), 1_700_000_006_000, name);
    assert.equal(seen.lastPull("org/tab\t", d(hex)), 1_700_000_007_000, name);
    assert.equal(seen.lastTouch(d(`${hex.slice(6)}000000`)), 1_700_000_011_000, name);
    assert.equal(seen.lastTouch(`sha512:${hex}${hex}` as Digest), 1_700_000_001_000, name);
    assert.equal(seen.lastTouch(d(`${hex.slice(7)}0000000`)), floor, name);
  }
});

Deno.test("compaction keeps what is inside the window and deletes the old batches", async () => {
  let now = 1_700_005_000_000;
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
  assert.equal(restarted.lastTouch(digest(2)), 1_700_005_001_000);
  assert.equal(restarted.lastPull("org/app", digest(1)), 1_700_005_001_000);
});

Deno.test("compaction keeps one line per key, the latest, and the floor; lookups agree after a restart", async () => {
  let now = 1_700_010_000_000;
  const driver = new MemoryDriver(() => now);
  const activity = new Activity(driver, { now: () => now });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 50; i++) activity.touch(digest(i));
    activity.pulled("org/app", digest(7));
    await activity.flush();
    now += 2000;
  }
  const lines = () => journalLines(driver);
  assert.equal((await lines()).length, 3 * 51);
  await activity.compact(60_000);
  const after = await lines();
  assert.equal(after.length, 51, "one line per key");
  assert.ok(after.every((l) => l.endsWith(" 1700010004000")), "each key's latest time");
  // The compaction let the journal's keys go; a refresh (a collection's first step) reads
  // them again.
  assert.equal(activity.lastTouch(digest(0)), 0);
  assert.equal(activity.lastPull("org/app", digest(7)), 0);
  await activity.refresh();
  const restarted = new Activity(driver, { now: () => now });
  await restarted.load();
  for (let i = 0; i < 50; i++) {
    assert.equal(activity.lastTouch(digest(i)), 1_700_010_004_000);
    assert.equal(restarted.lastTouch(digest(i)), 1_700_010_004_000);
  }
  assert.equal(activity.lastPull("org/app", digest(7)), 1_700_010_004_000);
  assert.equal(restarted.lastPull("org/app", digest(7)), 1_700_010_004_000);
});

Deno.test("compaction writes a key flushed twice within a second once; one that fails leaves every time as it was", async () => {
  let now = 1_700_020_000_100;
  let failing = false;
  class FullDisk extends MemoryDriver {
    override put(key: string, bytes: Uint8Array | string, options?: PutOptions): Promise<void> {
      if (failing) return Promise.reject(new Error("disk full"));
      return super.put(key, bytes, options);
    }
  }
  const driver = new FullDisk(() => now);
  const activity = new Activity(driver, { now: () => now });
  const lines = () => journalLines(driver);
  activity.touch(digest(1));
  await activity.flush();
  now += 800; // the same second: the same time in memory
  activity.touch(digest(1));
  await activity.flush();
  assert.equal((await lines()).length, 2);
  await activity.compact(60_000);
  assert.deepEqual(await lines(), [`t ${digest(1)} 1700020000100`]);
  await activity.refresh();
  assert.equal(activity.lastTouch(digest(1)), 1_700_020_000_000);

  // More lines than a batch: the compaction writes a batch while it reads, and that write fails.
  now += 1000;
  for (let i = 0; i < 10_001; i++) activity.touch(digest(100 + i));
  activity.pulled("org/app", digest(100));
  await activity.flush();
  const probes = [digest(1), digest(100), digest(5_000), digest(10_100)];
  const before = probes.map((d) => activity.lastTouch(d));
  const pulledBefore = activity.lastPull("org/app", digest(100));
  failing = true;
  await assert.rejects(activity.compact(60_000), /disk full/);
  failing = false;
  assert.deepEqual(probes.map((d) => activity.lastTouch(d)), before);
  assert.equal(activity.lastPull("org/app", digest(100)), pulledBefore);
  // and the next compaction writes every key once
  await activity.compact(60_000);
  const after = await lines();
  assert.equal(after.filter((l) => l.startsWith("t ")).length, 1 + 10_001);
  assert.equal(after.filter((l) => l.startsWith("p ")).length, 1);
  const restarted = new Activity(driver, { now: () => now });
  await restarted.load();
  assert.deepEqual(probes.map((d) => restarted.lastTouch(d)), before);
});

Deno.test("keys are 52-bit hashes: 200,000 distinct digests and pulls never share one", () => {
  const hashes = new Set<number>();
  for (let i = 0; i < 100_000; i++) {
    for (const key of [digest(i), `org/app${i % 100}@${digest(i)}`]) {
      const h = keyHash(key);
      assert.ok(Number.isSafeInteger(h) && h >= 0 && h < 2 ** 52);
      hashes.add(h);
    }
  }
  assert.equal(hashes.size, 200_000);
  assert.ok(MAX_ENTRIES >= 100_000);
});
