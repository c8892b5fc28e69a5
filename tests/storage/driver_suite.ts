/**
 * The storage driver conformance suite: every promise of `src/storage/driver.ts`, run against
 * any driver. `driver_test.ts` runs it against the filesystem and memory drivers; a later
 * driver (an object store) must pass the same suite.
 */

import assert from "node:assert/strict";
import {
  AlreadyExists,
  InvalidKey,
  ObjectMissing,
  type StorageDriver,
} from "../../src/storage/driver.ts";

/** A driver under test and how to dispose of it. */
export interface DriverFixture {
  readonly driver: StorageDriver;
  dispose(): Promise<void>;
}

const text = (bytes: Uint8Array | null) => bytes === null ? null : new TextDecoder().decode(bytes);
const encoder = new TextEncoder();

async function readStream(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Registers the suite's tests for one kind of driver (`ignore`: registered but not run). */
export function driverSuite(
  kind: string,
  make: () => Promise<DriverFixture>,
  options: { ignore?: boolean } = {},
): void {
  const test = (name: string, fn: (driver: StorageDriver) => Promise<void>) =>
    Deno.test({
      name: `${kind} driver: ${name}`,
      ignore: options.ignore ?? false,
      async fn() {
        const fixture = await make();
        try {
          await fn(fixture.driver);
        } finally {
          await fixture.dispose();
        }
      },
    });

  test("put then get returns the bytes; get of a missing key is null", async (d) => {
    assert.equal(await d.get("a/b/c"), null);
    await d.put("a/b/c", "hello");
    assert.equal(text(await d.get("a/b/c")), "hello");
    await d.put("a/b/c", new Uint8Array([1, 2, 3]));
    assert.deepEqual(await d.get("a/b/c"), new Uint8Array([1, 2, 3]));
  });

  test("put with `after` replaces only once the promise resolves, and not when it rejects", async (d) => {
    await d.put("k/x", "old");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const writing = d.put("k/x", "new", { after: gate });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(text(await d.get("k/x")), "old");
    release();
    await writing;
    assert.equal(text(await d.get("k/x")), "new");
    await assert.rejects(d.put("k/x", "never", { after: Promise.reject(new Error("flush")) }));
    assert.equal(text(await d.get("k/x")), "new");
    assert.deepEqual(await d.list("k"), ["x"], "no temporary object is left visible");
  });

  test("stat gives the size and a modification time; null when missing", async (d) => {
    assert.equal(await d.stat("s/one"), null);
    const before = Date.now();
    await d.put("s/one", "12345");
    const info = await d.stat("s/one");
    assert.equal(info?.size, 5);
    assert.ok(info && info.modifiedAt >= before - 2000 && info.modifiedAt <= Date.now() + 2000);
    assert.equal(await d.stat("s"), null, "a prefix is not an object");
  });

  test("read streams the whole object or a span; null when missing", async (d) => {
    const bytes = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i % 251);
    await d.put("r/blob", bytes);
    const whole = await d.read("r/blob");
    assert.equal(whole?.size, bytes.length);
    assert.deepEqual(await readStream(whole!.stream), bytes);
    const span = await d.read("r/blob", { start: 1024 * 1024 - 3, length: 2 * 1024 * 1024 });
    assert.equal(span?.size, bytes.length);
    assert.deepEqual(
      await readStream(span!.stream),
      bytes.subarray(1024 * 1024 - 3, 3 * 1024 * 1024 - 3),
    );
    const tail = await d.read("r/blob", { start: bytes.length - 5, length: 5 });
    assert.deepEqual(await readStream(tail!.stream), bytes.subarray(bytes.length - 5));
    assert.equal(await d.read("r/none"), null);
    const cancelled = await d.read("r/blob");
    await cancelled!.stream.cancel();
  });

  test("list names children in byte order, objects and prefixes alike, with pagination", async (d) => {
    assert.deepEqual(await d.list("l"), []);
    for (const key of ["l/b", "l/a/x", "l/a/y", "l/C", "l/_z/deep/er", "other/q"]) {
      await d.put(key, key);
    }
    assert.deepEqual(await d.list("l"), ["C", "_z", "a", "b"]);
    assert.deepEqual(await d.list("l", { limit: 2 }), ["C", "_z"]);
    assert.deepEqual(await d.list("l", { after: "_z" }), ["a", "b"]);
    assert.deepEqual(await d.list("l", { after: "a", limit: 1 }), ["b"]);
    assert.deepEqual(await d.list("l", { after: "zzz" }), []);
    assert.deepEqual(await d.list("l/a"), ["x", "y"]);
    assert.deepEqual((await d.list("")).filter((n) => n === "l" || n === "other"), [
      "l",
      "other",
    ]);
  });

  test("delete removes an object durably and empty prefixes disappear from lists", async (d) => {
    await d.put("d/p/q/leaf", "1");
    await d.put("d/keep", "2");
    assert.equal(await d.delete("d/p/q/leaf"), true);
    assert.equal(await d.delete("d/p/q/leaf"), false);
    assert.equal(await d.get("d/p/q/leaf"), null);
    assert.deepEqual(await d.list("d"), ["keep"]);
    await d.put("d/p/q/leaf", "again");
    assert.equal(text(await d.get("d/p/q/leaf")), "again", "a pruned prefix can be written again");
  });

  test("deleteAll removes everything under a prefix and nothing beside it", async (d) => {
    await d.put("u/s1/data", "a");
    await d.put("u/s1/state", "b");
    await d.put("u/s10/data", "c");
    assert.equal(await d.deleteAll("u/s1"), true);
    assert.equal(await d.deleteAll("u/s1"), false);
    assert.deepEqual(await d.list("u"), ["s10"]);
    assert.equal(text(await d.get("u/s10/data")), "c");
  });

  test("create makes an empty object once; append writes from an offset and cuts the rest", async (d) => {
    await d.create("up/1/data");
    await assert.rejects(d.create("up/1/data"), AlreadyExists);
    assert.equal((await d.stat("up/1/data"))?.size, 0);
    const w = await d.append("up/1/data", 0);
    await w.write(new TextEncoder().encode("hello "));
    await w.write(new TextEncoder().encode("world, and more"));
    await w.sync();
    w.close();
    w.close();
    assert.equal(text(await d.get("up/1/data")), "hello world, and more");
    const again = await d.append("up/1/data", 6);
    await again.write(new TextEncoder().encode("there"));
    await again.sync();
    again.close();
    assert.equal(text(await d.get("up/1/data")), "hello there");
    await assert.rejects(d.append("up/none/data", 0), ObjectMissing);
  });

  test("truncate cuts an object; readAll streams it whole", async (d) => {
    await d.create("t/data");
    const w = await d.append("t/data", 0);
    await w.write(new Uint8Array(100_000).fill(7));
    await w.sync();
    w.close();
    await d.truncate("t/data", 10);
    assert.deepEqual(await readStream(await d.readAll("t/data")), new Uint8Array(10).fill(7));
    await assert.rejects(d.truncate("t/none", 0), ObjectMissing);
    await assert.rejects(d.readAll("t/none"), ObjectMissing);
  });

  test("move commits an object to another key in one step, replacing what is there", async (d) => {
    await d.put("m/src", "payload");
    await d.move("m/src", "final/aa/bb");
    assert.equal(await d.get("m/src"), null);
    assert.equal(text(await d.get("final/aa/bb")), "payload");
    await d.put("m/src2", "newer");
    await d.move("m/src2", "final/aa/bb");
    assert.equal(text(await d.get("final/aa/bb")), "newer");
    await assert.rejects(d.move("m/none", "final/x"), ObjectMissing);
  });

  test("a move or a put onto an appendable object replaces it, and so does an append after", async (d) => {
    const appendable = async (key: string, content: string) => {
      await d.create(key);
      const w = await d.append(key, 0);
      await w.write(encoder.encode(content));
      await w.sync();
      w.close();
    };
    await appendable("m/t", "old appendable");
    await d.put("m/src", "payload");
    await d.move("m/src", "m/t");
    assert.equal(text(await d.get("m/t")), "payload");
    assert.equal((await d.stat("m/t"))?.size, 7);
    await appendable("m/u", "appended bytes");
    await d.put("m/u", "put");
    assert.equal(text(await d.get("m/u")), "put");
    // A plain object made appendable: its bytes first, then the appended ones.
    const w = await d.append("m/u", 3);
    await w.write(encoder.encode("+more"));
    await w.sync();
    w.close();
    assert.equal(text(await d.get("m/u")), "put+more");
    assert.deepEqual(await d.list("m"), ["t", "u"]);
    assert.equal(await d.deleteAll("m"), true);
    assert.deepEqual(await d.list("m"), []);
    assert.equal(await d.get("m/t"), null);
  });

  test("keys a store could never make are refused before anything is touched", async (d) => {
    for (
      const key of ["", "/abs", "a//b", "a/../b", "..", "a/.", ".hidden", "a/b/", "a\0b", "a b"]
    ) {
      await assert.rejects(async () => await d.get(key), InvalidKey, JSON.stringify(key));
      await assert.rejects(async () => await d.put(key, "x"), InvalidKey, JSON.stringify(key));
      await assert.rejects(async () => await d.delete(key), InvalidKey, JSON.stringify(key));
    }
    await assert.rejects(async () => await d.list("../up"), InvalidKey);
    await assert.rejects(async () => await d.move("ok/a", "../b"), InvalidKey);
  });

  test("concurrent puts of one key leave one whole value", async (d) => {
    const values = Array.from({ length: 16 }, (_, i) => `value-${i}-${"x".repeat(i * 1000)}`);
    await Promise.all(values.map((v) => d.put("c/key", v)));
    assert.ok(values.includes(text(await d.get("c/key"))!));
    assert.deepEqual(await d.list("c"), ["key"]);
  });
}
