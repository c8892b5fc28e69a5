/**
 * Runs the driver conformance suite against the S3 driver on a real Ceph RGW (see
 * `tests/helpers/s3.ts`), each test under its own root directory of the run's bucket, plus
 * what is particular to S3: upload data as multipart uploads (parts, tail, resumption, cuts,
 * aborts, commits that move no byte through the driver, lost uploads), pending bytes kept in
 * files past the memory budget, large copies and presigned URLs.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { UploadDataLost } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { S3Driver } from "../../src/storage/drivers/s3.ts";
import { SpillFile } from "../../src/storage/drivers/s3_spill.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import { s3Tests } from "../helpers/s3.ts";
import { driverSuite } from "./driver_suite.ts";

let fixtures = 0;

await s3Tests((bucket, ignore) => {
  const make = async (root = `t${++fixtures}-${Date.now()}`, uploadmemory?: number) => {
    const b = await bucket();
    const driver = new S3Driver({
      ...b.options,
      rootdirectory: root,
      chunksize: 5 * 1024 * 1024,
      uploadmemory,
    });
    return {
      driver,
      async dispose() {
        const keys = (await b.client.listAll(`${root}/`)).map((o) => o.key);
        if (keys.length > 0) await b.client.deleteObjects(keys);
      },
    };
  };
  driverSuite("s3", () => make(), { ignore });
  // every pending upload byte in a file rather than memory
  driverSuite("s3 without upload memory", () => make(undefined, 0), { ignore });

  Deno.test({
    name: "s3 driver: list pages like the memory driver where S3's key order differs from names'",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      // one name per ListObjectsV2 page: `a-b` and `a.c/` come before `a/` in S3's order
      const driver = new S3Driver({
        ...(await bucket()).options,
        rootdirectory: root,
        listPageSize: 1,
      });
      const memory = new MemoryDriver();
      try {
        const keys = ["p/a/x", "p/a-b", "p/a.c/y", "p/a.c/z", "p/a:d", "p/b", "p/b-/q", "p/c.d.e"];
        for (const key of keys) {
          await driver.put(key, "x");
          await memory.put(key, "x");
        }
        const all = await memory.list("p");
        assert.deepEqual(await driver.list("p"), all);
        for (const after of [undefined, ...all]) {
          for (const limit of [undefined, 1, 2, 3]) {
            assert.deepEqual(
              await driver.list("p", { after, limit }),
              await memory.list("p", { after, limit }),
              `after ${after}, limit ${limit}`,
            );
          }
        }
      } finally {
        await dispose();
      }
    },
  });

  /** What an appendable object's bytes leave in the bucket: objects and multipart uploads. */
  const leftovers = async (root: string) => {
    const b = await bucket();
    return {
      objects: (await b.client.listAll(`${root}/.multipart/`)).map((o) => o.key),
      uploads: (await b.client.listMultipart(`${root}/`)).map((u) => u.name),
    };
  };
  const chunk = 5 * 1024 * 1024;
  /** A driver on a fresh root reached through a counting proxy; both go when disposed. */
  const proxied = async () => {
    const root = `t${++fixtures}-${Date.now()}`;
    const { dispose } = await make(root);
    const b = await bucket();
    const proxy = new FaultProxy(b.options.regionendpoint!);
    const driver = new S3Driver({
      ...b.options,
      regionendpoint: proxy.endpoint,
      rootdirectory: root,
      chunksize: chunk,
    });
    return {
      root,
      driver,
      proxy,
      async [Symbol.asyncDispose]() {
        await proxy.close();
        await dispose();
      },
    };
  };
  const pattern = (length: number, seed: number) =>
    new Uint8Array(length).map((_, i) => (i * seed + (i >> 13)) % 251);
  const sha256 = async (bytes: Uint8Array | ReadableStream<Uint8Array>) => {
    const hash = createHash("sha256");
    if (bytes instanceof Uint8Array) hash.update(bytes);
    else for await (const chunk of bytes) hash.update(chunk);
    return hash.digest("hex");
  };
  const writeAll = async (driver: S3Driver, key: string, offset: number, bytes: Uint8Array) => {
    const w = await driver.append(key, offset);
    for (let at = 0; at < bytes.length; at += 1_000_000) {
      await w.write(bytes.subarray(at, Math.min(bytes.length, at + 1_000_000)));
    }
    await w.sync();
    w.close();
  };
  /** `key` holds `bytes`, read back and once committed to `target`; nothing is left over. */
  const assertCommits = async (
    driver: S3Driver,
    root: string,
    key: string,
    target: string,
    bytes: Uint8Array,
  ) => {
    assert.equal((await driver.stat(key))?.size, bytes.length);
    assert.equal(await sha256(await driver.readAll(key)), await sha256(bytes));
    await driver.move(key, target);
    assert.equal(await sha256((await driver.get(target))!), await sha256(bytes));
    assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
  };

  Deno.test({
    name:
      "s3 driver: upload data is durable at sync, in parts and a tail, and resumes on another driver",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const bytes = pattern(2 * chunk + 1234, 7);
        await driver.create("up/x/data");
        // a second driver over the same bucket and root sees only what the bucket holds
        const other = new S3Driver({ ...(await bucket()).options, rootdirectory: root });
        const w = await driver.append("up/x/data", 0);
        await w.write(bytes.subarray(0, 1000));
        assert.equal((await other.stat("up/x/data"))?.size, 0, "held, not yet written");
        await w.sync();
        assert.deepEqual(await other.get("up/x/data"), bytes.subarray(0, 1000), "durable at sync");
        for (let at = 1000; at < chunk + 5000; at += 1_000_000) {
          await w.write(bytes.subarray(at, Math.min(chunk + 5000, at + 1_000_000)));
        }
        await w.sync();
        w.close();
        assert.equal((await other.stat("up/x/data"))?.size, chunk + 5000, "a part and a tail");
        assert.equal((await leftovers(root)).uploads.length, 1, "one multipart upload");
        // the other driver resumes at the acknowledged offset, across the next part boundary
        await writeAll(other, "up/x/data", chunk + 5000, bytes.subarray(chunk + 5000));
        assert.equal((await driver.stat("up/x/data"))?.size, bytes.length);
        assert.equal(await sha256(await driver.readAll("up/x/data")), await sha256(bytes));
        const mid = await driver.read("up/x/data", { start: chunk - 10, length: chunk + 20 });
        assert.deepEqual(
          new Uint8Array(await new Response(mid!.stream).arrayBuffer()),
          bytes.subarray(chunk - 10, 2 * chunk + 10),
        );
        assert.deepEqual(await driver.list("up/x"), ["data"], "parts and tail are not listed");
        assert.deepEqual(await driver.list(""), ["up"]);
        await driver.move("up/x/data", "blobs/final");
        assert.equal(await sha256((await driver.get("blobs/final"))!), await sha256(bytes));
        assert.equal(await driver.stat("up/x/data"), null);
        assert.deepEqual(await driver.list(""), ["blobs"]);
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] }, "nothing orphaned");
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a writer reopened on a tail of a few MiB reads it back into its part and goes on across the part's end",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const bytes = pattern(chunk + 3 * 1024 * 1024, 13);
        await driver.create("up/t/data");
        // a tail above a MiB, then below one: each read back, written on past part 1's end
        for (const [from, to] of [[0, 3_000_000], [3_000_000, chunk + 700_000]]) {
          await writeAll(driver, "up/t/data", from, bytes.subarray(from, to));
        }
        await writeAll(driver, "up/t/data", chunk + 700_000, bytes.subarray(chunk + 700_000));
        await assertCommits(driver, root, "up/t/data", "blobs/t", bytes);
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a sync of 5 MiB or more (less than chunksize) sends a part, not a tail; the upload goes on, cuts back and commits",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      try {
        const options = { ...(await bucket()).options, rootdirectory: root };
        const driver = new S3Driver({ ...options, chunksize: 10 * 1024 * 1024 });
        const b = await bucket();
        const tails = async () =>
          (await b.client.listAll(`${root}/.multipart/`)).map((o) => o.key)
            .filter((name) => name.includes("/tail."));
        const bytes = pattern(13 * 1024 * 1024 + 777, 23);
        const first = 8 * 1024 * 1024;
        await driver.create("up/p/data");
        await writeAll(driver, "up/p/data", 0, bytes.subarray(0, first));
        // The 8 MiB went as a part of the multipart upload: no tail object.
        assert.deepEqual(await tails(), []);
        assert.equal((await b.client.listMultipart(`${root}/`)).length, 1);
        assert.equal((await driver.stat("up/p/data"))?.size, first);
        // Another driver (part size 5 MiB) goes on: nothing to read back, 5 MiB more as its
        // part, then a tail; a failed PATCH's cut back to the acknowledged size keeps the part.
        const other = new S3Driver({ ...options, chunksize: 5 * 1024 * 1024 });
        await writeAll(other, "up/p/data", first, bytes.subarray(first, first + 1000));
        assert.equal((await tails()).length, 1);
        const more = await other.append("up/p/data", first + 1000);
        await more.write(bytes.subarray(first + 1000, first + 4000));
        await more.sync();
        more.close();
        await other.truncate("up/p/data", first + 1000);
        assert.equal(
          await sha256(await other.readAll("up/p/data")),
          await sha256(bytes.subarray(0, first + 1000)),
        );
        await writeAll(other, "up/p/data", first + 1000, bytes.subarray(first + 1000));
        await assertCommits(driver, root, "up/p/data", "blobs/p", bytes);
        // A blob of one such part: the commit completes the upload and copies its object.
        await driver.create("up/q/data");
        await writeAll(driver, "up/q/data", 0, bytes.subarray(0, 6 * 1024 * 1024));
        assert.deepEqual(await tails(), []);
        await assertCommits(
          driver,
          root,
          "up/q/data",
          "blobs/q",
          bytes.subarray(0, 6 * 1024 * 1024),
        );
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a writer closed before the part it asked a multipart upload for (a PATCH cut at 6 MiB) aborts that upload",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      try {
        const b = await bucket();
        const driver = new S3Driver({
          ...b.options,
          rootdirectory: root,
          chunksize: 10 * 1024 * 1024,
        });
        const created: Promise<string>[] = [];
        const createMultipart = driver.client.createMultipart.bind(driver.client);
        driver.client.createMultipart = (name) => {
          const made = createMultipart(name);
          created.push(made);
          return made;
        };
        await driver.create("up/e/data");
        await writeAll(driver, "up/e/data", 0, pattern(1000, 4)); // a tail: no upload yet
        assert.equal(created.length, 0);
        const writer = await driver.append("up/e/data", 1000);
        await writer.write(pattern(6 * 1024 * 1024, 5)); // enough for a part: upload asked for
        writer.close(); // the PATCH broke: no sync
        assert.equal(created.length, 1);
        await created[0]; // made in the bucket
        const uploads = () => b.client.listMultipart(`${root}/`);
        for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
          if ((await uploads()).length === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        assert.deepEqual(await uploads(), []);
        assert.equal((await driver.stat("up/e/data"))?.size, 1000);
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a tail stored under a larger chunksize (by a version before) goes out whole as the next part of a replica with a smaller one",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root); // parts of 5 MiB
      try {
        const larger = new S3Driver({
          ...(await bucket()).options,
          rootdirectory: root,
          chunksize: 8 * 1024 * 1024,
          partsAtSync: false, // as a version before stored 5 MiB or more at a sync
        });
        const bytes = pattern(10 * 1024 * 1024, 17);
        const tail = 7 * 1024 * 1024; // a tail for the larger driver, above the other's part
        await larger.create("up/k/data");
        await writeAll(larger, "up/k/data", 0, bytes.subarray(0, tail));
        await writeAll(driver, "up/k/data", tail, bytes.subarray(tail));
        await assertCommits(driver, root, "up/k/data", "blobs/k", bytes);
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: past the memory budget a writer keeps pending bytes in an unlinked file; parts, tails and resumes hold the same bytes",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      const tmp = await Deno.makeTempDir();
      const before = Deno.env.get("TMPDIR");
      Deno.env.set("TMPDIR", tmp);
      /** The spill files this process has open: descriptors of files no name leads to. */
      const spilled = () =>
        [...Deno.readDirSync("/proc/self/fd")].filter((entry) => {
          try {
            return Deno.readLinkSync(`/proc/self/fd/${entry.name}`).startsWith(`${tmp}/`);
          } catch {
            return false; // closed meanwhile (the listing's own descriptor)
          }
        }).length;
      /** Lets a closed writer give back its buffer and close its file (queued promises). */
      const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
      const MB = 1_000_000;
      try {
        const options = { ...(await bucket()).options, rootdirectory: root, chunksize: chunk };
        const none = new S3Driver({ ...options, uploadmemory: 0 });
        const some = new S3Driver({ ...options, uploadmemory: 3 * 1024 * 1024 });
        const bytes = pattern(3 * chunk + 12345, 29);
        // No memory at all: two parts sent from a file, the tail's 100 bytes stored from one.
        await none.create("up/a/data");
        const first = await none.append("up/a/data", 0);
        for (let at = 0; at < 2 * chunk + 100; at += MB) {
          await first.write(bytes.subarray(at, Math.min(2 * chunk + 100, at + MB)));
        }
        assert.equal(spilled(), 1);
        await first.sync();
        first.close();
        await settle();
        assert.equal(spilled(), 0);
        assert.equal(none.budget.used, 0);
        // 3 MiB: the tail read back into memory, the buffer grows to 2 MB, then cannot double:
        // it goes to a file, which becomes part 3; the next bytes are in memory again.
        const second = await some.append("up/a/data", 2 * chunk + 100);
        let at = 2 * chunk + 100;
        for (let n = 0; n < 2; n++, at += MB) await second.write(bytes.subarray(at, at + MB));
        assert.equal(spilled(), 0);
        assert.ok(some.budget.used >= 2 * MB);
        await second.write(bytes.subarray(at, at + MB));
        at += MB;
        assert.equal(spilled(), 1);
        // The buffer went back: the writer holds only the 256 KiB block it writes the file in.
        assert.equal(some.budget.used, 256 * 1024);
        for (; at < bytes.length; at += MB) {
          await second.write(bytes.subarray(at, Math.min(bytes.length, at + MB)));
        }
        assert.equal(spilled(), 0);
        assert.ok(some.budget.used > 0);
        await second.sync();
        second.close();
        await settle();
        assert.equal(some.budget.used, 0);
        // A tail longer than a part (stored under a larger chunksize) opened into a file goes
        // out whole as the next part.
        const larger = new S3Driver({
          ...options,
          chunksize: 8 * 1024 * 1024,
          partsAtSync: false, // as a version before stored 5 MiB or more at a sync
        });
        const other = pattern(10 * 1024 * 1024, 31);
        await larger.create("up/b/data");
        await writeAll(larger, "up/b/data", 0, other.subarray(0, 7 * 1024 * 1024));
        await writeAll(none, "up/b/data", 7 * 1024 * 1024, other.subarray(7 * 1024 * 1024));
        await settle();
        assert.equal(spilled(), 0);
        assert.deepEqual([...Deno.readDirSync(tmp)], []);
        assert.equal((await none.stat("up/b/data"))?.size, other.length);
        assert.equal(await sha256(await none.readAll("up/b/data")), await sha256(other));
        await none.move("up/b/data", "blobs/b");
        assert.equal(await sha256((await none.get("blobs/b"))!), await sha256(other));
        await assertCommits(some, root, "up/a/data", "blobs/a", bytes);
      } finally {
        if (before === undefined) Deno.env.delete("TMPDIR");
        else Deno.env.set("TMPDIR", before);
        await Deno.remove(tmp, { recursive: true });
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a writer's buffer given back is kept for the next writers within the budget; a small upload does not take a part's buffer",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
      const MiB = 1024 * 1024;
      try {
        const options = { ...(await bucket()).options, rootdirectory: root, chunksize: chunk };
        const driver = new S3Driver({ ...options, uploadmemory: 16 * MiB });
        const bytes = pattern(3 * MiB, 3);
        await driver.create("up/a/data");
        const a = await driver.append("up/a/data", 0);
        await a.write(bytes);
        assert.equal(driver.budget.used, 4 * MiB); // grown in powers of two
        a.close(); // never synced: nothing stored
        await settle();
        assert.equal(driver.budget.used, 0);
        assert.equal(driver.budget.kept, 4 * MiB);
        // A small upload grows from 64 KiB: the 4 MiB buffer stays kept, not held for it.
        await driver.create("up/b/data");
        const b = await driver.append("up/b/data", 0);
        await b.write(bytes.subarray(0, 10_000));
        assert.equal(driver.budget.used, 64 * 1024);
        assert.equal(driver.budget.kept, 4 * MiB);
        // An upload past a MiB takes the kept buffer instead of a new one.
        await driver.create("up/c/data");
        const c = await driver.append("up/c/data", 0);
        await c.write(bytes.subarray(0, 1.5 * MiB));
        assert.equal(driver.budget.kept, 0);
        assert.equal(driver.budget.used, 64 * 1024 + 4 * MiB);
        await c.write(bytes.subarray(1.5 * MiB));
        await c.sync();
        c.close();
        b.close();
        await settle();
        assert.equal(driver.budget.used, 0);
        assert.equal(await sha256(await driver.readAll("up/c/data")), await sha256(bytes));
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: with no temporary file to spill to, uploads keep their bytes in memory past the budget, told once",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      const told: unknown[] = [];
      try {
        const driver = new S3Driver({
          ...(await bucket()).options,
          rootdirectory: root,
          chunksize: chunk,
          uploadmemory: 0,
          openSpill: () => Promise.reject(new Deno.errors.PermissionDenied("read-only /tmp")),
          onSpillFailure: (error) => told.push(error),
        });
        const bytes = pattern(2 * chunk + 12345, 41);
        await driver.create("up/m/data");
        await writeAll(driver, "up/m/data", 0, bytes.subarray(0, chunk + 100));
        // reopened on a tail of 100 bytes: read back into memory too
        await writeAll(driver, "up/m/data", chunk + 100, bytes.subarray(chunk + 100));
        await new Promise((resolve) => setTimeout(resolve, 0)); // closed writers give back
        assert.equal(driver.budget.used, 0);
        assert.equal(told.length, 1);
        assert.ok(told[0] instanceof Deno.errors.PermissionDenied);
        await assertCommits(driver, root, "up/m/data", "blobs/m", bytes);
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a writer closed while it opens its spill file closes the file, and sends and stores nothing",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      const asked = Promise.withResolvers<void>();
      const gate = Promise.withResolvers<void>();
      const opened: SpillFile[] = [];
      try {
        const driver = new S3Driver({
          ...(await bucket()).options,
          rootdirectory: root,
          chunksize: chunk,
          uploadmemory: 0,
          openSpill: async () => {
            asked.resolve();
            await gate.promise;
            const file = await SpillFile.open();
            opened.push(file);
            return file;
          },
        });
        await driver.create("up/c/data");
        const writer = await driver.append("up/c/data", 0);
        // more than a part: without the close, a part would go out from the file
        const written = writer.write(pattern(chunk + 10, 3));
        await asked.promise;
        writer.close();
        gate.resolve();
        await assert.rejects(written, /closed/);
        assert.equal(opened.length, 1);
        await assert.rejects(opened[0].append(new Uint8Array(1)), /closed/);
        assert.equal((await driver.stat("up/c/data"))?.size, 0);
        assert.deepEqual((await leftovers(root)).uploads, []);
        assert.equal(driver.budget.used, 0);
      } finally {
        gate.resolve();
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: append at an earlier offset inside a part or the tail cuts there and commits the right bytes",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const first = pattern(2 * chunk + 777, 3);
        await driver.create("up/r/data");
        await writeAll(driver, "up/r/data", 0, first);
        // a client resumes inside part 2: part 2 is made again from its object's first bytes
        const at = chunk + 4321;
        const second = pattern(chunk + 99, 11);
        await writeAll(driver, "up/r/data", at, second);
        const expected = new Uint8Array(at + second.length);
        expected.set(first.subarray(0, at));
        expected.set(second, at);
        assert.equal((await driver.stat("up/r/data"))?.size, expected.length);
        assert.equal(await sha256(await driver.readAll("up/r/data")), await sha256(expected));
        // and inside the tail
        const third = pattern(10, 5);
        await writeAll(driver, "up/r/data", expected.length - 50, third);
        const final = new Uint8Array(expected.length - 50 + 10);
        final.set(expected.subarray(0, expected.length - 50));
        final.set(third, expected.length - 50);
        await driver.move("up/r/data", "blobs/r");
        assert.equal(await sha256((await driver.get("blobs/r"))!), await sha256(final));
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: truncate to 0 aborts the multipart upload; delete and deleteAll leave nothing",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const bytes = pattern(chunk + 10, 13);
        await driver.create("up/a/data");
        await writeAll(driver, "up/a/data", 0, bytes);
        assert.equal((await leftovers(root)).uploads.length, 1);
        await driver.truncate("up/a/data", chunk + 3);
        assert.deepEqual(await driver.get("up/a/data"), bytes.subarray(0, chunk + 3));
        assert.equal((await leftovers(root)).uploads.length, 1, "a part still stands");
        await driver.truncate("up/a/data", 100);
        assert.deepEqual(
          await driver.get("up/a/data"),
          bytes.subarray(0, 100),
          "from part 1's object",
        );
        assert.equal((await leftovers(root)).uploads.length, 0, "no part: upload aborted");
        await writeAll(driver, "up/a/data", 100, bytes.subarray(100));
        assert.deepEqual(await driver.get("up/a/data"), bytes, "written again over a new upload");
        await driver.create("up/b/data");
        await writeAll(driver, "up/b/data", 0, bytes);
        await driver.put("up/b/state", "x");
        assert.equal((await leftovers(root)).uploads.length, 2);
        assert.equal(await driver.delete("up/a/data"), true);
        assert.equal(await driver.deleteAll("up/b"), true);
        assert.deepEqual(await driver.list(""), []);
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      } finally {
        await dispose();
      }
    },
  });

  /** A driver of `chunksize` 10 MiB through a counting proxy, on a fresh root. */
  const proxiedWide = async () => {
    const fixture = await proxied();
    const b = await bucket();
    const driver = new S3Driver({
      ...b.options,
      regionendpoint: fixture.proxy.endpoint,
      rootdirectory: fixture.root,
      chunksize: 2 * chunk,
    });
    return { ...fixture, driver, b };
  };
  /** `writeAll`, telling the sync the key the bytes are whole at. */
  const writeWhole = async (driver: S3Driver, key: string, bytes: Uint8Array, whole: string) => {
    const w = await driver.append(key, 0);
    for (let at = 0; at < bytes.length; at += 1_000_000) {
      await w.write(bytes.subarray(at, Math.min(bytes.length, at + 1_000_000)));
    }
    await w.sync({ whole });
    w.close();
  };
  /** Requests that write bytes: PutObject, UploadPart(Copy), CopyObject, POSTs (multipart). */
  const writes = (lines: string[]) =>
    lines.filter((l) => l.startsWith("PUT ") || l.startsWith("POST "));

  Deno.test({
    name:
      "s3 driver: a sync told the whole key stores the bytes there (no multipart upload); the commit to that key writes nothing; no delete touches them",
    ignore,
    async fn() {
      await using fixture = await proxiedWide();
      const { root, driver, proxy } = fixture;
      {
        for (const size of [8 * 1024 * 1024, 1000]) {
          const bytes = pattern(size, 31);
          await driver.create(`up/${size}/data`);
          proxy.resetCounts();
          await writeWhole(driver, `up/${size}/data`, bytes, `blobs/${size}`);
          const stored = writes(proxy.counts.lines);
          // the bytes at the whole key, then the state; no upload asked for ahead of a part
          assert.deepEqual(stored, [
            `PUT /${(await bucket()).options.bucket}/${root}/blobs/${size}`,
            ...stored.slice(1),
          ]);
          assert.ok(
            stored.every((l) => !l.includes("uploads") && !l.includes("partNumber")),
            stored.join(", "),
          );
          assert.equal(await sha256((await driver.get(`blobs/${size}`))!), await sha256(bytes));
          // read like any upload data, whole and in spans
          assert.equal((await driver.stat(`up/${size}/data`))?.size, size);
          assert.equal(await sha256(await driver.readAll(`up/${size}/data`)), await sha256(bytes));
          const mid = await driver.read(`up/${size}/data`, { start: 10, length: 500 });
          assert.deepEqual(
            new Uint8Array(await new Response(mid!.stream).arrayBuffer()),
            bytes.subarray(10, 510),
          );
          proxy.resetCounts();
          await driver.move(`up/${size}/data`, `blobs/${size}`);
          assert.deepEqual(writes(proxy.counts.lines), [], proxy.counts.lines.join(", "));
          assert.ok(proxy.counts.sent < 16 * 1024 && proxy.counts.received < 16 * 1024);
          assert.equal(await sha256((await driver.get(`blobs/${size}`))!), await sha256(bytes));
          assert.equal(await driver.stat(`up/${size}/data`), null);
        }
        // committed elsewhere (another digest was asked for): copied, the whole object kept
        const bytes = pattern(3000, 37);
        await driver.create("up/o/data");
        await writeWhole(driver, "up/o/data", bytes, "blobs/whole");
        await driver.move("up/o/data", "blobs/other");
        assert.deepEqual(await driver.get("blobs/other"), bytes);
        assert.deepEqual(await driver.get("blobs/whole"), bytes);
        // deleted (a cancelled upload), or its area purged: the whole object stays
        await driver.create("up/d/data");
        await writeWhole(driver, "up/d/data", bytes, "blobs/d");
        assert.equal(await driver.delete("up/d/data"), true);
        await driver.create("up/e/data");
        await writeWhole(driver, "up/e/data", bytes, "blobs/e");
        assert.equal(await driver.deleteAll("up/e"), true);
        assert.deepEqual(await driver.get("blobs/d"), bytes);
        assert.deepEqual(await driver.get("blobs/e"), bytes);
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: bytes stored whole are read back and continued by another driver, cut like a tail, and never changed",
    ignore,
    async fn() {
      await using fixture = await proxiedWide();
      const { root, driver, b } = fixture;
      {
        const bytes = pattern(3 * chunk + 777, 41);
        const first = bytes.subarray(0, 3 * 1024 * 1024);
        await driver.create("up/c/data");
        await writeWhole(driver, "up/c/data", first, "blobs/first");
        // another replica goes on past two part boundaries (its chunksize is 5 MiB)
        const other = new S3Driver({ ...b.options, rootdirectory: root, chunksize: chunk });
        await writeAll(other, "up/c/data", first.length, bytes.subarray(first.length));
        await assertCommits(driver, root, "up/c/data", "blobs/all", bytes);
        assert.deepEqual(await driver.get("blobs/first"), first, "left as it was");
        // cut inside them (what the uploads layer does to the acknowledged size), then on
        const small = bytes.subarray(0, 2 * 1024 * 1024);
        await driver.create("up/t/data");
        await writeWhole(driver, "up/t/data", small, "blobs/t");
        await driver.truncate("up/t/data", 1000);
        assert.equal((await driver.stat("up/t/data"))?.size, 1000);
        await writeAll(other, "up/t/data", 1000, bytes.subarray(1000, 9000));
        await assertCommits(driver, root, "up/t/data", "blobs/t9000", bytes.subarray(0, 9000));
        assert.deepEqual(await driver.get("blobs/t"), small, "left as it was");
        // a sync told a whole key by a writer that opened on bytes, or sent a part: not used
        await driver.create("up/n/data");
        await writeAll(driver, "up/n/data", 0, bytes.subarray(0, 1000));
        const w = await driver.append("up/n/data", 1000);
        await w.write(bytes.subarray(1000, 2000));
        await w.sync({ whole: "blobs/n" });
        w.close();
        assert.equal(await driver.stat("blobs/n"), null);
        await assertCommits(driver, root, "up/n/data", "blobs/n2000", bytes.subarray(0, 2000));
        await driver.create("up/p/data");
        await writeWhole(driver, "up/p/data", bytes, "blobs/p"); // more than a part
        assert.equal(await driver.stat("blobs/p"), null);
        await assertCommits(driver, root, "up/p/data", "blobs/pall", bytes);
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: bytes stored whole and then deleted from outside make the commit fail as lost data, not a blob",
    ignore,
    async fn() {
      await using fixture = await proxiedWide();
      const { root, driver, b } = fixture;
      {
        const bytes = pattern(5000, 43);
        await driver.create("up/g/data");
        await writeWhole(driver, "up/g/data", bytes, "blobs/g");
        await b.client.deleteObject(`${root}/blobs/g`);
        await assert.rejects(() => driver.move("up/g/data", "blobs/g"), UploadDataLost);
        assert.equal(await driver.stat("blobs/g"), null);
        assert.equal(await driver.delete("up/g/data"), true);
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      }
    },
  });

  Deno.test({
    name: "s3 driver: a commit sends and reads back no blob bytes (counted by a proxy)",
    ignore,
    async fn() {
      await using fixture = await proxied();
      const { root, driver, proxy } = fixture;
      {
        for (const size of [3 * chunk + 5, chunk, 1000]) {
          const bytes = pattern(size, 17);
          await driver.create(`up/${size}/data`);
          await writeAll(driver, `up/${size}/data`, 0, bytes);
          proxy.resetCounts();
          await driver.move(`up/${size}/data`, `blobs/${size}`);
          const { sent, received, lines } = proxy.counts;
          assert.ok(
            sent < 16 * 1024 && received < 16 * 1024,
            `${size}: ${sent} B sent, ${received} B received: ${lines.join(", ")}`,
          );
          assert.equal(await sha256((await driver.get(`blobs/${size}`))!), await sha256(bytes));
        }
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a full part goes to the upload by UploadPart: no part object, no copy while writing",
    ignore,
    async fn() {
      await using fixture = await proxied();
      const { root, driver, proxy } = fixture;
      {
        const bytes = pattern(3 * chunk + 5, 29);
        await driver.create("up/p/data");
        proxy.resetCounts();
        await writeAll(driver, "up/p/data", 0, bytes);
        const { sent, lines } = proxy.counts;
        const parts = lines.filter((l) => /^PUT \S+\/assembled\?partNumber=\d+&uploadId=/.test(l));
        const objects = lines.filter((l) => l.startsWith("PUT ") && !l.includes("?"));
        assert.equal(parts.length, 3, lines.join(", "));
        // the tail object and the state: no part is stored as an object first
        assert.equal(objects.length, 2, lines.join(", "));
        assert.ok(sent < bytes.length + 64 * 1024, `${sent} B sent for ${bytes.length}`);
        await driver.move("up/p/data", "blobs/p");
        assert.equal(await sha256((await driver.get("blobs/p"))!), await sha256(bytes));
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a cut back to the last writer's start reads nothing back; a cut elsewhere below the parts reads it from a completed copy",
    ignore,
    async fn() {
      await using fixture = await proxied();
      const { root, driver, proxy } = fixture;
      {
        const bytes = pattern(3 * chunk + 4321, 31);
        const other = pattern(3 * chunk, 37);
        // acknowledged: a part and a tail; then a writer adds two parts and syncs
        const at = chunk + 100;
        await driver.create("up/c/data");
        await writeAll(driver, "up/c/data", 0, bytes.subarray(0, at));
        await writeAll(driver, "up/c/data", at, other.subarray(0, 2 * chunk));
        proxy.resetCounts();
        await driver.truncate("up/c/data", at);
        const { received, lines } = proxy.counts;
        assert.ok(received < 16 * 1024, `${received} B received: ${lines.join(", ")}`);
        assert.ok(!lines.some((l) => l.startsWith("POST ")), `no completion: ${lines.join(", ")}`);
        assert.equal((await driver.stat("up/c/data"))?.size, at);
        // the upload goes on from the cut, over the parts sent after it
        await writeAll(driver, "up/c/data", at, bytes.subarray(at));
        assert.equal(await sha256(await driver.readAll("up/c/data")), await sha256(bytes));
        await driver.move("up/c/data", "blobs/c");
        assert.equal(await sha256((await driver.get("blobs/c"))!), await sha256(bytes));

        // a cut inside part 2, not a writer's start: part 1 stays, the rest is read back
        await driver.create("up/d/data");
        await writeAll(driver, "up/d/data", 0, other);
        const cut = chunk + 7;
        await driver.truncate("up/d/data", cut);
        assert.deepEqual(await driver.get("up/d/data"), other.subarray(0, cut));
        await writeAll(driver, "up/d/data", cut, bytes.subarray(cut));
        const expected = new Uint8Array(bytes.length);
        expected.set(other.subarray(0, cut));
        expected.set(bytes.subarray(cut), cut);
        // and on a part boundary below the parts' end
        await driver.truncate("up/d/data", 2 * chunk);
        await writeAll(driver, "up/d/data", 2 * chunk, expected.subarray(2 * chunk));
        await driver.move("up/d/data", "blobs/d");
        assert.equal(await sha256((await driver.get("blobs/d"))!), await sha256(expected));
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: an upload completed without its state stored (a crash in a read or a commit) is rebuilt from its object; an aborted one is lost",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const b = await bucket();
        const bytes = pattern(2 * chunk + 5, 19);
        /** Completes the key's upload as a crashed read or commit did: the state unchanged. */
        const completeBehind = async (key: string, withTail: boolean) => {
          const response = await b.client.getObject(`${root}/${key}`);
          const state = JSON.parse(await response.text());
          const name = `${root}/.multipart/${key}/assembled`;
          const parts = state.parts.map((p: { etag: string }, i: number) => ({
            number: i + 1,
            etag: p.etag,
          }));
          if (withTail) {
            const number = parts.length + 1;
            const tail = `${root}/.multipart/${key}/${state.tail}`;
            const etag = await b.client.uploadPartCopy(name, state.upload, number, tail, {});
            parts.push({ number, etag });
          }
          await b.client.completeMultipart(name, state.upload, parts);
        };
        // a writer finds the upload gone, and goes on over a new one made from its object
        await driver.create("up/g/data");
        await writeAll(driver, "up/g/data", 0, bytes.subarray(0, chunk + 1));
        await completeBehind("up/g/data", true);
        await writeAll(driver, "up/g/data", chunk + 1, bytes.subarray(chunk + 1));
        await driver.move("up/g/data", "blobs/g");
        assert.equal(await sha256((await driver.get("blobs/g"))!), await sha256(bytes));
        // a commit, and a read
        for (const key of ["up/h/data", "up/i/data"]) {
          await driver.create(key);
          await writeAll(driver, key, 0, bytes);
          await completeBehind(key, false);
          if (key === "up/i/data") {
            assert.equal(await sha256(await driver.readAll(key)), await sha256(bytes));
          }
          await driver.move(key, `blobs/${key}`);
          assert.equal(await sha256((await driver.get(`blobs/${key}`))!), await sha256(bytes));
        }
        assert.deepEqual(await leftovers(root), { objects: [], uploads: [] });
        // aborted from outside: the parts' bytes are nowhere, the commit says so
        await driver.create("up/l/data");
        await writeAll(driver, "up/l/data", 0, bytes);
        for (const u of await b.client.listMultipart(`${root}/`)) {
          await b.client.abortMultipart(u.name, u.id);
        }
        await assert.rejects(driver.move("up/l/data", "blobs/l"), UploadDataLost);
        assert.equal(await driver.stat("blobs/l"), null);
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: above the CopyObject limit a commit copies by UploadPartCopy ranges; a plain object can be appended to",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { dispose } = await make(root);
      try {
        const driver = new S3Driver({
          ...(await bucket()).options,
          rootdirectory: root,
          chunksize: chunk,
          copyObjectLimit: chunk,
        });
        const bytes = pattern(2 * chunk + 3, 23);
        await driver.create("up/l/data");
        await writeAll(driver, "up/l/data", 0, bytes);
        await driver.move("up/l/data", "blobs/l");
        assert.equal(await sha256((await driver.get("blobs/l"))!), await sha256(bytes));
        await driver.move("blobs/l", "blobs/l2");
        assert.equal(await sha256((await driver.get("blobs/l2"))!), await sha256(bytes));
        assert.equal(await driver.stat("blobs/l"), null);
        // a plain object of more than a part becomes part 1, then grows
        await writeAll(driver, "blobs/l2", bytes.length, bytes.subarray(0, 10));
        const grown = new Uint8Array(bytes.length + 10);
        grown.set(bytes);
        grown.set(bytes.subarray(0, 10), bytes.length);
        await assertCommits(driver, root, "blobs/l2", "blobs/l3", grown);
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name:
      "s3 driver: a delete, delete of a prefix or commit cut short leaves its state listed; bytes gone under a state are lost, and nothing is orphaned",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      const client = driver.client;
      const { abortMultipart, deleteObject, deleteObjects } = client;
      /** Fails every removal of an object (or multipart upload) whose name `hit` picks. */
      const cutShort = (hit: (name: string) => boolean) => {
        const cut = () => Promise.reject(new Error("cut short"));
        client.abortMultipart = (name, id) =>
          hit(name) ? cut() : abortMultipart.call(client, name, id);
        client.deleteObject = (name) => hit(name) ? cut() : deleteObject.call(client, name);
        client.deleteObjects = (names) =>
          names.some(hit) ? cut() : deleteObjects.call(client, names);
      };
      const restore = () => Object.assign(client, { abortMultipart, deleteObject, deleteObjects });
      const bytes = (name: string) => name.includes("/.multipart/");
      try {
        const steps = {
          delete: (key: string) => driver.delete(key),
          deleteAll: (key: string) => driver.deleteAll(key.slice(0, -"/data".length)),
          move: (key: string) => driver.move(key, `blobs/${key.split("/")[1]}`),
        };
        // A part and a tail, and a tail only.
        for (const size of [chunk + 100, 1000]) {
          for (const [step, run] of Object.entries(steps)) {
            const what = `${step}, ${size} bytes`;
            const key = `up/${step}-${size}/data`;
            await driver.create(key);
            await writeAll(driver, key, 0, pattern(size, 31));
            // Stopped where it removes bytes: the state that names them is still there.
            cutShort(bytes);
            try {
              await assert.rejects(run(key), /cut short/, what);
            } finally {
              restore();
            }
            assert.equal((await driver.stat(key))?.size, size, `${what}: the state is listed`);
            assert.deepEqual(await driver.list(`up/${step}-${size}`), ["data"], what);
            // Stopped after the bytes went, before the state: the state is listed, its data lost.
            cutShort((name) => !bytes(name));
            try {
              await assert.rejects(run(key), /cut short/, what);
            } finally {
              restore();
            }
            assert.equal((await driver.stat(key))?.size, size, what);
            await assert.rejects(driver.append(key, size), UploadDataLost, what);
            await assert.rejects(driver.move(key, "blobs/again"), UploadDataLost, what);
            // A delete removes what is left, and nothing stays behind.
            assert.equal(await driver.delete(key), true, what);
            assert.equal(await driver.stat(key), null, what);
            assert.deepEqual(await leftovers(root), { objects: [], uploads: [] }, what);
          }
        }
      } finally {
        restore();
        await dispose();
      }
    },
  });

  Deno.test({
    name: "s3 driver: a presigned URL gives the bytes; an expired or tampered one is refused",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const bytes = pattern(100_000, 29);
        await driver.put("blobs/s", bytes);
        await driver.put("blobs/other", "other");
        const url = await driver.signedUrl("blobs/s", 60);
        const ok = await fetch(url);
        assert.equal(ok.status, 200);
        assert.deepEqual(new Uint8Array(await ok.arrayBuffer()), bytes);
        const refused = async (href: string, why: string) => {
          const response = await fetch(href);
          await response.body?.cancel();
          assert.equal(response.status, 403, why);
        };
        const signature = new URL(url).searchParams.get("X-Amz-Signature")!;
        const flipped = signature.replace(/^./, (c) => (c === "0" ? "1" : "0"));
        await refused(url.replace(signature, flipped), "signature changed");
        await refused(url.replace("/blobs/s?", "/blobs/other?"), "another object");
        await refused(url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"), "longer life");
        const unsigned = new URL(url);
        unsigned.search = "";
        await refused(unsigned.href, "no signature");
        // a URL of 1 s is refused once it expired (polled, bounded)
        const short = await driver.signedUrl("blobs/s", 1);
        const deadline = Date.now() + 15_000;
        let status = 200;
        while (status === 200 && Date.now() < deadline) {
          const response = await fetch(short);
          await response.body?.cancel();
          status = response.status;
          if (status === 200) await new Promise((resolve) => setTimeout(resolve, 200));
        }
        assert.equal(status, 403, "expired");
      } finally {
        await dispose();
      }
    },
  });
});
