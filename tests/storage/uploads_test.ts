/**
 * Upload session storage (`DriverUploadStore`) over a memory driver: create, get, append from
 * a byte source (batches observed in order; an append at an offset cuts what lay beyond it; a
 * failing source or observer leaves the data as it was), truncate, saveHashState (replaced
 * only once its `after` resolved, never when it rejects), readData, remove and list.
 */

import { sourceOf } from "../helpers/byte_sources.ts";
import assert from "node:assert/strict";
import type { ByteSource } from "../../src/storage/byte_source.ts";
import { AlreadyExists, type AppendWriter } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { uploadFileKey } from "../../src/storage/keys.ts";
import { DriverUploadStore } from "../../src/storage/uploads.ts";
import type { RepositoryName, UploadId } from "../../src/types/oci.ts";

const ID = "0f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;
const OTHER = "1f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;
const REPO = "myorg/app" as RepositoryName;
const STARTED = new Date("2024-05-06T07:08:09.010Z");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A byte source that gives `bytes` and then fails. */
function failingSource(bytes: Uint8Array, error: Error): ByteSource {
  const inner = sourceOf(bytes);
  let done = false;
  return {
    async read(into) {
      if (done) throw error;
      const view = await inner.read(into);
      if (view.length === 0) {
        done = true;
        throw error;
      }
      return view;
    },
  };
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return decoder.decode(await new Response(stream).arrayBuffer());
}

async function fresh(): Promise<{ store: DriverUploadStore; driver: MemoryDriver }> {
  const driver = new MemoryDriver(() => 5_000);
  const store = new DriverUploadStore(driver);
  await store.create(ID, REPO, STARTED, "state-0");
  return { store, driver };
}

async function data(driver: MemoryDriver, id = ID): Promise<string | null> {
  const bytes = await driver.get(uploadFileKey(id, "data"));
  return bytes === null ? null : decoder.decode(bytes);
}

Deno.test("create makes an empty session whose files get reads back", async () => {
  const { store } = await fresh();
  assert.deepEqual(await store.get(ID), {
    id: ID,
    repository: REPO,
    startedAt: STARTED.toISOString(),
    hashState: "state-0",
    dataSize: 0,
    modifiedAt: 5_000,
  });
});

Deno.test("create writes the four files of a session", async () => {
  const { driver } = await fresh();
  assert.deepEqual(await driver.list(`uploads/${ID}`), [
    "data",
    "hashstate",
    "repository",
    "startedat",
  ]);
  assert.equal(await data(driver), "");
});

Deno.test("create of an existing session rejects with AlreadyExists", async () => {
  const { store } = await fresh();
  await assert.rejects(store.create(ID, REPO, STARTED, "again"), AlreadyExists);
  assert.equal((await store.get(ID))?.hashState, "state-0");
});

Deno.test("get is null for an unknown session", async () => {
  const { store } = await fresh();
  assert.equal(await store.get(OTHER), null);
});

Deno.test("get is null when the repository or data file is missing", async () => {
  const { store, driver } = await fresh();
  await driver.delete(uploadFileKey(ID, "repository"));
  assert.equal(await store.get(ID), null);
  await store.create(OTHER, REPO, STARTED, "s");
  await driver.delete(uploadFileKey(OTHER, "data"));
  assert.equal(await store.get(OTHER), null);
});

Deno.test("get reports a missing start time as empty and a missing state as null", async () => {
  const { store, driver } = await fresh();
  await driver.delete(uploadFileKey(ID, "startedat"));
  await driver.delete(uploadFileKey(ID, "hashstate"));
  const session = await store.get(ID);
  assert.equal(session?.startedAt, "");
  assert.equal(session?.hashState, null);
});

Deno.test("append writes everything the source yields and reports the count", async () => {
  const { store, driver } = await fresh();
  const { written, flushed } = await store.append(ID, 0, sourceOf(encoder.encode("hello"), 2));
  await flushed;
  assert.equal(written, 5);
  assert.equal(await data(driver), "hello");
  assert.equal((await store.get(ID))?.dataSize, 5);
});

Deno.test("append continues at the offset it is given", async () => {
  const { store, driver } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("abc")))).flushed;
  const { written, flushed } = await store.append(ID, 3, sourceOf(encoder.encode("def")));
  await flushed;
  assert.equal(written, 3);
  assert.equal(await data(driver), "abcdef");
});

Deno.test("append at an offset cuts what lay beyond it", async () => {
  const { store, driver } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("abcdefgh")))).flushed;
  await (await store.append(ID, 3, sourceOf(encoder.encode("XY")))).flushed;
  assert.equal(await data(driver), "abcXY");
});

Deno.test("append of an empty source at an offset only cuts", async () => {
  const { store, driver } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("abcdef")))).flushed;
  const { written, flushed } = await store.append(ID, 2, sourceOf(new Uint8Array(0)));
  await flushed;
  assert.equal(written, 0);
  assert.equal(await data(driver), "ab");
});

Deno.test("append shows every batch to the observer, in order, covering all bytes", async () => {
  const { store, driver } = await fresh();
  const bytes = new Uint8Array(2.5 * 1024 * 1024).map((_, i) => (i * 7) % 256);
  const seen: Uint8Array[] = [];
  const { written, flushed } = await store.append(
    ID,
    0,
    sourceOf(bytes, 100_000),
    (batch) => {
      seen.push(batch.slice()); // the batch buffer is reused once observed
      return Promise.resolve();
    },
  );
  await flushed;
  assert.equal(written, bytes.length);
  assert.ok(seen.length >= 3, `${seen.length} batches for 2.5 MiB`);
  const joined = new Uint8Array(seen.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const batch of seen) {
    joined.set(batch, at);
    at += batch.length;
  }
  assert.deepEqual(joined, bytes);
  assert.deepEqual(await driver.get(uploadFileKey(ID, "data")), bytes);
});

Deno.test("append of a failing source rethrows and cuts the data back to the offset", async () => {
  const { store, driver } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("kept")))).flushed;
  const failure = new Error("client went away");
  await assert.rejects(
    store.append(ID, 4, failingSource(encoder.encode("lost bytes"), failure)),
    (error) => error === failure,
  );
  assert.equal(await data(driver), "kept");
});

Deno.test("append whose observer rejects rethrows and cuts the data back to the offset", async () => {
  const { store, driver } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("kept")))).flushed;
  const failure = new Error("hasher failed");
  await assert.rejects(
    store.append(ID, 4, sourceOf(encoder.encode("more")), () => Promise.reject(failure)),
    (error) => error === failure,
  );
  assert.equal(await data(driver), "kept");
});

Deno.test("append to an unknown session rejects", async () => {
  const { store } = await fresh();
  await assert.rejects(store.append(OTHER, 0, sourceOf(encoder.encode("x"))));
});

Deno.test("truncate cuts the data to a size", async () => {
  const { store, driver } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("abcdef")))).flushed;
  await store.truncate(ID, 2);
  assert.equal(await data(driver), "ab");
  assert.equal((await store.get(ID))?.dataSize, 2);
  await store.truncate(ID, 0);
  assert.equal(await data(driver), "");
});

Deno.test("saveHashState replaces the state", async () => {
  const { store } = await fresh();
  await store.saveHashState(ID, "state-1");
  assert.equal((await store.get(ID))?.hashState, "state-1");
});

Deno.test("saveHashState with `after` replaces the state only once it resolved", async () => {
  const { store } = await fresh();
  let flush!: () => void;
  const after = new Promise<void>((resolve) => (flush = resolve));
  const saving = store.saveHashState(ID, "state-2", after);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal((await store.get(ID))?.hashState, "state-0");
  flush();
  await saving;
  assert.equal((await store.get(ID))?.hashState, "state-2");
});

Deno.test("saveHashState with a rejecting `after` rejects and leaves the old state", async () => {
  const { store } = await fresh();
  const failure = new Error("flush failed");
  await assert.rejects(
    store.saveHashState(ID, "never", Promise.reject(failure)),
    (error) => error === failure,
  );
  assert.equal((await store.get(ID))?.hashState, "state-0");
});

Deno.test("saveHashState after an append's flush covers the appended bytes", async () => {
  const { store, driver } = await fresh();
  const { flushed } = await store.append(ID, 0, sourceOf(encoder.encode("abc")));
  await store.saveHashState(ID, "state-3", flushed);
  assert.equal(await data(driver), "abc");
  assert.equal((await store.get(ID))?.hashState, "state-3");
});

Deno.test("readData streams the data from the start", async () => {
  const { store } = await fresh();
  await (await store.append(ID, 0, sourceOf(encoder.encode("streamed bytes")))).flushed;
  assert.equal(await text(await store.readData(ID)), "streamed bytes");
});

Deno.test("readData of an unknown session rejects", async () => {
  const { store } = await fresh();
  await assert.rejects(store.readData(OTHER));
});

Deno.test("remove deletes the whole session and tells whether it existed", async () => {
  const { store, driver } = await fresh();
  await store.create(OTHER, REPO, STARTED, "s");
  assert.equal(await store.remove(ID), true);
  assert.equal(await store.get(ID), null);
  assert.deepEqual(await driver.list(`uploads/${ID}`), []);
  assert.equal(await store.remove(ID), false);
  assert.ok(await store.get(OTHER), "other sessions stay");
});

Deno.test("list names every session folder, including ones that are not ours", async () => {
  const { store, driver } = await fresh();
  assert.deepEqual(await store.list(), [ID]);
  await store.create(OTHER, REPO, STARTED, "s");
  await driver.put("uploads/stray/data", "x");
  assert.deepEqual(await store.list(), [ID, OTHER, "stray"]);
  await store.remove(ID);
  assert.deepEqual(await store.list(), [OTHER, "stray"]);
});

Deno.test("list of an empty uploads area is empty", async () => {
  assert.deepEqual(await new DriverUploadStore(new MemoryDriver()).list(), []);
});

Deno.test("append writes whole batches of 1 MiB in order, from a source that transfers the buffer it reads into", async () => {
  const MiB = 1024 * 1024;
  const writes: { at: number; length: number; size: number }[] = [];
  // a driver whose writers record what they were given
  class RecordingDriver extends MemoryDriver {
    override async append(key: string, offset: number): Promise<AppendWriter> {
      const writer = await super.append(key, offset);
      let at = offset;
      return {
        async write(bytes: Uint8Array) {
          writes.push({ at, length: bytes.length, size: bytes.buffer.byteLength });
          at += bytes.length;
          await writer.write(bytes);
        },
        sync: () => writer.sync(),
        close: () => writer.close(),
      };
    }
  }
  const driver = new RecordingDriver(() => 5_000);
  const store = new DriverUploadStore(driver);
  await store.create(ID, REPO, STARTED, "state-0");
  const first = new Uint8Array(5000).fill(1);
  await (await store.append(ID, 0, sourceOf(first))).flushed;
  // a source that transfers the buffer it reads into, as a BYOB stream reader does
  const bytes = new Uint8Array(3 * MiB + 4000).map((_, i) => (i * 13) % 256);
  const inner2 = sourceOf(bytes, 40_000);
  const transferring: ByteSource = {
    async read(into) {
      const { byteOffset, length, buffer } = await inner2.read(into);
      return new Uint8Array(buffer.transfer(), byteOffset, length);
    },
  };
  writes.length = 0;
  const { written, flushed } = await store.append(ID, 5000, transferring);
  await flushed;
  assert.equal(written, bytes.length);
  assert.deepEqual(writes.map((w) => [w.at, w.length]), [
    [5000, MiB],
    [5000 + MiB, MiB],
    [5000 + 2 * MiB, MiB],
    [5000 + 3 * MiB, 4000],
  ]);
  assert.ok(writes.every((w) => w.size === MiB), "views of the batch buffers, transferred back");
  const stored = await driver.get(uploadFileKey(ID, "data"));
  assert.deepEqual(stored?.subarray(0, 5000), first);
  assert.deepEqual(stored?.subarray(5000), bytes);
});
