/**
 * Blob stores: one suite run against `DriverBlobStore` over a memory driver and against the
 * cache layer (`CachedBlobStore`) over it: size, open (whole and a span), read, idempotent
 * write, commit of an upload session's data, delete and list. Then what is particular to the
 * cache: a size is remembered, an absent or deleted blob's size never is, and a size read
 * racing a delete leaves nothing stale (a driver that holds calls back forces each
 * interleaving).
 */

import assert from "node:assert/strict";
import { type BlobStore, DriverBlobStore } from "../../src/storage/blobs.ts";
import { CachedBlobStore } from "../../src/storage/cache.ts";
import { ObjectMissing } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { blobKey, uploadFileKey } from "../../src/storage/keys.ts";
import type { Digest, UploadId } from "../../src/types/oci.ts";
import { HeldDriver, raceAtEveryOffset } from "./held_driver.ts";

const encoder = new TextEncoder();
const UPLOAD = "0f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;

/** The sha256 digest of bytes (the stores do not check it; the services do). */
async function digestOf(bytes: Uint8Array<ArrayBuffer>): Promise<Digest> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}` as Digest;
}

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A memory driver with a clock that ticks on every modification time it gives out. */
function tickingDriver(): MemoryDriver {
  let now = 1_000;
  return new MemoryDriver(() => now++);
}

const VARIANTS: { label: string; make: (driver: MemoryDriver) => BlobStore }[] = [
  { label: "driver", make: (driver) => new DriverBlobStore(driver) },
  { label: "cached", make: (driver) => new CachedBlobStore(new DriverBlobStore(driver)) },
];

for (const variant of VARIANTS) {
  const test = (title: string, fn: (store: BlobStore, driver: MemoryDriver) => Promise<void>) =>
    Deno.test(`${variant.label} blob store: ${title}`, () => {
      const driver = tickingDriver();
      return fn(variant.make(driver), driver);
    });

  test("size is null for an absent blob and the byte count once written", async (store) => {
    const bytes = encoder.encode("hello blob");
    const digest = await digestOf(bytes);
    assert.equal(await store.size(digest), null);
    await store.write(digest, bytes);
    assert.equal(await store.size(digest), bytes.length);
  });

  test("write stores the bytes at the blob's key", async (store, driver) => {
    const bytes = encoder.encode("at its key");
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    assert.deepEqual(await driver.get(blobKey(digest)), bytes);
  });

  test("an empty blob has size 0 and reads as no bytes", async (store) => {
    const bytes = new Uint8Array(0);
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    assert.equal(await store.size(digest), 0);
    assert.deepEqual(await store.read(digest), new Uint8Array(0));
    const reader = await store.open(digest);
    assert.equal(reader?.size, 0);
    assert.deepEqual(await bytesOf(reader!.stream), new Uint8Array(0));
  });

  test("open streams the whole blob with its size", async (store) => {
    const bytes = new Uint8Array(100_000).map((_, i) => i % 253);
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    const reader = await store.open(digest);
    assert.equal(reader?.size, bytes.length);
    assert.deepEqual(await bytesOf(reader!.stream), bytes);
  });

  test("open of a span streams just those bytes and gives the whole size", async (store) => {
    const bytes = new Uint8Array(1000).map((_, i) => i % 256);
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    const middle = await store.open(digest, { start: 10, length: 20 });
    assert.equal(middle?.size, 1000);
    assert.deepEqual(await bytesOf(middle!.stream), bytes.slice(10, 30));
    const tail = await store.open(digest, { start: 999, length: 1 });
    assert.deepEqual(await bytesOf(tail!.stream), bytes.slice(999));
  });

  test("open and read of an absent blob are null", async (store) => {
    const digest = await digestOf(encoder.encode("absent"));
    assert.equal(await store.open(digest), null);
    assert.equal(await store.open(digest, { start: 0, length: 1 }), null);
    assert.equal(await store.read(digest), null);
  });

  test("read gives the whole bytes", async (store) => {
    const bytes = encoder.encode(`{"schemaVersion":2}`);
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    assert.deepEqual(await store.read(digest), bytes);
  });

  test("writing a stored blob again touches nothing", async (store, driver) => {
    const bytes = encoder.encode("written once");
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    const first = await driver.stat(blobKey(digest));
    await store.write(digest, bytes);
    await store.write(digest, bytes);
    assert.deepEqual(await driver.stat(blobKey(digest)), first, "not written again");
    assert.deepEqual(await store.read(digest), bytes);
  });

  test("commitUpload moves the session's data to the blob's key", async (store, driver) => {
    const bytes = encoder.encode("uploaded bytes");
    const digest = await digestOf(bytes);
    await driver.put(uploadFileKey(UPLOAD, "data"), bytes);
    await driver.put(uploadFileKey(UPLOAD, "hashstate"), "state");
    assert.equal(await store.size(digest), null);
    await store.commitUpload(UPLOAD, digest);
    assert.equal(await store.size(digest), bytes.length);
    assert.deepEqual(await store.read(digest), bytes);
    assert.equal(await driver.get(uploadFileKey(UPLOAD, "data")), null, "moved, not copied");
    assert.deepEqual(await driver.list(`uploads/${UPLOAD}`), ["hashstate"], "the rest stays");
  });

  test("commitUpload replaces a blob already stored under the digest", async (store, driver) => {
    const bytes = encoder.encode("same bytes twice");
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    await driver.put(uploadFileKey(UPLOAD, "data"), bytes);
    await store.commitUpload(UPLOAD, digest);
    assert.deepEqual(await store.read(digest), bytes);
    assert.equal(await driver.stat(uploadFileKey(UPLOAD, "data")), null);
  });

  test("commitUpload of a session without data rejects with ObjectMissing", async (store) => {
    const digest = await digestOf(encoder.encode("never uploaded"));
    await assert.rejects(store.commitUpload(UPLOAD, digest), ObjectMissing);
    assert.equal(await store.size(digest), null);
  });

  test("delete removes a blob and tells whether it was stored", async (store) => {
    const bytes = encoder.encode("short-lived");
    const digest = await digestOf(bytes);
    assert.equal(await store.delete(digest), false);
    await store.write(digest, bytes);
    assert.equal(await store.size(digest), bytes.length);
    assert.equal(await store.delete(digest), true);
    assert.equal(await store.size(digest), null);
    assert.equal(await store.read(digest), null);
    assert.equal(await store.open(digest), null);
    assert.equal(await store.delete(digest), false);
  });

  test("a deleted blob can be written again", async (store) => {
    const bytes = encoder.encode("back again");
    const digest = await digestOf(bytes);
    await store.write(digest, bytes);
    await store.delete(digest);
    await store.write(digest, bytes);
    assert.deepEqual(await store.read(digest), bytes);
    assert.equal(await store.size(digest), bytes.length);
  });

  test(
    "list yields every stored digest, sha256 and sha512, and nothing else",
    async (store, driver) => {
      const digests = new Set<Digest>();
      for (const text of ["one", "two", "three"]) {
        const bytes = encoder.encode(text);
        const digest = await digestOf(bytes);
        await store.write(digest, bytes);
        digests.add(digest);
      }
      const sha512 = `sha512:${"ab".repeat(64)}` as Digest;
      await store.write(sha512, encoder.encode("512"));
      digests.add(sha512);
      // Objects that are not blobs are not listed.
      await driver.put("blobs/sha256/ab/not-a-digest", "x");
      await driver.put(`blobs/md5/ab/${"ab".repeat(16)}`, "x");
      await driver.put(uploadFileKey(UPLOAD, "data"), "x");
      const listed: Digest[] = [];
      for await (const digest of store.list()) listed.push(digest);
      assert.deepEqual(new Set(listed), digests);
      assert.equal(listed.length, digests.size);
    },
  );

  test("list of an empty store yields nothing", async (store) => {
    for await (const digest of store.list()) assert.fail(`unexpected ${digest}`);
  });
}

// --- the cache layer in particular ---

Deno.test("cached blob store: a size once read is served without the driver", async () => {
  const driver = new MemoryDriver();
  const bytes = encoder.encode("remembered");
  const digest = await digestOf(bytes);
  await driver.put(blobKey(digest), bytes);
  const store = new CachedBlobStore(new DriverBlobStore(driver));
  assert.equal(await store.size(digest), bytes.length);
  await driver.delete(blobKey(digest)); // behind the cache's back (a second writer)
  assert.equal(await store.size(digest), bytes.length);
});

Deno.test("cached blob store: an absent blob's size is not remembered", async () => {
  const driver = new MemoryDriver();
  const store = new CachedBlobStore(new DriverBlobStore(driver));
  const bytes = encoder.encode("arrives later");
  const digest = await digestOf(bytes);
  assert.equal(await store.size(digest), null);
  await driver.put(uploadFileKey(UPLOAD, "data"), bytes);
  await store.commitUpload(UPLOAD, digest);
  assert.equal(await store.size(digest), bytes.length);
});

Deno.test("cached blob store: a delete is never hidden by a remembered size", async () => {
  const store = new CachedBlobStore(new DriverBlobStore(new MemoryDriver()));
  const bytes = encoder.encode("deleted");
  const digest = await digestOf(bytes);
  await store.write(digest, bytes);
  assert.equal(await store.size(digest), bytes.length);
  assert.equal(await store.delete(digest), true);
  assert.equal(await store.size(digest), null);
});

Deno.test("cached blob store: write after a remembered size skips the store", async () => {
  const driver = tickingDriver();
  const store = new CachedBlobStore(new DriverBlobStore(driver));
  const bytes = encoder.encode("skipped");
  const digest = await digestOf(bytes);
  await store.write(digest, bytes);
  const first = await driver.stat(blobKey(digest));
  await store.write(digest, bytes);
  assert.deepEqual(await driver.stat(blobKey(digest)), first);
});

Deno.test("cached blob store: a size read racing a delete leaves no stale size", async () => {
  const driver = new HeldDriver();
  const bytes = encoder.encode("racing");
  const digest = await digestOf(bytes);
  await driver.put(blobKey(digest), bytes);
  const store = new CachedBlobStore(new DriverBlobStore(driver));
  const release = driver.hold("stat", blobKey(digest));
  const racing = store.size(digest);
  await driver.whenHeld("stat", blobKey(digest));
  assert.equal(await store.delete(digest), true);
  release();
  assert.equal(await racing, bytes.length, "the racing read started before the delete");
  assert.equal(await store.size(digest), null);
});

Deno.test("cached blob store: a size read starting during a delete never remembers the size", async () => {
  const bytes = encoder.encode("racing at every offset");
  const digest = await digestOf(bytes);
  await raceAtEveryOffset(async () => {
    const driver = new HeldDriver();
    await driver.put(blobKey(digest), bytes);
    const store = new CachedBlobStore(new DriverBlobStore(driver));
    return {
      driver,
      race: {
        writeCall: "delete",
        writeKey: blobKey(digest),
        readCall: "stat",
        readKey: blobKey(digest),
        write: () => store.delete(digest),
        read: () => store.size(digest),
        check: async () => assert.equal(await store.size(digest), null),
      },
    };
  });
});

Deno.test("cached blob store: a write of the blob during its delete never leaves a size behind", async () => {
  const bytes = encoder.encode("written while deleted");
  const digest = await digestOf(bytes);
  await raceAtEveryOffset(async () => {
    const driver = new HeldDriver();
    await driver.put(blobKey(digest), bytes);
    const store = new CachedBlobStore(new DriverBlobStore(driver));
    return {
      driver,
      race: {
        writeCall: "delete",
        writeKey: blobKey(digest),
        readCall: "stat", // the write's look at what is stored
        readKey: blobKey(digest),
        write: () => store.delete(digest),
        read: () => store.write(digest, bytes),
        // Whatever the order, the cache must agree with the store.
        check: async () => {
          const stored = (await driver.stat(blobKey(digest)))?.size ?? null;
          assert.equal(await store.size(digest), stored);
        },
      },
    };
  });
});
