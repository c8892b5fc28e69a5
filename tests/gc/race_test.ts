/**
 * Requests racing with a sweep, interleaved deterministically: the collector's probe stops the
 * sweep at a named point while it holds a lock, the test starts a request there and waits
 * until that request asks for the lock (a lock manager that tells), then lets the sweep go on.
 * Whatever the order, a manifest PUT either succeeds with every blob present or answers
 * MANIFEST_BLOB_UNKNOWN, and an upload committing over a swept copy ends with its bytes stored.
 */

import assert from "node:assert/strict";
import { blobLock, repositoryLock } from "../../src/services/locks.ts";
import { KeyedMutex, type LockManager } from "../../src/storage/lock.ts";
import type { Digest, RepositoryName } from "../../src/types/oci.ts";
import { ociManifest } from "../helpers/manifests.ts";
import { pushBlob, randomBytes, sha256Digest } from "../helpers/registry.ts";
import { errorOf, pushImage, pushImageBlobs, putManifest, status } from "../services/fixtures.ts";
import { type ClockedRegistry, clockedRegistry, HOUR } from "./helpers.ts";
import type { GcReport } from "../../src/gc/collector.ts";

/** A lock manager that tells when a key is asked for. */
class TellingLocks implements LockManager {
  readonly #inner = new KeyedMutex();
  readonly #waiting = new Map<string, () => void>();

  /** Resolves at the next `run` of `key`. */
  asked(key: string): Promise<void> {
    return new Promise((resolve) => this.#waiting.set(key, resolve));
  }

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const tell = this.#waiting.get(key);
    if (tell) {
      this.#waiting.delete(key);
      tell();
    }
    return this.#inner.run(key, fn);
  }

  isBusy(key: string): boolean {
    return this.#inner.isBusy(key);
  }
}

const repo = (name: string) => name as RepositoryName;

Deno.test("a manifest PUT waiting on a sweep of its repository gets MANIFEST_BLOB_UNKNOWN", async () => {
  const locks = new TellingLocks();
  let put: Promise<Response> | null = null;
  let manifest: Uint8Array<ArrayBuffer> | null = null;
  await using reg = await clockedRegistry({
    locks,
    gcProbe: async (phase) => {
      if (phase !== "link" || put !== null) return;
      // The sweep holds org/app's lock and is about to unlink: the PUT waits for it.
      const asked = locks.asked(repositoryLock(repo("org/app")));
      put = putManifest(reg, "org/app", "v1", manifest!);
      await asked;
    },
  });
  const parts = await pushImageBlobs(reg, "org/app", 1);
  manifest = (await ociManifest(parts)).bytes;
  reg.advance(2 * HOUR);
  const report = await reg.collect();
  const response = await put!;
  assert.equal(response.status, 400);
  assert.equal((await errorOf(response)).code, "MANIFEST_BLOB_UNKNOWN");
  assert.equal(await status(reg, "/v2/org/app/manifests/v1"), 404);
  assert.equal(report.counts.links, 2);
  assert.equal(await reg.hasBlob(parts.layers[0].digest), false);
});

Deno.test("a manifest PUT that gets its repository before the sweep keeps every blob", async () => {
  let put: Response | null = null;
  let manifest: Uint8Array<ArrayBuffer> | null = null;
  await using reg = await clockedRegistry({
    gcProbe: async (phase, subject) => {
      if (phase !== "repository" || subject !== "org/app" || put !== null) return;
      put = await putManifest(reg, "org/app", "v1", manifest!);
    },
  });
  const parts = await pushImageBlobs(reg, "org/app", 2);
  const built = await ociManifest(parts);
  manifest = built.bytes;
  reg.advance(2 * HOUR); // the links are old: only the manifest (and its touch) keeps them
  const report = await reg.collect();
  assert.equal(put!.status, 201);
  assert.equal(report.counts.links + report.counts.blobs, 0);
  for (const blob of [parts.config, ...parts.layers, { digest: built.digest }]) {
    assert.ok(await reg.hasBlob(blob.digest));
  }
  for (const blob of [parts.config, ...parts.layers]) {
    assert.equal(await status(reg, `/v2/org/app/blobs/${blob.digest}`), 200);
  }
});

Deno.test("a manifest PUT whose old bytes are being swept stores them again", async () => {
  const locks = new TellingLocks();
  let put: Promise<Response> | null = null;
  let target: { digest: string; bytes: Uint8Array<ArrayBuffer> } | null = null;
  await using reg = await clockedRegistry({
    locks,
    gcProbe: async (phase, subject) => {
      if (phase !== "blob" || subject !== target?.digest || put !== null) return;
      // The sweep holds the bytes' blob lock and is about to delete them.
      const asked = locks.asked(blobLock(subject as Digest));
      put = putManifest(reg, "org/app", target.digest, target.bytes);
      await asked;
    },
  });
  const kept = await pushImage(reg, "org/app", { reference: "v1" });
  // Another manifest of the same blobs: pushed, then deleted (its bytes stay, unreferenced).
  target = await ociManifest(kept, { annotations: { "org.example": "other" } });
  const first = await putManifest(reg, "org/app", target.digest, target.bytes);
  await first.body?.cancel();
  assert.equal(first.status, 201);
  assert.equal(
    await status(reg, `/v2/org/app/manifests/${target.digest}`, { method: "DELETE" }),
    202,
  );
  reg.advance(2 * HOUR);
  const report = await reg.collect();
  assert.deepEqual(report.blobs.map((b) => b.digest), [target.digest]);
  const response = await put!;
  await response.body?.cancel();
  assert.equal(response.status, 201);
  const get = await reg.fetch(`/v2/org/app/manifests/${target.digest}`);
  assert.equal(get.status, 200);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), target.bytes);
  assert.ok(await reg.hasBlob(target.digest));
});

Deno.test("an upload committing while its old copy is swept ends with its bytes stored", async () => {
  const locks = new TellingLocks();
  const bytes = randomBytes(4096);
  const digest = await sha256Digest(bytes);
  let commit: Promise<Response> | null = null;
  let location = "";
  await using reg = await clockedRegistry({
    locks,
    gcProbe: async (phase, subject) => {
      if (phase !== "blob" || subject !== digest || commit !== null) return;
      const asked = locks.asked(blobLock(digest as Digest));
      commit = reg.fetch(`${location}?digest=${digest}`, { method: "PUT" });
      await asked;
    },
  });
  await pushBlob(reg, "org/a", bytes);
  assert.equal(await status(reg, `/v2/org/a/blobs/${digest}`, { method: "DELETE" }), 202);
  reg.advance(2 * HOUR);
  // The same bytes uploaded again to org/b, all but the final PUT.
  const start = await reg.fetch("/v2/org/b/blobs/uploads/", { method: "POST" });
  await start.body?.cancel();
  location = start.headers.get("location")!;
  const patch = await reg.fetch(location, { method: "PATCH", body: bytes });
  await patch.body?.cancel();
  assert.equal(patch.status, 202);
  const report = await reg.collect();
  assert.deepEqual(report.blobs, [{ digest, size: 4096 }]); // the old copy went
  const response = await commit!;
  await response.body?.cancel();
  assert.equal(response.status, 201);
  assert.ok(await reg.hasBlob(digest));
  assert.ok(await reg.hasLink("org/b", digest));
  const get = await reg.fetch(`/v2/org/b/blobs/${digest}`);
  assert.equal(get.status, 200);
  assert.equal(await sha256Digest(new Uint8Array(await get.arrayBuffer())), digest);
  // The commit touched it: the next collection keeps it.
  const next = await reg.collect();
  assert.equal(next.counts.blobs + next.counts.links, 0);
});

Deno.test("a blob linked after its repository was scanned is spared, whatever the clock says", async () => {
  const bytes = randomBytes(3000);
  const digest = await sha256Digest(bytes);
  let pushed: string | null = null;
  await using reg = await clockedRegistry({
    gcProbe: async (phase, subject) => {
      // `a/old` (which links the blob, unneeded) is scanned; `z/last` comes next.
      if (phase !== "repository" || subject !== "z/last" || pushed !== null) return;
      // The same bytes pushed into a repository the mark does not scan (made after it began),
      // then the clock jumps past the grace window: only the touch in the window spares them.
      pushed = await pushBlob(reg, "m/new", bytes);
      reg.advance(2 * HOUR);
    },
  });
  await pushBlob(reg, "a/old", bytes);
  await pushImage(reg, "z/last", { reference: "v1" });
  reg.advance(2 * HOUR);
  const report = await reg.collect();
  assert.equal(pushed, digest);
  assert.deepEqual(report.links, [{ repository: "a/old", digest }], "the unneeded link went");
  assert.equal(report.counts.blobs, 0);
  assert.equal(report.spared, 1);
  assert.ok(await reg.hasBlob(digest));
  const get = await reg.fetch(`/v2/m/new/blobs/${digest}`);
  assert.equal(get.status, 200);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
});

/**
 * Runs `start` (a request that links the blob into the new repository `m/new`) while the test
 * holds that repository's lock, so the request waits holding the blob's lock; then `between`;
 * then a collection, which opens its window and lists the repositories (`m/new` is not one
 * yet) and whose sweep waits for the blob's lock; then lets the request link. Returns the
 * request's response and the collection's report.
 */
async function linkedAfterMark(
  reg: ClockedRegistry,
  locks: TellingLocks,
  digest: Digest,
  start: () => Promise<Response>,
  between: () => Promise<void> = async () => {},
): Promise<{ response: Response; report: GcReport }> {
  let release = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const held = locks.run(repositoryLock(repo("m/new")), () => gate);
  const asks = locks.asked(repositoryLock(repo("m/new")));
  const request = start();
  await asks;
  await between();
  const sweepAsks = locks.asked(blobLock(digest));
  const collection = reg.collect();
  await sweepAsks;
  release();
  await held;
  const response = await request;
  await response.body?.cancel();
  return { response, report: await collection };
}

/** The bytes were spared by the collection's window and read back from `m/new`. */
async function sparedInNew(
  reg: ClockedRegistry,
  report: GcReport,
  digest: Digest,
  bytes: Uint8Array,
) {
  assert.equal(report.counts.blobs, 0);
  assert.equal(report.spared, 1);
  assert.ok(await reg.hasBlob(digest));
  assert.ok(await reg.hasLink("m/new", digest));
  const get = await reg.fetch(`/v2/m/new/blobs/${digest}`);
  assert.equal(get.status, 200);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
}

Deno.test("an upload committed as a collection begins, linked after the mark, keeps its bytes", async () => {
  const locks = new TellingLocks();
  const bytes = randomBytes(2500);
  const digest = await sha256Digest(bytes) as Digest;
  // No grace window (as in the crash test's fastest runs): only the collection's window spares.
  await using reg = await clockedRegistry({ locks, gc: { graceMs: 0 } });
  await pushImage(reg, "a/other", { reference: "v1" }); // something for the mark to read
  // The commit has stored the bytes and waits to link them.
  const { response, report } = await linkedAfterMark(
    reg,
    locks,
    digest,
    () => reg.fetch(`/v2/m/new/blobs/uploads/?digest=${digest}`, { method: "POST", body: bytes }),
  );
  assert.equal(response.status, 201);
  await sparedInNew(reg, report, digest, bytes);
});

Deno.test("a mount begun before a collection, linked after the mark, keeps the blob's bytes", async () => {
  const locks = new TellingLocks();
  const bytes = randomBytes(2600);
  const digest = await sha256Digest(bytes) as Digest;
  await using reg = await clockedRegistry({ locks, gc: { graceMs: 0 } });
  await pushBlob(reg, "a/src", bytes);
  // The mount has checked its source and waits to link; then the source's link goes, so only
  // the mount will link the bytes.
  const { response, report } = await linkedAfterMark(
    reg,
    locks,
    digest,
    () => reg.fetch(`/v2/m/new/blobs/uploads/?mount=${digest}&from=a/src`, { method: "POST" }),
    async () => {
      assert.equal(await status(reg, `/v2/a/src/blobs/${digest}`, { method: "DELETE" }), 202);
    },
  );
  assert.equal(response.status, 201);
  await sparedInNew(reg, report, digest, bytes);
});
