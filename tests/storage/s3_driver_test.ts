/**
 * Runs the driver conformance suite against the S3 driver on a real Ceph RGW (see
 * `tests/helpers/s3.ts`), each test under its own root directory of the run's bucket, plus
 * what is particular to S3: segmented (appended) objects across chunk boundaries, and moves.
 */

import assert from "node:assert/strict";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { S3Driver } from "../../src/storage/drivers/s3.ts";
import { s3Tests } from "../helpers/s3.ts";
import { driverSuite } from "./driver_suite.ts";

let fixtures = 0;

await s3Tests((bucket, ignore) => {
  const make = async (root = `t${++fixtures}-${Date.now()}`) => {
    const b = await bucket();
    const driver = new S3Driver({ ...b.options, rootdirectory: root, chunksize: 5 * 1024 * 1024 });
    return {
      driver,
      async dispose() {
        const keys = (await b.client.listAll(`${root}/`)).map((o) => o.key);
        if (keys.length > 0) await b.client.deleteObjects(keys);
      },
    };
  };
  driverSuite("s3", () => make(), { ignore });

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

  Deno.test({
    name: "s3 driver: appended data spans segments and chunks, survives cuts, and moves whole",
    ignore,
    async fn() {
      const root = `t${++fixtures}-${Date.now()}`;
      const { driver, dispose } = await make(root);
      try {
        const chunk = 5 * 1024 * 1024;
        const bytes = new Uint8Array(2 * chunk + 1234).map((_, i) => (i * 7) % 253);
        await driver.create("up/x/data");
        // a second driver over the same bucket and root sees only what the bucket holds
        const other = new S3Driver({ ...(await bucket()).options, rootdirectory: root });
        const w = await driver.append("up/x/data", 0);
        await w.write(bytes.subarray(0, 1000));
        assert.equal((await other.stat("up/x/data"))?.size, 0, "buffered, not yet written");
        await w.sync();
        assert.deepEqual(await other.get("up/x/data"), bytes.subarray(0, 1000), "durable at sync");
        for (let at = 1000; at < bytes.length; at += 1_000_000) {
          await w.write(bytes.subarray(at, Math.min(bytes.length, at + 1_000_000)));
        }
        await w.sync();
        w.close();
        assert.equal((await driver.stat("up/x/data"))?.size, bytes.length);
        const mid = await driver.read("up/x/data", { start: chunk - 10, length: chunk + 20 });
        assert.deepEqual(
          new Uint8Array(await new Response(mid!.stream).arrayBuffer()),
          bytes.subarray(chunk - 10, 2 * chunk + 10),
        );
        // cut inside the first segment, then write again: the old tail never comes back
        const again = await driver.append("up/x/data", 100);
        await again.write(new Uint8Array(50).fill(1));
        await again.sync();
        again.close();
        const expected = new Uint8Array(150);
        expected.set(bytes.subarray(0, 100));
        expected.fill(1, 100);
        assert.deepEqual(await driver.get("up/x/data"), expected);
        assert.deepEqual(await driver.list("up/x"), ["data"], "segments are not listed");
        await driver.move("up/x/data", "blobs/final");
        assert.deepEqual(await driver.get("blobs/final"), expected);
        assert.equal(await driver.stat("up/x/data"), null);
        assert.deepEqual(await driver.list("up"), []);
        // a large segmented object is committed by a multipart upload
        await driver.create("up/y/data");
        const big = await driver.append("up/y/data", 0);
        await big.write(bytes);
        await big.sync();
        big.close();
        await driver.move("up/y/data", "blobs/big");
        assert.deepEqual(await driver.get("blobs/big"), bytes);
        assert.deepEqual(await driver.list(""), ["blobs"]);
      } finally {
        await dispose();
      }
    },
  });
});
