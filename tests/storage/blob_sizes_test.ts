/**
 * Blob sizes in PostgreSQL (`src/storage/postgres/blobs.ts`) over a memory driver that counts
 * its stats and fails calls on demand: a recorded size is answered without the driver; a blob
 * without a row is answered by the driver and no row is made; a write or commit records the
 * size only once the bytes are stored; a delete removes the row before the bytes, and at once
 * even when asked to be lazy; the one-query look-up of a linked blob, also for many callers at
 * once; and what the table refuses.
 */

import assert from "node:assert/strict";
import { DriverBlobStore } from "../../src/storage/blobs.ts";
import type { DeleteOptions, ObjectInfo } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { blobKey, uploadFileKey } from "../../src/storage/keys.ts";
import { PostgresMetadataStore } from "../../src/storage/metadata/postgres.ts";
import { BlobSizes, SizedBlobStore } from "../../src/storage/postgres/blobs.ts";
import { connect, type Sql, sqlState } from "../../src/storage/postgres/client.ts";
import type { Digest, RepositoryName, UploadId } from "../../src/types/oci.ts";
import { testDatabase } from "../helpers/postgres.ts";

const db = await testDatabase();
const UPLOAD = "0f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;
const APP = "team/app" as RepositoryName;
const encoder = new TextEncoder();

async function digestOf(bytes: Uint8Array<ArrayBuffer>): Promise<Digest> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}` as Digest;
}

/** A memory driver that counts its stats and fails the operations named in `failing`. */
class CountingDriver extends MemoryDriver {
  stats = 0;
  readonly failing = new Set<"put" | "move" | "delete">();

  override stat(key: string): Promise<ObjectInfo | null> {
    this.stats++;
    return super.stat(key);
  }

  override async put(key: string, bytes: Uint8Array | string): Promise<void> {
    if (this.failing.has("put")) throw new Error("injected put failure");
    await super.put(key, bytes);
  }

  override move(from: string, to: string): Promise<void> {
    if (this.failing.has("move")) return Promise.reject(new Error("injected move failure"));
    return super.move(from, to);
  }

  /** The `lazy` option of every delete. */
  readonly lazyDeletes: boolean[] = [];

  override delete(key: string, options?: DeleteOptions): Promise<boolean> {
    this.lazyDeletes.push(options?.lazy ?? false);
    if (this.failing.has("delete")) return Promise.reject(new Error("injected delete failure"));
    return super.delete(key);
  }
}

interface Fixture {
  readonly sql: Sql;
  readonly meta: PostgresMetadataStore;
  readonly driver: CountingDriver;
  readonly sizes: BlobSizes;
  readonly store: SizedBlobStore;
  /** The sizes recorded for a digest (none or one). */
  rows(digest: Digest): Promise<number[]>;
}

/** Registers a test over a migrated database of its own and a store over a counting driver. */
function test(name: string, fn: (f: Fixture) => Promise<void>): void {
  db.test(`blob sizes: ${name}`, async () => {
    const sql = connect(await db.another(), { max: 4 });
    try {
      const meta = await PostgresMetadataStore.open(sql);
      const driver = new CountingDriver();
      const sizes = new BlobSizes(sql);
      const store = new SizedBlobStore(new DriverBlobStore(driver), sizes);
      const rows = async (digest: Digest) =>
        (await sql<{ size: string }[]>`select size from blobs where digest = ${digest}`)
          .map((row) => Number(row.size));
      await fn({ sql, meta, driver, sizes, store, rows });
    } finally {
      await sql.end();
    }
  });
}

test("a recorded size is answered without the driver", async ({ driver, store, rows }) => {
  const bytes = encoder.encode("a manifest, say");
  const digest = await digestOf(bytes);
  await store.write(digest, bytes);
  assert.deepEqual(await rows(digest), [bytes.length]);
  driver.stats = 0;
  assert.equal(await store.size(digest), bytes.length);
  assert.equal(driver.stats, 0);
  // Writing the same bytes again (a manifest PUT again) asks the driver nothing either.
  await store.write(digest, bytes);
  assert.equal(driver.stats, 0);
});

test("a blob without a row is answered by the driver, and no row is made", async (f) => {
  const { driver, store, rows } = f;
  const bytes = encoder.encode("stored before the table");
  const digest = await digestOf(bytes);
  await driver.put(blobKey(digest), bytes);
  driver.stats = 0;
  assert.equal(await store.size(digest), bytes.length);
  assert.equal(driver.stats, 1);
  assert.deepEqual(await rows(digest), [], "a look-up inserted a row");
  const absent = await digestOf(encoder.encode("never stored"));
  assert.equal(await store.size(absent), null);
  assert.deepEqual(await rows(absent), []);
});

test("a commit records the size after the move, and nothing when it fails", async (f) => {
  const { driver, store, rows } = f;
  const bytes = encoder.encode("uploaded bytes");
  const digest = await digestOf(bytes);
  await driver.put(uploadFileKey(UPLOAD, "data"), bytes);
  driver.failing.add("move");
  await assert.rejects(store.commitUpload(UPLOAD, digest, bytes.length), /injected move/);
  assert.deepEqual(await rows(digest), [], "a row for bytes that were not stored");
  driver.failing.clear();
  driver.stats = 0;
  await store.commitUpload(UPLOAD, digest, bytes.length);
  assert.equal(driver.stats, 0, "the caller's size is recorded, not asked again");
  assert.deepEqual(await rows(digest), [bytes.length]);
  assert.deepEqual(await driver.get(blobKey(digest)), bytes);
  // Without the caller's size, the store asks the driver once.
  const other = encoder.encode("another upload");
  const otherDigest = await digestOf(other);
  await driver.put(uploadFileKey(UPLOAD, "data"), other);
  await store.commitUpload(UPLOAD, otherDigest);
  assert.deepEqual(await rows(otherDigest), [other.length]);
});

test("a write that fails records nothing", async ({ driver, store, rows }) => {
  const bytes = encoder.encode("not written");
  const digest = await digestOf(bytes);
  driver.failing.add("put");
  await assert.rejects(store.write(digest, bytes), /injected put/);
  assert.deepEqual(await rows(digest), []);
  assert.equal(await store.size(digest), null);
});

test("a delete removes the row before the bytes", async ({ driver, store, rows }) => {
  const bytes = encoder.encode("to be collected");
  const digest = await digestOf(bytes);
  await store.write(digest, bytes);
  // The bytes' delete fails after the row went: bytes without a row, answered by the driver.
  driver.failing.add("delete");
  await assert.rejects(store.delete(digest), /injected delete/);
  assert.deepEqual(await rows(digest), []);
  driver.stats = 0;
  assert.equal(await store.size(digest), bytes.length);
  assert.equal(driver.stats, 1);
  driver.failing.clear();
  // A collection's lazy delete is made at once: deferred past the blob's lock, it could take
  // bytes a commit had meanwhile recorded.
  assert.equal(await store.delete(digest, { lazy: true }), true);
  assert.deepEqual(driver.lazyDeletes, [false, false]);
  assert.equal(await store.size(digest), null);
  assert.equal(await store.delete(digest), false);
});

test("the look-up of a linked blob: not linked, linked without a row, linked with one", async (f) => {
  const { meta, sizes, store } = f;
  const bytes = encoder.encode("a layer");
  const digest = await digestOf(bytes);
  assert.equal(await sizes.linked(APP, digest), null);
  await meta.linkLayer(APP, digest);
  assert.deepEqual(await sizes.linked(APP, digest), { size: null });
  await store.write(digest, bytes);
  assert.deepEqual(await sizes.linked(APP, digest), { size: bytes.length });
  assert.equal(await sizes.linked("team/other" as RepositoryName, digest), null);
  await meta.unlinkLayer(APP, digest);
  assert.equal(await sizes.linked(APP, digest), null);
});

test("look-ups made at once share queries and each gets its own answer", async (f) => {
  const { meta, sizes, store } = f;
  // Forty blobs: linked with a row, linked without one, or not linked; asked for at once,
  // from two repositories, each several times.
  const cases = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const bytes = encoder.encode(`layer ${i}`);
    const digest = await digestOf(bytes);
    const kind = i % 3;
    if (kind !== 2) await meta.linkLayer(APP, digest);
    if (kind === 0) await store.write(digest, bytes);
    return {
      digest,
      expected: kind === 0 ? { size: bytes.length } : kind === 1 ? { size: null } : null,
    };
  }));
  const other = "team/other" as RepositoryName;
  const asked = cases.flatMap((c) => [c, c, { ...c, other: true }]);
  const answers = await Promise.all(
    asked.map((c) => sizes.linked("other" in c ? other : APP, c.digest)),
  );
  assert.deepEqual(answers, asked.map((c) => "other" in c ? null : c.expected));
});

test("the table refuses a negative size and a malformed digest", async ({ sql, sizes }) => {
  const digest = await digestOf(encoder.encode("x"));
  await assert.rejects(sizes.record(digest, -1), (e) => sqlState(e) === "23514");
  await assert.rejects(
    sql`insert into blobs (digest, size) values ('sha256:XYZ', 1)`,
    (e) => sqlState(e) === "23514",
  );
  await assert.rejects(
    sql`insert into blobs (digest, size) values (${digest}, null)`,
    (e) => sqlState(e) === "23502",
  );
  // Sizes above 2^31 fit (bigint).
  await sizes.record(digest, 5 * 2 ** 30);
  assert.equal(await sizes.get(digest), 5 * 2 ** 30);
});
