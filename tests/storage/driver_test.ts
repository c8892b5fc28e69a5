/**
 * Runs the driver conformance suite against the filesystem and memory drivers, plus what is
 * particular to the filesystem: symbolic links under the root are refused.
 */

import assert from "node:assert/strict";
import { BatchWriter } from "../../src/storage/batch_writer.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { canonicalRoot, LinkedPathError } from "../../src/storage/drivers/fs_files.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import {
  fileAppender,
  flushDeviceOf,
  type Writeback,
} from "../../src/storage/drivers/fs_append.ts";
import { type CacheAdvice, pageCache } from "../../src/storage/drivers/page_cache.ts";
import { DriverUploadStore } from "../../src/storage/uploads.ts";
import type { RepositoryName, UploadId } from "../../src/types/oci.ts";
import { sourceOf } from "../helpers/byte_sources.ts";
import { run } from "../helpers/clients.ts";
import { driverSuite } from "./driver_suite.ts";

async function fsFixture() {
  const root = await canonicalRoot(await Deno.makeTempDir({ prefix: "driver-test-" }));
  return {
    driver: new FsDriver(root),
    root,
    dispose: () => Deno.remove(root, { recursive: true }),
  };
}

driverSuite("filesystem", fsFixture);
driverSuite(
  "memory",
  () => Promise.resolve({ driver: new MemoryDriver(), dispose: async () => {} }),
);

Deno.test("filesystem driver: a symbolic link under the root is never followed", async () => {
  const { driver, root, dispose } = await fsFixture();
  const outside = await Deno.makeTempDir({ prefix: "driver-outside-" });
  try {
    await Deno.writeTextFile(`${outside}/secret`, "secret");
    await Deno.mkdir(`${root}/repositories`);
    await Deno.symlink(outside, `${root}/repositories/evil`);
    await assert.rejects(driver.get("repositories/evil/secret"), LinkedPathError);
    await assert.rejects(driver.put("repositories/evil/planted", "x"), LinkedPathError);
    await assert.rejects(driver.read("repositories/evil/secret"), LinkedPathError);
    await assert.rejects(driver.list("repositories/evil"), LinkedPathError);
    await Deno.symlink(`${outside}/secret`, `${root}/repositories/file-link`);
    await assert.rejects(driver.get("repositories/file-link"), LinkedPathError);
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), ["secret"]);
  } finally {
    await dispose();
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("filesystem driver: objects are plain files at their keys, small writes leave no temporary file", async () => {
  const { driver, root, dispose } = await fsFixture();
  try {
    await driver.put("blobs/sha256/ab/abc", "bytes");
    assert.equal(await Deno.readTextFile(`${root}/blobs/sha256/ab/abc`), "bytes");
    assert.deepEqual([...Deno.readDirSync(`${root}/blobs/sha256/ab`)].map((e) => e.name), ["abc"]);
    await driver.delete("blobs/sha256/ab/abc");
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["blobs"], "top level kept");
  } finally {
    await dispose();
  }
});

Deno.test("filesystem driver: lazy deletes are gone at once; settle flushes their folders, pruned ones too", async () => {
  const { driver, root, dispose } = await fsFixture();
  try {
    await driver.put("blobs/sha256/aa/one", "1");
    await driver.put("blobs/sha256/aa/two", "2");
    await driver.put("blobs/sha256/bb/three", "3");
    assert.equal(await driver.delete("blobs/sha256/aa/one", { lazy: true }), true);
    assert.equal(await driver.delete("blobs/sha256/bb/three", { lazy: true }), true);
    assert.equal(await driver.delete("blobs/sha256/bb/three", { lazy: true }), false);
    assert.equal(await driver.get("blobs/sha256/aa/one"), null);
    assert.deepEqual(await driver.list("blobs/sha256"), ["aa"], "the emptied folder is pruned");
    await assert.rejects(Deno.stat(`${root}/blobs/sha256/bb`), Deno.errors.NotFound);
    await driver.settle(); // flushes `aa`, and for the pruned `bb` its parent
    await driver.settle(); // nothing left to flush
    assert.deepEqual(await driver.list("blobs/sha256/aa"), ["two"]);
  } finally {
    await dispose();
  }
});

/** Bytes of `path` in the page cache, by util-linux's `fincore` (NaN when it fails). */
async function cachedBytes(path: string): Promise<number> {
  const out = await run("fincore", ["--bytes", "--noheadings", "--output", "RES", path], {
    allowFailure: true,
  });
  return out.code === 0 ? Number(out.stdout.trim()) : NaN;
}

/**
 * Why the page-cache test cannot run here, or null. Where the registry drops pages (Linux on
 * x86_64 or aarch64, with FFI permission), the advice must exist; the test is skipped only
 * without `fincore`, or where written bytes do not stay in a page cache (tmpfs, some network
 * and FUSE file systems): a probe file written and synced without the driver shows it.
 */
async function pageCacheSkip(): Promise<string | null> {
  const arch = Deno.build.arch;
  if (Deno.build.os !== "linux" || (arch !== "x86_64" && arch !== "aarch64")) {
    return "pages are dropped on Linux (x86_64, aarch64) only";
  }
  if ((await Deno.permissions.query({ name: "ffi" })).state !== "granted") {
    return "no FFI permission";
  }
  assert.notEqual(pageCache(), null, "Linux with FFI permission has page-cache advice");
  if ((await run("sh", ["-c", "command -v fincore"], { allowFailure: true })).code !== 0) {
    return "no fincore (Debian: util-linux-extra)";
  }
  const dir = await Deno.makeTempDir({ prefix: "page-cache-probe-" });
  try {
    const probe = `${dir}/probe`;
    await Deno.writeFile(probe, new Uint8Array(4 * 1024 * 1024).fill(1));
    const file = await Deno.open(probe, { write: true });
    await file.syncData();
    file.close();
    return await cachedBytes(probe) > 0
      ? null
      : `written bytes do not stay in a page cache under ${dir}`;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const pageCacheSkipReason = await pageCacheSkip();
if (pageCacheSkipReason !== null) {
  console.warn(`page-cache test skipped: ${pageCacheSkipReason}`);
}

Deno.test({
  name: "filesystem driver: an upload's synced pages leave the page cache once it reaches 8 MiB; " +
    "smaller objects keep theirs",
  ignore: pageCacheSkipReason !== null,
  async fn() {
    const { driver, root, dispose } = await fsFixture();
    const MiB = 1024 * 1024;
    const chunk = new Uint8Array(MiB).fill(7);
    try {
      await driver.create("uploads/big/data");
      const big = await driver.append("uploads/big/data", 0);
      for (let i = 0; i < 9; i++) await big.write(chunk);
      const path = `${root}/uploads/big/data`;
      // written, not yet synced: dirty pages are in the cache and cannot be dropped
      assert.ok(await cachedBytes(path) >= 8 * MiB, "the written bytes are cached before sync");
      await big.sync();
      assert.ok(await cachedBytes(path) < MiB, "the synced bytes left the cache");
      big.close();

      await driver.create("uploads/small/data");
      const small = await driver.append("uploads/small/data", 0);
      for (let i = 0; i < 4; i++) await small.write(chunk);
      await small.sync();
      small.close();
      // a drop would leave none of it (a few pages may go to the kernel's own reclaim)
      assert.ok(await cachedBytes(`${root}/uploads/small/data`) > 2 * MiB, "kept in the cache");

      // a writer continuing at an offset counts the bytes already there
      const more = await driver.append("uploads/small/data", 4 * MiB);
      for (let i = 0; i < 6; i++) await more.write(chunk);
      await more.sync();
      more.close();
      assert.ok(await cachedBytes(`${root}/uploads/small/data`) < MiB, "8 MiB reached");
      const stored = await Deno.readFile(`${root}/uploads/small/data`);
      assert.equal(stored.length, 10 * MiB);
      for (let at = 0; at < stored.length; at += MiB) {
        assert.deepEqual(stored.subarray(at, at + MiB), chunk, `the MiB at ${at} is intact`);
      }
    } finally {
      await dispose();
    }
  },
});

/** Bytes of a cheap pseudo-random sequence, for data whose every byte is checked. */
function noise(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0, x = seed >>> 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "filesystem driver: an upload streamed through the batch writer, from the start and " +
    "resumed at an odd offset, is stored whole and leaves the page cache at each sync",
  ignore: pageCacheSkipReason !== null,
  async fn() {
    const { driver, root, dispose } = await fsFixture();
    const MiB = 1024 * 1024;
    const key = "uploads/streamed/data";
    const path = `${root}/${key}`;
    const bytes = noise(70 * MiB + 777 + 16 * MiB, 7);
    const cut = 70 * MiB + 777;
    try {
      await driver.create(key);
      for (const [from, to] of [[0, cut], [cut, bytes.length]]) {
        const writer = await driver.append(key, from);
        assert.equal(writer.writesBack, true, "the batch writer leaves write-back to it");
        // the registry's own path: 1 MiB batches from a source of 32 KiB reads
        await new BatchWriter(writer, MiB).writeFrom(sourceOf(bytes.subarray(from, to), 32768));
        await writer.sync();
        writer.close();
        const cached = await cachedBytes(path);
        assert.ok(cached < MiB, `${cached} bytes cached after the sync of [${from}, ${to})`);
      }
      const stored = await Deno.readFile(path);
      assert.equal(stored.length, bytes.length);
      assert.equal(await sha256Hex(stored), await sha256Hex(bytes));
    } finally {
      await dispose();
    }
  },
});

Deno.test({
  name: "filesystem driver: a 130 MiB upload appended in batches (written back, flushed and " +
    "dropped as it goes) is stored whole and leaves the page cache",
  ignore: pageCacheSkipReason !== null,
  async fn() {
    const { driver, root, dispose } = await fsFixture();
    const id = "0f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;
    const bytes = new Uint8Array(130 * 1024 * 1024);
    for (let at = 0; at < bytes.length; at += 4096) bytes[at] = (at >>> 12) & 0xff;
    try {
      const store = new DriverUploadStore(driver);
      await store.create(id, "bench/app" as RepositoryName, new Date(), "state");
      const { written, flushed } = await store.append(id, 0, sourceOf(bytes, 1024 * 1024));
      await flushed;
      assert.equal(written, bytes.length);
      const path = `${root}/uploads/${id}/data`;
      assert.ok(await cachedBytes(path) < 1024 * 1024, "the synced bytes left the cache");
      const stored = await Deno.readFile(path);
      assert.equal(stored.length, bytes.length);
      assert.ok(stored.every((b, i) => b === bytes[i]), "the stored bytes are the sent ones");
    } finally {
      await dispose();
    }
  },
});

/** What a writer did beside its writes, seen through a fake advisor and device flush. */
interface Seen {
  opened: string[];
  writeBacks: [number, number][];
  drops: [number, number][];
  flushes: number;
  /** `syncData` calls on the upload's own file. */
  syncs: number;
}

/** How `watchedAppender`'s fakes behave. */
interface Fakes {
  /** Whether there is advice (default true). */
  advised?: boolean;
  /** What each write-back start waits for before it returns (default: nothing). */
  writeBackTakes?: () => Promise<void>;
  /** The `syncData` call (counted from 1) of the upload's file that fails with EIO. */
  failingSync?: number;
}

/**
 * An append writer over a real file at `path`, from `offset`, whose page-cache advice and
 * device flushes are fakes that record their calls, and whose file counts its `syncData` calls.
 */
async function watchedAppender(path: string, offset: number, fakes: Fakes = {}) {
  const seen: Seen = { opened: [], writeBacks: [], drops: [], flushes: 0, syncs: 0 };
  const advisor = (at: string): Promise<CacheAdvice | null> => {
    seen.opened.push(at);
    return Promise.resolve({
      writeBack: async (from, length) => {
        seen.writeBacks.push([from, length]);
        await fakes.writeBackTakes?.();
        return true;
      },
      drop: (from, length) => {
        seen.drops.push([from, length]);
        return Promise.resolve(true);
      },
      close: () => {},
    });
  };
  const writeback: Writeback = {
    advisor: fakes.advised === false ? null : advisor,
    flushDevice: () => {
      seen.flushes++;
      return Promise.resolve();
    },
  };
  const file = await Deno.open(path, { write: true, create: true });
  await file.seek(offset, Deno.SeekMode.Start);
  const counted = new Proxy(file, {
    get(target, name) {
      if (name === "syncData") {
        return () => {
          if (++seen.syncs === fakes.failingSync) {
            return Promise.reject(new Error("Input/output error (os error 5)"));
          }
          return target.syncData();
        };
      }
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { writer: fileAppender(path, counted, offset, writeback), seen };
}

/** Whether the ranges follow each other from `from`, and where they end. */
function contiguous(ranges: [number, number][], from: number): number {
  let at = from;
  for (const [start, length] of ranges) {
    assert.equal(start, at, `a range starts at ${start}, not where the last ended (${at})`);
    at += length;
  }
  return at;
}

Deno.test("filesystem append writer: write-back of every 8 MiB is started as it is written, the device flushed every 16 MiB and the pages before the previous flush dropped; the upload itself is synced only by sync", async () => {
  const MiB = 1024 * 1024;
  const dir = await Deno.makeTempDir({ prefix: "append-writeback-" });
  const path = `${dir}/data`;
  const offset = 3 * MiB + 5; // a resumed upload
  await Deno.writeFile(path, noise(offset, 1));
  const { writer, seen } = await watchedAppender(path, offset);
  try {
    const bytes = noise(200 * MiB, 2);
    for (let at = 0; at < bytes.length; at += MiB) await writer.write(bytes.subarray(at, at + MiB));
    assert.deepEqual(seen.opened, [path], "one descriptor for the advice, of the upload's path");
    const end = offset + bytes.length;
    // 1 MiB writes: each start covers exactly 8 MiB, the last fewer than 8 MiB before the end
    assert.ok(seen.writeBacks.every(([, length]) => length === 8 * MiB));
    assert.equal(contiguous(seen.writeBacks, offset), offset + 200 * MiB);
    assert.equal(seen.flushes, 12, "a device flush every 16 MiB written (16, 32, …, 192)");
    // at each flush, the pages written before the previous one (at first, those before offset)
    const drops = [
      [0, offset],
      ...Array.from({ length: 11 }, (_, i) => [offset + i * 16 * MiB, 16 * MiB]),
    ];
    assert.deepEqual(seen.drops, drops);
    assert.equal(seen.syncs, 0, "the upload's own file was not synced while it was written");

    await writer.sync();
    assert.equal(seen.syncs, 1);
    assert.deepEqual(seen.drops.at(-1), [0, end], "after the sync, every page of the object");
    const stored = await Deno.readFile(path);
    assert.equal(stored.length, end);
    assert.equal(await sha256Hex(stored.subarray(offset)), await sha256Hex(bytes));
  } finally {
    writer.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("filesystem append writer: an object under 8 MiB starts no write-back and keeps its pages; without advice, the upload is synced in the background every 64 MiB", async () => {
  const MiB = 1024 * 1024;
  const dir = await Deno.makeTempDir({ prefix: "append-writeback-" });
  try {
    const small = await watchedAppender(`${dir}/small`, 0);
    for (let i = 0; i < 7; i++) await small.writer.write(noise(MiB, i));
    await small.writer.sync();
    small.writer.close();
    assert.deepEqual(small.seen.opened, [], "no advice was needed");
    assert.equal(small.seen.flushes, 0);
    assert.equal(small.seen.syncs, 1);

    const plain = await watchedAppender(`${dir}/plain`, 0, { advised: false });
    for (let i = 0; i < 130; i++) await plain.writer.write(noise(MiB, i));
    // the first background sync (at 64 MiB) may still run when the one at 128 MiB is due
    assert.ok(
      plain.seen.syncs === 1 || plain.seen.syncs === 2,
      `${plain.seen.syncs} background syncs`,
    );
    const before = plain.seen.syncs;
    await plain.writer.sync();
    plain.writer.close();
    assert.equal(plain.seen.syncs, before + 1);
    assert.equal((await Deno.stat(`${dir}/plain`)).size, 130 * MiB);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "page-cache advice: opens a regular file, never a link; write-back and drops of a " +
    "real file succeed, and nothing is done once closed",
  ignore: pageCacheSkipReason !== null,
  async fn() {
    const advisor = pageCache()!;
    const MiB = 1024 * 1024;
    const dir = await canonicalRoot(await Deno.makeTempDir({ prefix: "advice-" }));
    try {
      const path = `${dir}/data`;
      await Deno.writeFile(path, noise(4 * MiB, 3));
      await Deno.symlink(path, `${dir}/link`);
      assert.equal(await advisor(`${dir}/link`), null, "a link is not followed");
      assert.equal(await advisor(`${dir}/missing`), null);
      const advice = (await advisor(path))!;
      assert.notEqual(advice, null);
      assert.equal(await advice.writeBack(0, 4 * MiB), true, "the kernel took the write-back");
      const file = await Deno.open(path, { write: true });
      await file.syncData();
      file.close();
      assert.ok(await cachedBytes(path) > 0, "synced, the pages are still cached");
      assert.equal(await advice.drop(0, 4 * MiB), true);
      assert.ok(await cachedBytes(path) < MiB, "dropped once clean");
      advice.close();
      advice.close();
      assert.equal(await advice.writeBack(0, MiB), false, "nothing is called once closed");
      assert.equal((await Deno.readFile(path)).length, 4 * MiB);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("filesystem append writer: closed while a write-back start is pending, it starts no device flush and no drop after; idle settles once that start returns", async () => {
  const MiB = 1024 * 1024;
  const dir = await Deno.makeTempDir({ prefix: "append-writeback-" });
  let release = () => {};
  const pending = new Promise<void>((resolve) => release = resolve);
  try {
    const { writer, seen } = await watchedAppender(`${dir}/data`, 0, {
      writeBackTakes: () => pending,
    });
    // 16 MiB: the step at 8 MiB starts and hangs, so the one with a flush is never due before
    for (let i = 0; i < 16; i++) await writer.write(noise(MiB, i));
    assert.deepEqual(seen.writeBacks, [[0, 8 * MiB]]);
    let idle = false;
    const settled = writer.idle!().then(() => idle = true);
    writer.close();
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(idle, false, "the start still runs");
    release();
    await settled;
    assert.equal(seen.flushes, 0);
    assert.deepEqual(seen.drops, []);
  } finally {
    release();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("filesystem append writer: without advice, a background sync that fails fails the next write and the final sync (a write-back error is reported only once)", async () => {
  const MiB = 1024 * 1024;
  const dir = await Deno.makeTempDir({ prefix: "append-writeback-" });
  try {
    const { writer, seen } = await watchedAppender(`${dir}/data`, 0, {
      advised: false,
      failingSync: 1,
    });
    try {
      for (let i = 0; i < 64; i++) await writer.write(noise(MiB, i));
      await writer.idle!(); // the background sync at 64 MiB ran and failed
      assert.equal(seen.syncs, 1);
      await assert.rejects(writer.write(noise(MiB, 64)), /os error 5/);
      await assert.rejects(writer.sync(), /os error 5/);
      assert.equal(seen.syncs, 1, "no sync of the file can report success after it");
    } finally {
      writer.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("device flushes: one at a time per folder, joined while it runs; a folder that is gone is no error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "device-flush-" });
  const other = await Deno.makeTempDir({ prefix: "device-flush-" });
  try {
    const first = flushDeviceOf(dir);
    assert.equal(flushDeviceOf(dir), first, "joined");
    const beside = flushDeviceOf(other);
    assert.notEqual(beside, first, "another folder's runs beside it");
    await Promise.all([first, beside]);
    const next = flushDeviceOf(dir);
    assert.notEqual(next, first, "a new one once the first is done");
    await next;
    await flushDeviceOf(`${dir}/missing`); // resolves
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(other, { recursive: true });
  }
});
