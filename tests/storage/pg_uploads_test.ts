/**
 * Upload sessions as rows of PostgreSQL (`src/storage/postgres/uploads.ts`), their data over a
 * memory driver: a session reads back whole; its state is replaced only once the data's flush
 * resolved; a session missing either half is not found but is listed, so the upload service's
 * purge removes it (a crash between the two writes of a create or a remove); a session the bucket
 * held before the table existed goes on from its objects; and what the table refuses.
 */

import assert from "node:assert/strict";
import { UploadService } from "../../src/services/uploads.ts";
import { AlreadyExists } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { KeyedMutex } from "../../src/storage/lock.ts";
import { uploadFileKey } from "../../src/storage/keys.ts";
import { PostgresMetadataStore } from "../../src/storage/metadata/postgres.ts";
import { connect, type Sql, sqlState } from "../../src/storage/postgres/client.ts";
import { PostgresUploadStore } from "../../src/storage/postgres/uploads.ts";
import { DriverBlobStore } from "../../src/storage/blobs.ts";
import type { RepositoryName, UploadId } from "../../src/types/oci.ts";
import { sourceOf } from "../helpers/byte_sources.ts";
import { testDatabase } from "../helpers/postgres.ts";

const db = await testDatabase();
const ID = "0f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;
const OTHER = "1f0e0d0c-0b0a-4098-8776-655443322111" as UploadId;
const APP = "team/app" as RepositoryName;
const START = new Date("2026-12-01T10:00:00.000Z");
const encoder = new TextEncoder();

interface Fixture {
  readonly sql: Sql;
  readonly driver: MemoryDriver;
  readonly store: PostgresUploadStore;
  /** The session rows, by id. */
  rows(): Promise<string[]>;
}

function test(name: string, fn: (f: Fixture) => Promise<void>): void {
  db.test(`upload sessions in PostgreSQL: ${name}`, async () => {
    const sql = connect(await db.another(), { max: 4 });
    try {
      await PostgresMetadataStore.open(sql); // migrates
      const driver = new MemoryDriver();
      const store = new PostgresUploadStore(sql, driver);
      const rows = async () =>
        (await sql<{ id: string }[]>`select id from upload_sessions order by id`).map((r) => r.id);
      await fn({ sql, driver, store, rows });
    } finally {
      await sql.end();
    }
  });
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

test("a session reads back whole; the bucket holds its data only", async ({ driver, store }) => {
  await store.create(ID, APP, START, "state-0");
  assert.deepEqual(await store.get(ID), {
    id: ID,
    repository: APP,
    startedAt: START.toISOString(),
    hashState: "state-0",
    dataSize: 0,
    modifiedAt: (await driver.stat(uploadFileKey(ID, "data")))!.modifiedAt,
  });
  const { written, flushed } = await store.append(ID, 0, sourceOf(encoder.encode("hello")));
  assert.equal(written, 5);
  await store.saveHashState(ID, "state-5", flushed);
  const got = await store.get(ID);
  assert.equal(got?.hashState, "state-5");
  assert.equal(got?.dataSize, 5);
  assert.equal(await text(await store.readData(ID)), "hello");
  await store.truncate(ID, 2);
  assert.equal((await store.get(ID))?.dataSize, 2);
  for (const file of ["repository", "startedat", "hashstate"] as const) {
    assert.equal(await driver.stat(uploadFileKey(ID, file)), null, `${file} in the bucket`);
  }
});

test("create of an existing session rejects with AlreadyExists", async ({ store }) => {
  await store.create(ID, APP, START, "s");
  await assert.rejects(store.create(ID, APP, START, "s"), AlreadyExists);
});

test("the state is replaced only once `after` resolved, and kept when it rejects", async (f) => {
  const { store } = f;
  await store.create(ID, APP, START, "old");
  let release!: () => void;
  const after = new Promise<void>((resolve) => release = resolve);
  const saving = store.saveHashState(ID, "new", after);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal((await store.get(ID))?.hashState, "old");
  release();
  await saving;
  assert.equal((await store.get(ID))?.hashState, "new");
  await assert.rejects(
    store.saveHashState(ID, "newer", Promise.reject(new Error("flush failed"))),
    /flush failed/,
  );
  assert.equal((await store.get(ID))?.hashState, "new");
});

test("remove takes the data and the row; a second remove finds nothing", async (f) => {
  const { driver, store, rows } = f;
  await store.create(ID, APP, START, "s");
  await store.append(ID, 0, sourceOf(encoder.encode("bytes"))).then((a) => a.flushed);
  assert.equal(await store.remove(ID), true);
  assert.equal(await store.get(ID), null);
  assert.deepEqual(await rows(), []);
  assert.deepEqual(await driver.list("uploads"), []);
  assert.equal(await store.remove(ID), false);
  assert.deepEqual(await store.list(), []);
});

test("after a commit moved the data, remove takes the row without asking the bucket", async (f) => {
  const { driver, store, rows } = f;
  await store.create(ID, APP, START, "s");
  await store.append(ID, 0, sourceOf(encoder.encode("bytes"))).then((a) => a.flushed);
  await driver.move(uploadFileKey(ID, "data"), "blobs/sha256/ab/abcd");
  const asked: string[] = [];
  const { stat, delete: remove } = driver;
  driver.stat = (key) => (asked.push(`stat ${key}`), stat.call(driver, key));
  driver.delete = (key) => (asked.push(`delete ${key}`), remove.call(driver, key));
  assert.equal(await store.remove(ID, { committed: true }), true);
  assert.deepEqual(asked, []);
  assert.deepEqual(await rows(), []);
  assert.deepEqual(await driver.list("uploads"), []);
  // A session with no row (from before the table) is removed whole all the same.
  await driver.create(uploadFileKey(OTHER, "data"));
  await driver.put(uploadFileKey(OTHER, "hashstate"), "old-state");
  assert.equal(await store.remove(OTHER, { committed: true }), true);
  assert.deepEqual(await driver.list("uploads"), []);
});

test("a half session is not found but listed, and the purge removes it", async (f) => {
  const { sql, driver, store, rows } = f;
  // A row without data (a crash inside create) and data without a row (a crash inside remove).
  await sql`
    insert into upload_sessions (id, repository, started_at, hash_state)
    values (${ID}, ${APP}, ${START}, 'x')`;
  await driver.create(uploadFileKey(OTHER, "data"));
  assert.equal(await store.get(ID), null);
  assert.equal(await store.get(OTHER), null);
  assert.deepEqual((await store.list()).sort(), [ID, OTHER]);
  const service = new UploadService(
    {
      uploads: store,
      blobs: new DriverBlobStore(driver),
      meta: new PostgresMetadataStore(sql),
      locks: new KeyedMutex(),
    },
    { maxAgeMs: 24 * 60 * 60 * 1000 },
  );
  assert.equal(await service.purgeStale(), 2);
  assert.deepEqual(await rows(), []);
  assert.deepEqual(await driver.list("uploads"), []);
});

test("the table refuses an id that is not a UUID and a bad repository name", async ({ sql }) => {
  const insert = (id: string, repository: string) =>
    sql`
      insert into upload_sessions (id, repository, started_at, hash_state)
      values (${id}, ${repository}, now(), 's')`;
  await assert.rejects(insert("../../etc", APP), (e) => sqlState(e) === "22P02");
  await assert.rejects(insert(ID, "Team/App"), (e) => sqlState(e) === "23514");
});

test("a session from before the table goes on from its objects, and is removed whole", async (f) => {
  const { driver, store, rows } = f;
  // What an earlier version wrote: the four objects of DriverUploadStore, no row.
  await driver.create(uploadFileKey(OTHER, "data"));
  await driver.put(uploadFileKey(OTHER, "repository"), APP);
  await driver.put(uploadFileKey(OTHER, "startedat"), START.toISOString());
  await driver.put(uploadFileKey(OTHER, "hashstate"), "old-state");
  const found = await store.get(OTHER);
  assert.equal(found?.repository, APP);
  assert.equal(found?.hashState, "old-state");
  const { flushed } = await store.append(OTHER, 0, sourceOf(encoder.encode("more")));
  await store.saveHashState(OTHER, "state-4", flushed);
  assert.equal((await store.get(OTHER))?.hashState, "state-4");
  assert.equal((await store.get(OTHER))?.dataSize, 4);
  assert.deepEqual(await rows(), [], "no row made for it");
  assert.deepEqual(await store.list(), [OTHER]);
  assert.equal(await store.remove(OTHER), true);
  assert.deepEqual(await driver.list("uploads"), []);
  assert.equal(await store.get(OTHER), null);
});
