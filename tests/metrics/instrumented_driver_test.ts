/**
 * The instrumented driver: it still passes the driver conformance suite, times each action,
 * and keeps the blob-bytes gauge exact: after a walk, across replacements, concurrent commits
 * of one blob, deletes, and changes that race the walk folder by folder.
 */

import assert from "node:assert/strict";
import type { ListOptions, ObjectInfo, StorageDriver } from "../../src/storage/driver.ts";
import { InstrumentedDriver } from "../../src/storage/drivers/instrumented.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { driverSuite } from "../storage/driver_suite.ts";

driverSuite("instrumented memory", () =>
  Promise.resolve({
    driver: new InstrumentedDriver(new MemoryDriver()),
    dispose: () => Promise.resolve(),
  }));

/** A blob key in the store's layout, from a two-hex-digit folder and a name. */
const key = (folder: string, name: string) => `blobs/sha256/${folder}/${folder}${name}`;
const bytes = (n: number) => new Uint8Array(n);

/** The bytes under `blobs/`, counted directly. */
async function truth(driver: StorageDriver): Promise<number> {
  let total = 0;
  for (const alg of await driver.list("blobs")) {
    for (const folder of await driver.list(`blobs/${alg}`)) {
      for (const name of await driver.list(`blobs/${alg}/${folder}`)) {
        total += (await driver.stat(`blobs/${alg}/${folder}/${name}`))!.size;
      }
    }
  }
  return total;
}

/** A memory driver whose list and stat take `delayMs` (so that a walk can be raced). */
class SlowDriver extends MemoryDriver {
  delayMs = 0;
  override async list(prefix: string, options?: ListOptions): Promise<string[]> {
    await new Promise((wake) => setTimeout(wake, this.delayMs));
    return super.list(prefix, options);
  }
  override async stat(k: string): Promise<ObjectInfo | null> {
    await new Promise((wake) => setTimeout(wake, this.delayMs));
    return super.stat(k);
  }
}

Deno.test("instrumented driver: each call is timed under its action", async () => {
  const driver = new InstrumentedDriver(new MemoryDriver());
  await driver.put("a/b", "x");
  await driver.get("a/b");
  await driver.get("a/missing");
  await driver.create("u/data");
  const writer = await driver.append("u/data", 0);
  await writer.write(bytes(10));
  await writer.sync();
  writer.close();
  await assert.rejects(driver.move("nope", "a/c"));
  const counts = new Map<string, number>();
  for (const series of driver.timings.series()) {
    const action = /action="([a-z_]+)"/.exec(series.pairs)![1];
    counts.set(action, series.count);
  }
  assert.equal(counts.get("put"), 1);
  assert.equal(counts.get("get"), 2);
  assert.equal(counts.get("create"), 1);
  assert.equal(counts.get("append"), 1);
  assert.equal(counts.get("write"), 1);
  assert.equal(counts.get("sync"), 1);
  assert.equal(counts.get("move"), 1, "a failed call is timed too");
  assert.equal(counts.get("list"), 0);
  assert.match(driver.timings.render(), /driver="memory",action="get",le="0.0001"/);
});

Deno.test("stored bytes: a walk, then every change tracked exactly", async () => {
  const inner = new MemoryDriver();
  await inner.put(key("aa", "1"), bytes(100));
  await inner.put(key("bb", "2"), bytes(50));
  await inner.put("repositories/x/_layers/link", "not a blob");
  const driver = new InstrumentedDriver(inner);
  assert.equal(await driver.storedBytes.value(), 150);
  await driver.put(key("aa", "3"), bytes(7));
  await driver.put(key("aa", "3"), bytes(7)); // the same blob again: no change
  await driver.put(key("cc", "4"), bytes(9));
  await driver.create("uploads/u1/data");
  const w = await driver.append("uploads/u1/data", 0);
  await w.write(bytes(1000));
  w.close();
  await driver.move("uploads/u1/data", key("dd", "5"));
  assert.equal(await driver.delete(key("bb", "2")), true);
  assert.equal(await driver.delete(key("bb", "2")), false);
  await driver.put("repositories/x/_manifests/tags/t", "ignored");
  assert.equal(await driver.storedBytes.value(), 100 + 7 + 9 + 1000);
  assert.equal(await driver.storedBytes.value(), await truth(inner));
});

Deno.test("stored bytes: concurrent commits of one blob count once", async () => {
  const inner = new MemoryDriver();
  const driver = new InstrumentedDriver(inner);
  assert.equal(await driver.storedBytes.value(), 0);
  for (const id of ["u1", "u2", "u3"]) await inner.put(`uploads/${id}/data`, bytes(300));
  await Promise.all(
    ["u1", "u2", "u3"].map((id) => driver.move(`uploads/${id}/data`, key("ee", "6"))),
  );
  await Promise.all([driver.put(key("ff", "7"), bytes(5)), driver.put(key("ff", "7"), bytes(5))]);
  assert.equal(await driver.storedBytes.value(), 305);
  assert.equal(await truth(inner), 305);
});

Deno.test("stored bytes: changes racing the walk are counted once", async () => {
  const inner = new SlowDriver();
  const folders = ["10", "20", "30", "40", "50", "60"];
  for (const f of folders) await inner.put(key(f, "0"), bytes(1000));
  const driver = new InstrumentedDriver(inner);
  inner.delayMs = 2;
  const walk = driver.storedBytes.value(60_000);
  // Changes in folders walked, being walked and not walked yet, and in a new folder.
  const changes: Promise<unknown>[] = [];
  for (let i = 0; i < 30; i++) {
    const folder = folders[i % folders.length];
    changes.push(
      new Promise((wake) => setTimeout(wake, i * 1.5)).then(async () => {
        await driver.put(key(folder, `n${i}`), bytes(i + 1));
        if (i % 3 === 0) await driver.delete(key(folder, "0"));
        if (i % 5 === 0) await driver.put(key("7" + (i % 10), `x${i}`), bytes(11));
      }),
    );
  }
  await Promise.all(changes);
  const walked = await walk;
  inner.delayMs = 0;
  const total = await driver.storedBytes.value();
  assert.equal(total, await truth(inner));
  assert.ok(walked === null || walked <= 1000 * folders.length + 1000);
});

Deno.test("stored bytes: an unknown change makes the next scrape walk again", async () => {
  const inner = new MemoryDriver();
  const driver = new InstrumentedDriver(inner);
  await driver.put(key("aa", "1"), bytes(10));
  assert.equal(await driver.storedBytes.value(), 10);
  await inner.put(key("bb", "2"), bytes(20)); // behind the tracker's back: not seen
  assert.equal(await driver.storedBytes.value(), 10);
  await driver.deleteAll("blobs/sha256/aa");
  assert.equal(await driver.storedBytes.value(), 20);
});
