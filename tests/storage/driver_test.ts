/**
 * Runs the driver conformance suite against the filesystem and memory drivers, plus what is
 * particular to the filesystem: symbolic links under the root are refused.
 */

import assert from "node:assert/strict";
import { BatchWriter } from "../../src/storage/batch_writer.ts";
import type { AppendWriter } from "../../src/storage/driver.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { canonicalRoot, LinkedPathError } from "../../src/storage/drivers/fs_files.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { BLOCK, type DirectIo, directIo } from "../../src/storage/drivers/direct_io.ts";
import { fileAppender } from "../../src/storage/drivers/fs_append.ts";
import { pageDropper } from "../../src/storage/drivers/page_cache.ts";
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
 * x86_64 or aarch64, with FFI permission), the dropper must exist; the test is skipped only
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
  assert.notEqual(pageDropper(), null, "Linux with FFI permission has a page dropper");
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
    // at an odd address, so that no write can go around the cache (see the next test)
    const chunk = new Uint8Array(MiB + 1).fill(7).subarray(1);
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

/**
 * Why the direct-write tests cannot run here, or null. Where the registry can write around the
 * page cache (Linux on x86_64 or aarch64, with FFI permission) it must have the means; the
 * tests are skipped only where the page-cache test is, or where `dd oflag=direct` shows that
 * the file system under the temporary folder refuses `O_DIRECT` (tmpfs before Linux 6.6).
 */
async function directSkip(): Promise<string | null> {
  if (pageCacheSkipReason !== null) return pageCacheSkipReason;
  assert.notEqual(directIo(), null, "Linux with FFI permission can write around the page cache");
  const dir = await Deno.makeTempDir({ prefix: "direct-probe-" });
  try {
    const args = ["if=/dev/zero", `of=${dir}/probe`, "bs=4096", "count=1", "oflag=direct"];
    const probe = await run("dd", args, { allowFailure: true });
    return probe.code === 0 ? null : `the file system under ${dir} refuses O_DIRECT`;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const directSkipReason = await directSkip();
if (directSkipReason !== null) console.warn(`direct-write tests skipped: ${directSkipReason}`);

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
  name: "filesystem driver: past 8 MiB, an upload's whole blocks from the writer's own buffers " +
    "never enter the page cache, also between a cached head and tail; the bytes are stored whole",
  ignore: directSkipReason !== null,
  async fn() {
    const { driver, root, dispose } = await fsFixture();
    const MiB = 1024 * 1024;
    const path = `${root}/uploads/direct/data`;
    const model = new Uint8Array(32 * MiB);
    let size = 0;
    let seed = 1;
    const write = async (writer: AppendWriter, buffer: Uint8Array) => {
      buffer.set(noise(buffer.length, seed++));
      await writer.write(buffer);
      model.set(buffer, size);
      size += buffer.length;
    };
    /** A buffer of the writer's whose byte `head` is block-aligned: [head][rest]. */
    const laidOut = (writer: AppendWriter, head: number, rest: number) =>
      writer.layout!.allocate(BLOCK + rest).subarray(BLOCK - head, BLOCK + rest);
    try {
      await driver.create("uploads/direct/data");
      const first = await driver.append("uploads/direct/data", 0);
      assert.equal(first.layout?.head, 0, "an empty object is at a block boundary");
      for (let i = 0; i < 24; i++) await write(first, first.layout!.allocate(MiB));
      // not synced yet: written through the cache, these pages would all be there, dirty
      let cached = await cachedBytes(path);
      assert.ok(cached <= 9 * MiB, `${cached} bytes cached: the 16 MiB past 8 went around it`);
      await first.sync();
      first.close();

      // resumed at an odd offset: one write of a head to the boundary (cached), a MiB of
      // whole blocks (direct) and a tail (cached); then a buffer at an odd address, which
      // goes through the cache whole; then a head, two blocks and a tail of 5 bytes
      size = 24 * MiB - 1536;
      const second = await driver.append("uploads/direct/data", size);
      assert.equal(second.layout?.head, 1536);
      await write(second, laidOut(second, 1536, MiB + 1000));
      await write(second, new Uint8Array(MiB + 1).subarray(1));
      await write(second, laidOut(second, BLOCK - 1000, 2 * BLOCK + 5));
      cached = await cachedBytes(path);
      // the unaligned MiB and a few head and tail pages; the MiB between would double it
      assert.ok(cached <= MiB + 16 * BLOCK, `${cached} bytes cached before the sync`);
      await second.sync();
      second.close();
      assert.ok(await cachedBytes(path) < MiB, "nothing synced stays in the cache");

      const stored = await Deno.readFile(path);
      assert.equal(stored.length, size);
      assert.equal(await sha256Hex(stored), await sha256Hex(model.slice(0, size)));
    } finally {
      await dispose();
    }
  },
});

Deno.test({
  name: "filesystem driver: an upload streamed through the batch writer goes around the page " +
    "cache past 8 MiB, from the start and resumed at an odd offset; the bytes are stored whole",
  ignore: directSkipReason !== null,
  async fn() {
    const { driver, root, dispose } = await fsFixture();
    const MiB = 1024 * 1024;
    const key = "uploads/streamed/data";
    const path = `${root}/${key}`;
    const bytes = noise(40 * MiB + 777 + 16 * MiB, 7);
    const cut = 40 * MiB + 777;
    try {
      await driver.create(key);
      for (const [from, to] of [[0, cut], [cut, bytes.length]]) {
        const writer = await driver.append(key, from);
        // the registry's own path: 1 MiB batches from a source of 32 KiB reads
        await new BatchWriter(writer, MiB).writeFrom(sourceOf(bytes.subarray(from, to), 32768));
        const cached = await cachedBytes(path);
        const most = from === 0 ? 9 * MiB : 16 * BLOCK; // before: all pages synced and dropped
        assert.ok(cached <= most, `${cached} bytes cached before the sync of [${from}, ${to})`);
        await writer.sync();
        writer.close();
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
  name: "filesystem driver: a 130 MiB upload appended in batches (pages dropped while the next " +
    "batches are written) is stored whole and leaves the page cache",
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

Deno.test({
  name: "direct writes: buffers are block-aligned; a link, or a file replaced after it was " +
    "opened, is never opened for direct writes",
  ignore: directSkipReason !== null,
  async fn() {
    const io = directIo()!;
    const buffer = io.allocate(3 * BLOCK);
    assert.equal(buffer.length, 3 * BLOCK);
    assert.ok(io.isAligned(buffer) && io.isAligned(buffer.subarray(BLOCK)));
    assert.ok(!io.isAligned(buffer.subarray(512)), "512 bytes in is not at a block boundary");
    const dir = await canonicalRoot(await Deno.makeTempDir({ prefix: "direct-open-" }));
    try {
      const path = `${dir}/data`;
      await Deno.writeFile(path, new Uint8Array(BLOCK));
      const opened = await Deno.stat(path);
      const fd = await io.open(path, opened);
      assert.notEqual(fd, null);
      assert.equal(await io.write(fd!, buffer, BLOCK), 3 * BLOCK);
      io.close(fd!);
      assert.equal((await Deno.stat(path)).size, 4 * BLOCK);

      await Deno.symlink(path, `${dir}/link`);
      assert.equal(await io.open(`${dir}/link`, opened), null, "a link is not followed");
      await Deno.rename(path, `${dir}/old`);
      await Deno.writeFile(path, new Uint8Array(0));
      assert.equal(await io.open(path, opened), null, "another file at the path is refused");
      assert.equal((await Deno.stat(path)).size, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * This process's direct writes, watched: how many run at once at most, which offsets they
 * were given, and how many descriptors were closed; `answer` may replace what a write returns
 * (the count written, or -1), by its number (0 for the first).
 */
function watchedIo(answer: (n: number, wrote: number) => number = (_, wrote) => wrote) {
  const real = directIo()!;
  const seen = { running: 0, most: 0, offsets: [] as number[], closed: 0 };
  const io: DirectIo = {
    ...real,
    async write(fd, bytes, offset) {
      const n = seen.offsets.push(offset) - 1;
      seen.running++;
      seen.most = Math.max(seen.most, seen.running);
      try {
        const short = answer(n, bytes.length);
        if (short === bytes.length) return await real.write(fd, bytes, offset);
        // a short write: only `short` bytes go (none for -1)
        if (short > 0) return await real.write(fd, bytes.subarray(0, short), offset);
        await new Promise((resolve) => setTimeout(resolve, 1)); // as long as a write, about
        return short;
      } finally {
        seen.running--;
      }
    },
    close(fd) {
      seen.closed++;
      real.close(fd);
    },
  };
  return { io, seen };
}

Deno.test({
  name: "filesystem driver: after a first direct write, an upload's next writes of whole " +
    "blocks start at once, each at its own offset; the bytes land in call order",
  ignore: directSkipReason !== null,
  async fn() {
    const MiB = 1024 * 1024;
    const dir = await Deno.makeTempDir({ prefix: "append-overlap-" });
    const path = `${dir}/data`;
    const { io, seen } = watchedIo();
    const file = await Deno.open(path, { write: true, create: true });
    const writer = fileAppender(path, file, 0, io);
    try {
      assert.equal(writer.overlaps, true);
      const bytes = noise(20 * MiB + 100, 3);
      const parts: Uint8Array[] = [];
      for (let at = 0; at < bytes.length; at += MiB) {
        const part = writer.layout!.allocate(Math.min(MiB, bytes.length - at));
        part.set(bytes.subarray(at, at + part.length));
        parts.push(part);
      }
      // the first 9 MiB one by one (8 through the cache, then the first direct write)
      for (const part of parts.slice(0, 9)) await writer.write(part);
      assert.deepEqual(seen.offsets, [8 * MiB]);
      // the rest called at once, three at a time; the last 100 bytes go through the cache
      for (let i = 9; i < parts.length; i += 3) {
        await Promise.all(parts.slice(i, i + 3).map((part) => writer.write(part)));
      }
      await writer.sync();
      assert.equal(seen.most, 3, "three direct writes ran at once");
      assert.deepEqual(
        seen.offsets,
        Array.from({ length: 12 }, (_, i) => (8 + i) * MiB),
        "each direct write had the offset of its place in the calls",
      );
      const stored = await Deno.readFile(path);
      assert.equal(stored.length, bytes.length);
      assert.equal(await sha256Hex(stored), await sha256Hex(bytes));
    } finally {
      writer.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "filesystem driver: a direct write that writes less than all, or fails, while others " +
    "run has the rest written through the cache at its place; after a failed one, no direct " +
    "write",
  ignore: directSkipReason !== null,
  async fn() {
    const MiB = 1024 * 1024;
    for (const failure of ["short", "failed"] as const) {
      const dir = await Deno.makeTempDir({ prefix: "append-overlap-" });
      const path = `${dir}/data`;
      // the third direct write (the second started beside another) writes 5 blocks, or none
      const { io, seen } = watchedIo((n, wrote) =>
        n === 2 ? (failure === "short" ? 5 * BLOCK : -1) : wrote
      );
      const file = await Deno.open(path, { write: true, create: true });
      const writer = fileAppender(path, file, 0, io);
      try {
        const bytes = noise(16 * MiB, 11);
        const parts: Uint8Array[] = [];
        for (let at = 0; at < bytes.length; at += MiB) {
          const part = writer.layout!.allocate(MiB);
          part.set(bytes.subarray(at, at + MiB));
          parts.push(part);
        }
        for (const part of parts.slice(0, 9)) await writer.write(part);
        await Promise.all(parts.slice(9, 12).map((part) => writer.write(part)));
        assert.equal(seen.most, 3);
        const before = seen.offsets.length;
        for (const part of parts.slice(12)) await writer.write(part);
        if (failure === "failed") {
          assert.equal(seen.closed, 1, "the descriptor was closed");
          assert.equal(seen.offsets.length, before, "no direct write after a failed one");
        } else {
          assert.equal(seen.closed, 0);
          assert.equal(seen.offsets.length, before + 4, "direct writes go on");
        }
        await writer.sync();
        const stored = await Deno.readFile(path);
        assert.equal(stored.length, bytes.length);
        assert.equal(await sha256Hex(stored), await sha256Hex(bytes), `${failure}: stored whole`);
      } finally {
        writer.close();
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
});
