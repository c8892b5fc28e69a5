/**
 * The blob service over `memoryRegistry()`: a blob is visible only where it is linked; a
 * blob DELETE (an unlink) is refused with 405 UNSUPPORTED (detail {digest, manifest}) while a
 * stored image manifest of the repository names it as config or layer, also when that
 * manifest's record predates stored references (which then get filled in), and succeeds once
 * the manifest is deleted; the same blob in another repository is unaffected. Mounts: from a
 * named repository, and without `from` by automatic mount (on: 201 from any holder; off: a new
 * upload session). With a one-step look-up of a linked blob's size (the scale-out mode's), a
 * HEAD asks the blob store only for a linked blob without a recorded size.
 */

import assert from "node:assert/strict";
import { ociManifest } from "../helpers/manifests.ts";
import { memoryRegistry, pushBlob, randomBytes, sha256Digest } from "../helpers/registry.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { RegistryError } from "../../src/errors.ts";
import { BlobService } from "../../src/services/blobs.ts";
import { DriverBlobStore } from "../../src/storage/blobs.ts";
import { KeyedMutex } from "../../src/storage/lock.ts";
import { LocalMetadataStore } from "../../src/storage/metadata/local.ts";
import { revisionKey } from "../../src/storage/keys.ts";
import type { Digest, RepositoryName } from "../../src/types/oci.ts";
import {
  errorOf,
  type PushedImage,
  pushImage,
  pushImageBlobs,
  putManifest,
  status,
} from "./fixtures.ts";

const repo = (value: string) => value as RepositoryName;
const del = { method: "DELETE" };
const post = { method: "POST" };

Deno.test("a blob is visible only in the repositories that link it", async () => {
  await using reg = await memoryRegistry();
  const digest = await pushBlob(reg, "app", randomBytes(64));
  assert.equal(await status(reg, `/v2/app/blobs/${digest}`, { method: "HEAD" }), 200);
  const other = await reg.fetch(`/v2/other/blobs/${digest}`);
  assert.equal(other.status, 404);
  assert.equal((await errorOf(other)).code, "BLOB_UNKNOWN");
});

Deno.test("a DELETE of a layer a stored image manifest uses is 405 UNSUPPORTED naming the manifest", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  const layer = image.layers[0].digest;
  const res = await reg.fetch(`/v2/app/blobs/${layer}`, del);
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET, HEAD");
  const error = await errorOf(res);
  assert.equal(error.code, "UNSUPPORTED");
  assert.deepEqual(error.detail, { digest: layer, manifest: image.digest });
  assert.equal(await status(reg, `/v2/app/blobs/${layer}`), 200, "still linked");
});

Deno.test("a DELETE of the config blob of a stored image manifest is refused too", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app");
  const res = await reg.fetch(`/v2/app/blobs/${image.config.digest}`, del);
  assert.equal(res.status, 405);
  assert.deepEqual((await errorOf(res)).detail, {
    digest: image.config.digest,
    manifest: image.digest,
  });
});

Deno.test("a blob DELETE succeeds (202) once the manifest using it is deleted", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  const layer = image.layers[0].digest;
  assert.equal(await status(reg, `/v2/app/blobs/${layer}`, del), 405);
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`, del), 202);
  assert.equal(await status(reg, `/v2/app/blobs/${layer}`, del), 202);
  assert.equal(await status(reg, `/v2/app/blobs/${layer}`), 404);
  assert.equal(await status(reg, `/v2/app/blobs/${layer}`, del), 404, "already unlinked");
});

Deno.test("deleting a manifest's tag alone does not free its blobs", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  assert.equal(await status(reg, "/v2/app/manifests/v1", del), 202);
  assert.equal(await status(reg, `/v2/app/blobs/${image.layers[0].digest}`, del), 405);
});

Deno.test("the same blob in another repository is unaffected by a manifest that uses it here", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app");
  const layer = image.layers[0];
  // `other` links the same bytes but stores no manifest naming them.
  assert.equal(
    await status(reg, `/v2/other/blobs/uploads/?mount=${layer.digest}&from=app`, post),
    201,
  );
  assert.equal(await status(reg, `/v2/other/blobs/${layer.digest}`, del), 202);
  assert.equal(await status(reg, `/v2/other/blobs/${layer.digest}`), 404);
  const kept = await reg.fetch(`/v2/app/blobs/${layer.digest}`);
  assert.equal(kept.status, 200);
  assert.equal((await kept.arrayBuffer()).byteLength, layer.size, "bytes stay for app");
  assert.equal(await status(reg, `/v2/app/blobs/${layer.digest}`, del), 405);
});

Deno.test("a manifest in another repository does not block a blob DELETE here", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app");
  const layer = image.layers[0].digest;
  const bytes = await (await reg.fetch(`/v2/app/blobs/${layer}`)).bytes();
  await pushBlob(reg, "other", bytes);
  assert.equal(await status(reg, `/v2/other/blobs/${layer}`, del), 202);
});

Deno.test("a DELETE of a blob that is not linked is 404 BLOB_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  const digest = await sha256Digest(randomBytes(8));
  const res = await reg.fetch(`/v2/app/blobs/${digest}`, del);
  assert.equal(res.status, 404);
  const error = await errorOf(res);
  assert.equal(error.code, "BLOB_UNKNOWN");
  assert.deepEqual(error.detail, { digest });
});

Deno.test("an index does not block the DELETE of blobs (only image manifests name blobs)", async () => {
  await using reg = await memoryRegistry();
  const loose = await pushBlob(reg, "app", randomBytes(32));
  await pushImage(reg, "app");
  assert.equal(await status(reg, `/v2/app/blobs/${loose}`, del), 202);
});

Deno.test("an image manifest stored without references (older data root) still blocks a blob DELETE and gets them filled in", async () => {
  const driver = new MemoryDriver();
  let image: PushedImage;
  {
    await using first = await memoryRegistry({ driver });
    image = await pushImage(first, "app", { layers: 2 });
  }
  const key = revisionKey(repo("app"), image.digest as Digest);
  const record = JSON.parse(new TextDecoder().decode((await driver.get(key))!));
  delete record.refs;
  await driver.put(key, JSON.stringify(record));
  await using reg = await memoryRegistry({ driver }); // fresh caches over the same objects
  const layer = image.layers[1].digest;
  const res = await reg.fetch(`/v2/app/blobs/${layer}`, del);
  assert.equal(res.status, 405);
  assert.deepEqual((await errorOf(res)).detail, { digest: layer, manifest: image.digest });
  const filled = JSON.parse(new TextDecoder().decode((await driver.get(key))!));
  assert.deepEqual(filled.refs, [image.config.digest, ...image.layers.map((l) => l.digest)]);
  assert.equal(filled.mediaType, record.mediaType);
  assert.equal(filled.size, record.size);
});

Deno.test("mount from a repository holding the blob links it: 201 with Location", async () => {
  await using reg = await memoryRegistry();
  const digest = await pushBlob(reg, "source", randomBytes(50));
  const res = await reg.fetch(`/v2/target/blobs/uploads/?mount=${digest}&from=source`, post);
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("location"), `/v2/target/blobs/${digest}`);
  assert.equal(res.headers.get("docker-content-digest"), digest);
  await res.body?.cancel();
  assert.equal(await status(reg, `/v2/target/blobs/${digest}`), 200);
});

Deno.test("a mounted blob can be used by a manifest of the target repository", async () => {
  await using reg = await memoryRegistry();
  const parts = await pushImageBlobs(reg, "source");
  for (const blob of [parts.config, ...parts.layers]) {
    assert.equal(
      await status(reg, `/v2/target/blobs/uploads/?mount=${blob.digest}&from=source`, post),
      201,
    );
  }
  const { bytes } = await ociManifest(parts);
  assert.equal((await putManifest(reg, "target", "v1", bytes)).status, 201);
});

Deno.test("mount from a repository that does not hold the blob opens a session instead (202)", async () => {
  await using reg = await memoryRegistry();
  const digest = await pushBlob(reg, "source", randomBytes(50));
  await pushBlob(reg, "empty", randomBytes(5));
  const res = await reg.fetch(`/v2/target/blobs/uploads/?mount=${digest}&from=empty`, post);
  assert.equal(res.status, 202);
  assert.match(res.headers.get("location") ?? "", /^\/v2\/target\/blobs\/uploads\/[0-9a-f-]{36}$/);
  await res.body?.cancel();
  assert.equal(await status(reg, `/v2/target/blobs/${digest}`), 404);
});

Deno.test("automatic mount on: a mount without `from` links the blob from any holder (201)", async () => {
  await using reg = await memoryRegistry({ config: { automaticMount: true } });
  const digest = await pushBlob(reg, "deep/nested/holder", randomBytes(40));
  const res = await reg.fetch(`/v2/target/blobs/uploads/?mount=${digest}`, post);
  assert.equal(res.status, 201);
  await res.body?.cancel();
  assert.equal(await status(reg, `/v2/target/blobs/${digest}`), 200);
});

Deno.test("automatic mount on: a blob no repository holds opens a session (202)", async () => {
  await using reg = await memoryRegistry({ config: { automaticMount: true } });
  const digest = await sha256Digest(randomBytes(40));
  assert.equal(await status(reg, `/v2/target/blobs/uploads/?mount=${digest}`, post), 202);
});

Deno.test("automatic mount on: a blob unlinked everywhere is not mounted from its leftover bytes", async () => {
  await using reg = await memoryRegistry({ config: { automaticMount: true } });
  const digest = await pushBlob(reg, "holder", randomBytes(40));
  assert.equal(await status(reg, `/v2/holder/blobs/${digest}`, del), 202);
  assert.equal(await status(reg, `/v2/target/blobs/uploads/?mount=${digest}`, post), 202);
});

Deno.test("automatic mount off: a mount without `from` opens a session (202) and links nothing", async () => {
  await using reg = await memoryRegistry({ config: { automaticMount: false } });
  const digest = await pushBlob(reg, "holder", randomBytes(40));
  const res = await reg.fetch(`/v2/target/blobs/uploads/?mount=${digest}`, post);
  assert.equal(res.status, 202);
  assert.ok(res.headers.get("docker-upload-uuid"));
  await res.body?.cancel();
  assert.equal(await status(reg, `/v2/target/blobs/${digest}`), 404);
});

Deno.test("automatic mount off: a mount with `from` still links (201)", async () => {
  await using reg = await memoryRegistry({ config: { automaticMount: false } });
  const digest = await pushBlob(reg, "holder", randomBytes(40));
  assert.equal(
    await status(reg, `/v2/target/blobs/uploads/?mount=${digest}&from=holder`, post),
    201,
  );
});

Deno.test("the mount service reports false when no repository holds the blob", async () => {
  await using reg = await memoryRegistry();
  const digest = (await sha256Digest(randomBytes(4))) as Digest;
  const { blobs } = reg.app.services;
  assert.equal(await blobs.mount(repo("target"), null, digest), false);
  assert.equal(await blobs.mount(repo("target"), repo("nowhere"), digest), false);
});

Deno.test("open gives the span the picker chooses from the size", async () => {
  await using reg = await memoryRegistry();
  const bytes = randomBytes(100);
  const digest = (await pushBlob(reg, "app", bytes)) as Digest;
  const sizes: number[] = [];
  const blob = await reg.app.services.blobs.open(repo("app"), digest, (size) => {
    sizes.push(size);
    return { start: 10, end: 19 };
  });
  assert.deepEqual(sizes, [100]);
  assert.equal(blob.size, 100);
  assert.deepEqual(blob.span, { start: 10, end: 19 });
  assert.deepEqual(
    new Uint8Array(await new Response(blob.stream).arrayBuffer()),
    bytes.slice(10, 20),
  );
});

Deno.test("with a one-step look-up (the scale-out mode's), a HEAD asks the blob store only for a blob without a recorded size", async () => {
  /** A blob store counting its size look-ups. */
  class CountingBlobs extends DriverBlobStore {
    sizes = 0;
    override size(digest: Digest): Promise<number | null> {
      this.sizes++;
      return super.size(digest);
    }
  }
  /** Metadata whose two-step path must not be taken. */
  class NoTwoStep extends LocalMetadataStore {
    override hasLayer(): Promise<boolean> {
      return Promise.reject(new Error("hasLayer asked: two steps"));
    }
  }
  const blobs = new CountingBlobs(new MemoryDriver());
  const bytes = randomBytes(10);
  const digest = await sha256Digest(bytes) as Digest;
  await blobs.write(digest, bytes);
  blobs.sizes = 0;
  const recorded = new Map<string, { size: number | null }>();
  const service = new BlobService({
    blobs,
    meta: new NoTwoStep(new MemoryDriver()),
    locks: new KeyedMutex(),
    linkedSize: (name, d) => Promise.resolve(recorded.get(`${name}@${d}`) ?? null),
  });
  recorded.set(`app@${digest}`, { size: 10 });
  assert.equal(await service.size(repo("app"), digest), 10);
  assert.equal(blobs.sizes, 0, "a recorded size asked the blob store");
  recorded.set(`app@${digest}`, { size: null }); // linked, stored before sizes were recorded
  assert.equal(await service.size(repo("app"), digest), 10);
  assert.equal(blobs.sizes, 1);
  await assert.rejects(
    service.size(repo("other"), digest),
    (e) => e instanceof RegistryError && e.code === "BLOB_UNKNOWN",
  );
  assert.equal(blobs.sizes, 1, "an unlinked blob asked the blob store");
});
