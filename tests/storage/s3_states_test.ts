/**
 * The S3 driver with the states of its appendable objects kept as rows of PostgreSQL
 * (`src/storage/postgres/states.ts`) instead of state objects in the bucket, on a real Ceph
 * RGW and PostgreSQL: the driver conformance suite with every key's state kept there; upload
 * data that leaves no object at its key, resumes on another driver and commits leaving nothing
 * behind; a state object of an earlier version moved into the table on first use; listings of
 * keys that only have a row.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { AlreadyExists, UploadDataLost } from "../../src/storage/driver.ts";
import { S3Driver, type StateStore } from "../../src/storage/drivers/s3.ts";
import { blobKey } from "../../src/storage/keys.ts";
import { PostgresMetadataStore } from "../../src/storage/metadata/postgres.ts";
import type { Sql } from "../../src/storage/postgres/client.ts";
import { PostgresStates } from "../../src/storage/postgres/states.ts";
import type { Digest } from "../../src/types/oci.ts";
import { IN_CI } from "../helpers/clients.ts";
import { testDatabase } from "../helpers/postgres.ts";
import { s3Tests, type TestBucket } from "../helpers/s3.ts";
import { driverSuite } from "./driver_suite.ts";

const db = await testDatabase();
let fixtures = 0;
const chunk = 5 * 1024 * 1024;

const pattern = (length: number, seed: number) =>
  new Uint8Array(length).map((_, i) => (i * seed + (i >> 13)) % 251);

async function writeAll(driver: S3Driver, key: string, offset: number, bytes: Uint8Array) {
  const w = await driver.append(key, offset);
  for (let at = 0; at < bytes.length; at += 1_000_000) {
    await w.write(bytes.subarray(at, Math.min(bytes.length, at + 1_000_000)));
  }
  await w.sync();
  w.close();
}

/** The names of the table's rows under a root directory. */
async function rows(sql: Sql, root: string): Promise<string[]> {
  const found = await sql<{ name: string }[]>`
    select name from append_states where starts_with(name, ${`${root}/`}) order by name`;
  return found.map((row) => row.name.slice(root.length + 1));
}

await s3Tests((bucket, s3Ignore) => {
  const ignore = s3Ignore || (db.url === null && !IN_CI);
  /** A pool on the test database, migrated. */
  const pool = async () => {
    const sql = db.pool(4);
    await PostgresMetadataStore.open(sql);
    return sql;
  };
  const objects = async (b: TestBucket, root: string) =>
    (await b.client.listAll(`${root}/`)).map((o) => o.key.slice(root.length + 1));

  driverSuite("s3 with states in PostgreSQL", async () => {
    const root = `s${++fixtures}-${Date.now()}`;
    const b = await bucket();
    const sql = await pool();
    const driver = new S3Driver({
      ...b.options,
      rootdirectory: root,
      chunksize: chunk,
      states: new PostgresStates(sql, ""), // every key's state kept there
    });
    return {
      driver,
      async dispose() {
        try {
          const keys = (await b.client.listAll(`${root}/`)).map((o) => o.key);
          if (keys.length > 0) await b.client.deleteObjects(keys);
        } finally {
          await sql.end();
        }
      },
    };
  }, { ignore });

  /** A test with a root directory of its own and a pool. */
  const test = (
    name: string,
    fn: (f: { b: TestBucket; sql: Sql; root: string; make: () => S3Driver }) => Promise<void>,
  ) =>
    Deno.test({
      name: `s3 driver, states in PostgreSQL: ${name}`,
      ignore,
      async fn() {
        const root = `s${++fixtures}-${Date.now()}`;
        const b = await bucket();
        const sql = await pool();
        const make = () =>
          new S3Driver({
            ...b.options,
            rootdirectory: root,
            chunksize: chunk,
            states: new PostgresStates(sql),
          });
        try {
          await fn({ b, sql, root, make });
        } finally {
          const keys = (await b.client.listAll(`${root}/`)).map((o) => o.key);
          if (keys.length > 0) await b.client.deleteObjects(keys);
          await sql.end();
        }
      },
    });

  test("upload data has a row, no object at its key; another driver resumes it; the commit leaves nothing", async ({ b, sql, root, make }) => {
    const a = make();
    const key = "uploads/0f0e0d0c-0b0a-4098-8776-655443322110/data";
    await a.create(key);
    assert.deepEqual(await rows(sql, root), [key]);
    const bytes = pattern(2 * chunk + 4321, 11);
    await writeAll(a, key, 0, bytes.subarray(0, chunk + 100));
    // The bytes are in the bucket under the hidden data prefix; the key itself has no object.
    assert.equal(await b.client.headObject(`${root}/${key}`), null);
    assert.ok((await objects(b, root)).every((name) => name.startsWith(".multipart/")));
    assert.equal((await a.stat(key))?.size, chunk + 100);
    assert.deepEqual(await a.list("uploads"), ["0f0e0d0c-0b0a-4098-8776-655443322110"]);
    // Another replica's driver goes on from the row.
    const other = make();
    await writeAll(other, key, chunk + 100, bytes.subarray(chunk + 100));
    assert.equal((await a.stat(key))?.size, bytes.length);
    const read = new Uint8Array(await new Response((await a.read(key))!.stream).arrayBuffer());
    assert.deepEqual(read, bytes);
    await other.move(key, "blobs/sha256/ab/abcd");
    assert.deepEqual(await rows(sql, root), []);
    assert.deepEqual(await objects(b, root), ["blobs/sha256/ab/abcd"]);
    assert.deepEqual(await a.get("blobs/sha256/ab/abcd"), bytes);
    assert.equal(await a.stat(key), null);
    assert.deepEqual(await a.list("uploads"), []);
  });

  test("bytes a sync stored at their blob's key count as referenced for the collector while a state names them (as the tail, or the checkpoint a cut goes back to)", async ({ sql, make }) => {
    const a = make();
    const meta = await PostgresMetadataStore.open(sql);
    const bytes = pattern(3000, 13);
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}` as Digest;
    const other = `sha256:${"e".repeat(64)}` as Digest;
    const key = "uploads/2f0e0d0c-0b0a-4098-8776-655443322112/data";
    await a.create(key);
    const w = await a.append(key, 0);
    await w.write(bytes);
    await w.sync({ whole: blobKey(digest) });
    w.close();
    assert.deepEqual(await a.get(blobKey(digest)), bytes, "stored at the blob's key");
    assert.equal(await meta.blobReferenced(digest), true, "named as the tail");
    assert.equal(await meta.blobReferenced(other), false);
    // The next PATCH reads them back and stores a tail of its own; until a later one, the
    // state keeps them as the checkpoint a cut goes back to.
    await writeAll(a, key, bytes.length, pattern(1000, 3));
    assert.equal(await meta.blobReferenced(digest), true, "named as the checkpoint");
    await writeAll(a, key, bytes.length + 1000, pattern(1000, 5));
    assert.equal(await meta.blobReferenced(digest), false, "named no more");
    await a.delete(key);
    assert.deepEqual(await a.get(blobKey(digest)), bytes, "never deleted by the upload's data");
  });

  test("a commit with parts asks no HeadObject; a tail shortened from outside stores no blob (its copy is refused); the data prefix is listed beside the completion", async ({ b, sql, root, make }) => {
    const cases = [
      { name: "parts", bytes: pattern(2 * chunk, 5) },
      { name: "tail", bytes: pattern(chunk + 777, 7) },
      { name: "short", bytes: pattern(chunk + 777, 9) },
    ];
    for (const [i, { name, bytes }] of cases.entries()) {
      const a = make();
      const key = `uploads/3f0e0d0c-0b0a-4098-8776-65544332211${i}/data`;
      await a.create(key, { fresh: true });
      await writeAll(a, key, 0, bytes);
      const events: string[] = [];
      const { client } = a;
      const head = client.headObject.bind(client);
      client.headObject = (n) => (events.push(`head ${n.slice(root.length + 1)}`), head(n));
      const complete = client.completeMultipart.bind(client);
      client.completeMultipart = async (...args) => {
        await complete(...args);
        events.push("completed");
      };
      const list = client.listAll.bind(client);
      client.listAll = (prefix) => (events.push("list"), list(prefix));
      const target = `blobs/sha256/cd/cd${name}`;
      if (name === "short") {
        // The tail object rewritten from outside with fewer bytes than the state counts.
        const [tail] = (await objects(b, root)).filter((o) => o.includes("/tail."));
        await b.client.putObject(`${root}/${tail}`, bytes.subarray(chunk, chunk + 700));
        await assert.rejects(a.move(key, target), /UploadPartCopy .* 416 InvalidRange/);
        assert.ok(!events.some((e) => e.startsWith("head")), events.join(", "));
        assert.equal(await a.stat(target), null);
        await a.delete(key);
      } else {
        await a.move(key, target);
        assert.deepEqual(await a.get(target), bytes);
        assert.ok(events.indexOf("list") < events.indexOf("completed"), events.join(", "));
        assert.ok(!events.some((e) => e.startsWith("head")), events.join(", "));
      }
      assert.deepEqual(await rows(sql, root), []);
      assert.deepEqual(await b.client.listMultipart(`${root}/.multipart/`), []);
      const left = await objects(b, root);
      assert.ok(left.every((o) => o.startsWith("blobs/")), left.join(", "));
    }
  });

  test("a fresh key's create is one insert, no bucket request; a second create is refused", async ({ b, sql, root, make }) => {
    const a = make();
    const key = "uploads/2f0e0d0c-0b0a-4098-8776-655443322112/data";
    const heads: string[] = [];
    const head = a.client.headObject.bind(a.client);
    a.client.headObject = (name) => (heads.push(name), head(name));
    await a.create(key, { fresh: true });
    assert.equal(heads.length, 0, `HeadObject of ${heads}`);
    assert.deepEqual(await rows(sql, root), [key]);
    assert.equal((await a.stat(key))?.size, 0);
    await assert.rejects(a.create(key, { fresh: true }), AlreadyExists);
    await assert.rejects(a.create(key), AlreadyExists);
    // Without `fresh` an object at the key is looked for, and refuses the create.
    const plain = "uploads/3f0e0d0c-0b0a-4098-8776-655443322113/data";
    await b.client.putObject(`${root}/${plain}`, new Uint8Array([1, 2, 3]))
      .then((r) => r.body?.cancel());
    await assert.rejects(a.create(plain), AlreadyExists);
    assert.ok(heads.includes(`${root}/${plain}`));
    assert.deepEqual(await rows(sql, root), [key]);
  });

  test("a state object of an earlier version is moved into the table on first use, and the upload goes on", async ({ b, sql, root, make }) => {
    const before = new S3Driver({ ...b.options, rootdirectory: root, chunksize: chunk });
    const key = "uploads/1f0e0d0c-0b0a-4098-8776-655443322111/data";
    const bytes = pattern(chunk + 3000, 17);
    await before.create(key);
    await writeAll(before, key, 0, bytes.subarray(0, 2000));
    assert.notEqual(await b.client.headObject(`${root}/${key}`), null);
    const after = make();
    assert.equal((await after.stat(key))?.size, 2000);
    // A stat alone moves nothing.
    assert.notEqual(await b.client.headObject(`${root}/${key}`), null);
    assert.deepEqual(await rows(sql, root), []);
    await writeAll(after, key, 2000, bytes.subarray(2000));
    assert.equal(await b.client.headObject(`${root}/${key}`), null);
    assert.deepEqual(await rows(sql, root), [key]);
    const read = new Uint8Array(await new Response((await after.read(key))!.stream).arrayBuffer());
    assert.deepEqual(read, bytes);
    assert.equal(await after.delete(key), true);
    assert.deepEqual(await rows(sql, root), []);
    assert.deepEqual(await objects(b, root), []);
  });

  test("listings merge keys that only have a row with objects, in order, with after and limit", async ({ root, sql, make }) => {
    const driver = make();
    const ids = ["a1", "b2", "c3", "d4"].map((p) => `${p}0e0d0c-0b0a-4098-8776-655443322110`);
    await driver.create(`uploads/${ids[0]}/data`);
    await driver.put(`uploads/${ids[1]}/hashstate`, "x"); // a session of an earlier version
    await driver.create(`uploads/${ids[2]}/data`);
    await driver.put(`uploads/${ids[3]}/startedat`, "x");
    assert.deepEqual(await driver.list("uploads"), ids);
    assert.deepEqual(await driver.list("uploads", { limit: 2 }), ids.slice(0, 2));
    assert.deepEqual(await driver.list("uploads", { after: ids[0], limit: 2 }), ids.slice(1, 3));
    assert.deepEqual(await driver.list(""), ["uploads"]);
    assert.equal(await driver.deleteAll("uploads"), true);
    assert.deepEqual(await driver.list("uploads"), []);
    assert.deepEqual(await rows(sql, root), []);
  });

  test("a commit after a cut inside the tail, or back to before the last writer, stores exactly the bytes kept", async ({ b, root, make }) => {
    const drivers = {
      "states as objects": new S3Driver({ ...b.options, rootdirectory: root, chunksize: chunk }),
      "states as rows": make(),
    };
    const bytes = pattern(chunk + 9000, 23);
    for (const [how, driver] of Object.entries(drivers)) {
      // Inside the tail: the tail object keeps its 3000 bytes, of which 1000 count.
      await driver.create("uploads/a/data");
      await writeAll(driver, "uploads/a/data", 0, bytes.subarray(0, 3000));
      await driver.truncate("uploads/a/data", 1000);
      await driver.move("uploads/a/data", "blobs/a");
      assert.deepEqual(await driver.get("blobs/a"), bytes.subarray(0, 1000), how);
      // Back to the size before the last writer (its tail object was 2000 bytes), after a
      // part and a tail of that writer.
      await driver.create("uploads/b/data");
      await writeAll(driver, "uploads/b/data", 0, bytes.subarray(0, 2000));
      await writeAll(driver, "uploads/b/data", 2000, bytes.subarray(2000));
      await driver.truncate("uploads/b/data", 1500);
      await driver.move("uploads/b/data", "blobs/b");
      assert.deepEqual(await driver.get("blobs/b"), bytes.subarray(0, 1500), how);
      assert.deepEqual(await objects(b, root), ["blobs/a", "blobs/b"], how);
      await driver.delete("blobs/a");
      await driver.delete("blobs/b");
    }
  });

  test("a commit whose tail object is gone finds the upload lost", async ({ b, root, make }) => {
    const driver = make();
    await driver.create("uploads/c/data");
    await writeAll(driver, "uploads/c/data", 0, pattern(4000, 3));
    const tails = (await objects(b, root)).filter((name) => name.includes("/tail."));
    assert.equal(tails.length, 1);
    await b.client.deleteObject(`${root}/${tails[0]}`);
    await assert.rejects(driver.move("uploads/c/data", "blobs/c"), UploadDataLost);
    assert.equal(await driver.stat("blobs/c"), null);
  });

  test("a state stored before states recorded the tail's length: a commit after a cut inside the tail stores exactly the bytes kept", async ({ b, root, make }) => {
    const before = new S3Driver({ ...b.options, rootdirectory: root, chunksize: chunk });
    const key = "uploads/2f0e0d0c-0b0a-4098-8776-655443322112/data";
    const bytes = pattern(3000, 19);
    await before.create(key);
    await writeAll(before, key, 0, bytes);
    // The state object as an earlier version wrote it: no `tailSize`.
    const name = `${root}/${key}`;
    const response = await b.client.getObject(name);
    const state = JSON.parse(await response.text());
    assert.equal(state.tailSize, 3000);
    delete state.tailSize;
    const put = await b.client.putObject(name, new TextEncoder().encode(JSON.stringify(state)), {
      "content-type": "application/json",
      "x-amz-meta-appended-size": "3000",
    });
    await put.body?.cancel();
    const after = make();
    await after.truncate(key, 1000); // inside the tail: its object keeps 3000 bytes
    await after.move(key, "blobs/old");
    assert.deepEqual(await after.get("blobs/old"), bytes.subarray(0, 1000));
  });

  test("keys with rows only are listed from the root; deleteAll removes their bytes, then their rows", async ({ b, sql, root, make }) => {
    const driver = make();
    const ids = ["a1", "b2"].map((p) => `${p}0e0d0c-0b0a-4098-8776-655443322110`);
    for (const [i, id] of ids.entries()) {
      await driver.create(`uploads/${id}/data`);
      await writeAll(driver, `uploads/${id}/data`, 0, pattern(chunk + 100 * (i + 1), 5));
    }
    assert.deepEqual(await driver.list(""), ["uploads"]);
    assert.deepEqual(await driver.list("uploads"), ids);
    assert.ok((await objects(b, root)).length > 0);
    assert.ok((await b.client.listMultipart(`${root}/`)).length > 0);
    assert.equal(await driver.deleteAll("uploads"), true);
    assert.deepEqual(await objects(b, root), []);
    assert.deepEqual(await b.client.listMultipart(`${root}/`), []);
    assert.deepEqual(await rows(sql, root), []);
    assert.deepEqual(await driver.list(""), []);
  });

  test("a stat racing the move of an earlier version's state object into the table still finds the key", async ({ b, sql, root }) => {
    const options = { ...b.options, rootdirectory: root, chunksize: chunk };
    const key = "uploads/3f0e0d0c-0b0a-4098-8776-655443322113/data";
    const before = new S3Driver(options);
    await before.create(key);
    await writeAll(before, key, 0, pattern(2500, 7));
    const states = new PostgresStates(sql);
    const mover = new S3Driver({ ...options, states });
    // The stat's first look at the table finds nothing; before it looks at the bucket, another
    // request moves the state object into the table.
    let raced = false;
    const racing: StateStore = {
      area: states.area,
      get: async (name) => {
        const found = await states.get(name);
        if (raced) return found;
        raced = true;
        await mover.truncate(key, 2500); // loads the state: moves it
        return found;
      },
      insert: (name, text) => states.insert(name, text),
      put: (name, text) => states.put(name, text),
      delete: (name) => states.delete(name),
      namesFrom: (start) => states.namesFrom(start),
    };
    const driver = new S3Driver({ ...options, states: racing });
    assert.equal((await driver.stat(key))?.size, 2500);
    assert.equal(await b.client.headObject(`${root}/${key}`), null);
    assert.deepEqual(await rows(sql, root), [key]);
  });
});
