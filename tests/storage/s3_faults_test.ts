/**
 * The S3 driver under faults, on the real Ceph RGW through a fault-injecting proxy
 * (`tests/helpers/fault_proxy.ts`): transient 500s, resets, replies lost after the server
 * acted and stalls are retried and the operations succeed; persistent ones end in
 * StorageUnavailable within a bounded time; after the faults stop everything works and what
 * is read back hashes right. Through the app: a blob push meets 503 with Retry-After during an
 * outage, and succeeds after it.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createApp } from "../../src/app.ts";
import { DEFAULTS } from "../../src/config/mod.ts";
import { StorageUnavailable } from "../../src/storage/driver.ts";
import { S3Driver, type S3DriverOptions } from "../../src/storage/drivers/s3.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import { s3Tests, type TestBucket } from "../helpers/s3.ts";

const CHUNK = 5 * 1024 * 1024;
/** The stall timeout of drivers under test, in seconds. */
const TIMEOUT = 0.5;
const ATTEMPTS = 4;
/** The longest a failing operation may take: every attempt stalled, every backoff at most. */
const GIVE_UP_MS = ATTEMPTS * (TIMEOUT * 1000 + 1000) + 3000;

let fixtures = 0;

const pattern = (length: number, seed: number) =>
  new Uint8Array(length).map((_, i) => (i * seed + (i >> 12)) % 253);

const sha256 = async (bytes: Uint8Array | ReadableStream<Uint8Array>) => {
  const hash = createHash("sha256");
  if (bytes instanceof Uint8Array) hash.update(bytes);
  else for await (const chunk of bytes) hash.update(chunk);
  return hash.digest("hex");
};

await s3Tests((bucket, ignore) => {
  /** A driver through a new proxy, under its own root; disposing removes what it wrote. */
  const setup = async (extra: Partial<S3DriverOptions> = {}) => {
    const b: TestBucket = await bucket();
    const root = `f${++fixtures}-${Date.now()}`;
    const proxy = new FaultProxy(b.options.regionendpoint!);
    const driver = new S3Driver({
      ...b.options,
      regionendpoint: proxy.endpoint,
      rootdirectory: root,
      chunksize: CHUNK,
      attempts: ATTEMPTS,
      timeoutSeconds: TIMEOUT,
      backoffMs: 20,
      ...extra,
    });
    return {
      driver,
      proxy,
      root,
      b,
      async [Symbol.asyncDispose]() {
        await proxy.close();
        for (const u of await b.client.listMultipart(`${root}/`)) {
          await b.client.abortMultipart(u.name, u.id);
        }
        const keys = (await b.client.listAll(`${root}/`)).map((o) => o.key);
        if (keys.length > 0) await b.client.deleteObjects(keys);
      },
    };
  };

  /** Uploads `bytes` as upload data in PATCH-like pieces, then commits it to `blob`. */
  const upload = async (driver: S3Driver, key: string, bytes: Uint8Array, blob: string) => {
    await driver.create(key);
    const pieces = [0, 700_000, CHUNK + 3, bytes.length - 5000, bytes.length];
    for (let i = 0; i + 1 < pieces.length; i++) {
      const w = await driver.append(key, pieces[i]);
      for (let at = pieces[i]; at < pieces[i + 1]; at += 1_000_000) {
        await w.write(bytes.subarray(at, Math.min(pieces[i + 1], at + 1_000_000)));
      }
      await w.sync();
      w.close();
    }
    await driver.move(key, blob);
  };

  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `s3 faults: ${name}`, ignore, fn });

  test("transient 500s and resets are retried: an upload, its commit and reads succeed whole", async () => {
    for (const mode of ["500", "reset"] as const) {
      await using s = await setup();
      const bytes = pattern(2 * CHUNK + 300_000, mode === "500" ? 7 : 11);
      s.proxy.failEvery(mode, 3); // every third request fails; never ATTEMPTS in a row
      await s.driver.put("small/one", "hello");
      assert.equal(new TextDecoder().decode((await s.driver.get("small/one"))!), "hello");
      await upload(s.driver, "uploads/u/data", bytes, "blobs/b");
      assert.equal(await sha256((await s.driver.read("blobs/b"))!.stream), await sha256(bytes));
      assert.deepEqual(await s.driver.list(""), ["blobs", "small"]);
      assert.ok(s.proxy.counts.faults >= 10, `${mode}: ${s.proxy.counts.faults} faults injected`);
      s.proxy.failEvery(null);
      assert.deepEqual(await s.b.client.listMultipart(`${s.root}/`), [], `${mode}: no upload left`);
    }
  });

  test("replies lost after the server acted (PUT, POST, copies) are retried without harm", async () => {
    await using s = await setup();
    const bytes = pattern(2 * CHUNK + 12_345, 13);
    s.proxy.cutAfter = 0; // forwarded, the server acts, the reply never comes back
    s.proxy.failEvery("cut", 4);
    await upload(s.driver, "uploads/v/data", bytes, "blobs/v");
    assert.ok(s.proxy.counts.faults >= 5, `${s.proxy.counts.faults} replies lost`);
    s.proxy.failEvery(null);
    assert.equal(await sha256((await s.driver.read("blobs/v"))!.stream), await sha256(bytes));
    assert.equal(await s.driver.stat("uploads/v/data"), null);
    assert.deepEqual(
      await s.b.client.listMultipart(`${s.root}/`),
      [],
      "an upload created by a lost CreateMultipartUpload reply is aborted too",
    );
  });

  test("lost replies of CreateMultipartUpload and CompleteMultipartUpload: the commit is right, no upload is left", async () => {
    await using s = await setup();
    const bytes = pattern(2 * CHUNK + 999, 37);
    s.proxy.cutAfter = 0;
    s.proxy.failMatching(/^POST \S+\?uploads$/, "cut", 1); // an upload is made, its id lost
    s.proxy.failMatching(/^POST \S+\/assembled\?uploadId=/, "cut", 1); // completed, reply lost
    await upload(s.driver, "uploads/c/data", bytes, "blobs/c");
    assert.equal(s.proxy.pendingFaults, 0, "both replies were lost");
    assert.equal(await sha256((await s.driver.read("blobs/c"))!.stream), await sha256(bytes));
    assert.deepEqual(await s.b.client.listMultipart(`${s.root}/`), []);
    assert.deepEqual(await s.b.client.listAll(`${s.root}/.multipart/`), []);
  });

  test("a GetObject body cut in the middle resumes where it broke", async () => {
    await using s = await setup();
    const bytes = pattern(3 * 1024 * 1024 + 5, 17);
    await s.driver.put("blobs/cut", bytes);
    s.proxy.cutAfter = 1024 * 1024;
    s.proxy.fail("cut", 2);
    assert.equal(await sha256((await s.driver.read("blobs/cut"))!.stream), await sha256(bytes));
    assert.equal(s.proxy.pendingFaults, 0, "both cuts happened");
  });

  test("a stall is cut by the timeout and the request retried", async () => {
    await using s = await setup();
    await s.driver.put("blobs/s", "still here");
    s.proxy.fail("stall", 1);
    const started = performance.now();
    assert.equal(new TextDecoder().decode((await s.driver.get("blobs/s"))!), "still here");
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= TIMEOUT * 1000 * 0.9, `waited for the timeout (${elapsed} ms)`);
    assert.ok(elapsed < GIVE_UP_MS, `${elapsed} ms`);
    assert.equal(s.proxy.counts.faults, 1);
  });

  test("persistent 500s, resets and stalls give StorageUnavailable in bounded time; nothing half-written is visible", async () => {
    await using s = await setup();
    const old = pattern(100_000, 19);
    await s.driver.put("blobs/p", old);
    for (const mode of ["500", "reset", "stall"] as const) {
      s.proxy.mode = mode;
      for (
        const [what, op] of [
          ["put", () => s.driver.put("blobs/p", pattern(200_000, 23))],
          ["get", () => s.driver.get("blobs/p")],
          ["create", () => s.driver.create("uploads/x/data")],
          ["list", () => s.driver.list("blobs")],
        ] as const
      ) {
        const started = performance.now();
        await assert.rejects(op(), StorageUnavailable, `${mode} ${what}`);
        const elapsed = performance.now() - started;
        assert.ok(elapsed < GIVE_UP_MS, `${mode} ${what}: gave up after ${elapsed} ms`);
      }
      s.proxy.mode = "pass";
      assert.deepEqual(await s.driver.get("blobs/p"), old, `${mode}: the old object, whole`);
    }
    assert.equal(await s.driver.stat("uploads/x/data"), null);
  });

  test("an outage in the middle of an upload: the writer fails, the upload resumes after it", async () => {
    await using s = await setup();
    const bytes = pattern(3 * CHUNK + 4321, 29);
    await s.driver.create("uploads/o/data");
    const first = await s.driver.append("uploads/o/data", 0);
    await first.write(bytes.subarray(0, CHUNK + 10));
    await first.sync(); // acknowledged: CHUNK + 10 bytes
    first.close();
    const second = await s.driver.append("uploads/o/data", CHUNK + 10);
    s.proxy.mode = "500";
    await assert.rejects(
      (async () => {
        for (let at = CHUNK + 10; at < bytes.length; at += 1_000_000) {
          await second.write(bytes.subarray(at, Math.min(bytes.length, at + 1_000_000)));
        }
        await second.sync();
      })(),
      StorageUnavailable,
    );
    second.close();
    s.proxy.mode = "pass";
    // the acknowledged bytes are there; the client resumes at its acknowledged offset
    const size = (await s.driver.stat("uploads/o/data"))!.size;
    assert.equal(size, CHUNK + 10, "the state still says what was acknowledged");
    assert.equal(
      await sha256(await s.driver.readAll("uploads/o/data")),
      await sha256(bytes.subarray(0, CHUNK + 10)),
    );
    const third = await s.driver.append("uploads/o/data", size);
    for (let at = size; at < bytes.length; at += 1_000_000) {
      await third.write(bytes.subarray(at, Math.min(bytes.length, at + 1_000_000)));
    }
    await third.sync();
    third.close();
    await s.driver.move("uploads/o/data", "blobs/o");
    assert.equal(await sha256((await s.driver.read("blobs/o"))!.stream), await sha256(bytes));
  });

  test("through the app: a blob push gets 503 with Retry-After during an outage, and succeeds after", async () => {
    await using s = await setup();
    const config = { ...DEFAULTS, port: 0, dataDir: "memory", redirectDisabled: true }; // the bytes through the app
    const app = await createApp(config, { log: () => {}, driver: s.driver });
    try {
      const call = (path: string, init?: RequestInit) =>
        app(new Request(new URL(path, "http://registry.test"), init));
      const bytes = pattern(CHUNK + 77_777, 31);
      const digest = `sha256:${await sha256(bytes)}`;
      const push = async () => {
        const started = await call("/v2/faults/app/blobs/uploads/", { method: "POST" });
        await started.body?.cancel();
        if (started.status !== 202) return started;
        const location = new URL(started.headers.get("location")!, "http://registry.test");
        location.searchParams.set("digest", digest);
        return await call(location.pathname + location.search, {
          method: "PUT",
          headers: { "content-type": "application/octet-stream" },
          body: bytes,
        });
      };
      s.proxy.mode = "500";
      const refused = await push();
      await refused.body?.cancel();
      assert.equal(refused.status, 503);
      assert.ok(Number(refused.headers.get("retry-after")) > 0, "Retry-After");
      s.proxy.mode = "stall";
      const stalled = await push();
      await stalled.body?.cancel();
      assert.equal(stalled.status, 503, "a stalled store is an outage too");
      s.proxy.mode = "pass";
      const pushed = await push();
      await pushed.body?.cancel();
      assert.equal(pushed.status, 201);
      const got = await call(`/v2/faults/app/blobs/${digest}`);
      assert.equal(got.status, 200);
      assert.equal(`sha256:${await sha256(new Uint8Array(await got.arrayBuffer()))}`, digest);
    } finally {
      app.close();
    }
  });
});
