/**
 * Chunked blob uploads through the app over the S3 driver on the real Ceph RGW, with two app
 * instances (replicas) over the same bucket and root taking turns: every PATCH is acknowledged
 * only once its bytes are in the bucket, the next one may land on the other replica, and the
 * final PUT commits a blob whose bytes hash to the digest; nothing of the upload is left. A
 * session whose saved SHA-256 state is lost is re-hashed from the upload data in the bucket.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createApp } from "../../src/app.ts";
import { DEFAULTS } from "../../src/config/mod.ts";
import { S3Driver } from "../../src/storage/drivers/s3.ts";
import { s3Tests } from "../helpers/s3.ts";

const CHUNK = 5 * 1024 * 1024;

await s3Tests((bucket, ignore) => {
  Deno.test({
    name: "s3 uploads: PATCHes alternate between two replicas; the commit is the digest's bytes",
    ignore,
    async fn() {
      const b = await bucket();
      const root = `u-${Date.now()}`;
      const config = { ...DEFAULTS, port: 0, dataDir: "memory", redirectDisabled: true }; // the bytes through the app
      const apps = await Promise.all([0, 1].map(() =>
        createApp(config, {
          log: () => {},
          driver: new S3Driver({ ...b.options, rootdirectory: root, chunksize: CHUNK }),
        })
      ));
      try {
        const call = (replica: number, path: string, init?: RequestInit) =>
          apps[replica](new Request(new URL(path, "http://registry.test"), init));
        const bytes = new Uint8Array(2 * CHUNK + 3 * 1024 * 1024 + 12_345)
          .map((_, i) => (i * 13 + (i >> 11)) % 251);
        const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
        const started = await call(0, "/v2/s3/uploads/blobs/uploads/", { method: "POST" });
        await started.body?.cancel();
        assert.equal(started.status, 202);
        let location = started.headers.get("location")!;
        // small PATCHes (tail rewrites), one across a part boundary, one of several parts
        const cuts = [
          0,
          100_000,
          1_200_000,
          CHUNK + 500,
          CHUNK + 600,
          bytes.length - 7,
          bytes.length,
        ];
        const driver = new S3Driver({ ...b.options, rootdirectory: root });
        for (let i = 0; i + 1 < cuts.length; i++) {
          const [start, end] = [cuts[i], cuts[i + 1]];
          if (i === 4) {
            // the saved hash state is lost: the next replica re-hashes the data it finds
            const id = new URL(location, "http://registry.test").pathname.split("/").pop()!;
            assert.ok(await driver.stat(`uploads/${id}/hashstate`), "the session's state");
            await driver.put(`uploads/${id}/hashstate`, "lost");
          }
          const patched = await call(i % 2, location, {
            method: "PATCH",
            headers: {
              "content-type": "application/octet-stream",
              "content-range": `${start}-${end - 1}`,
              "content-length": String(end - start),
            },
            body: bytes.subarray(start, end),
          });
          await patched.body?.cancel();
          assert.equal(patched.status, 202, `PATCH ${start}-${end - 1} on replica ${i % 2}`);
          assert.equal(patched.headers.get("range"), `0-${end - 1}`);
          location = patched.headers.get("location")!;
          // the other replica sees the acknowledged offset
          const status = await call((i + 1) % 2, location);
          await status.body?.cancel();
          assert.equal(status.status, 204);
          assert.equal(status.headers.get("range"), `0-${end - 1}`);
        }
        const url = new URL(location, "http://registry.test");
        url.searchParams.set("digest", digest);
        const put = await call(1, url.pathname + url.search, { method: "PUT" });
        await put.body?.cancel();
        assert.equal(put.status, 201);
        const got = await call(0, `/v2/s3/uploads/blobs/${digest}`);
        assert.equal(got.status, 200);
        const read = new Uint8Array(await got.arrayBuffer());
        assert.equal(`sha256:${createHash("sha256").update(read).digest("hex")}`, digest);
        assert.deepEqual(await b.client.listMultipart(`${root}/`), [], "no upload left");
        assert.deepEqual(await b.client.listAll(`${root}/.multipart/`), [], "no part left");
      } finally {
        for (const app of apps) app.close();
        for (const u of await b.client.listMultipart(`${root}/`)) {
          await b.client.abortMultipart(u.name, u.id);
        }
        const keys = (await b.client.listAll(`${root}/`)).map((o) => o.key);
        if (keys.length > 0) await b.client.deleteObjects(keys);
      }
    },
  });
});
