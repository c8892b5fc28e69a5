/**
 * The manifest service over `memoryRegistry()`: what a PUT records (media type, size,
 * references, subject), the references a PUT must find in the repository (400
 * MANIFEST_BLOB_UNKNOWN otherwise, storing nothing), and the consistency rules of DELETE: a
 * manifest a stored index lists is refused (409 DENIED, detail {digest, index}) until the
 * index is gone, also when the index's record predates stored references; a DELETE by digest
 * removes every tag pointing at the manifest and its referrers entry; a DELETE by tag removes
 * only the tag.
 */

import assert from "node:assert/strict";
import { jsonBytes, ociManifest } from "../helpers/manifests.ts";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";
import { memoryRegistry, pushBlob, randomBytes } from "../helpers/registry.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { revisionKey } from "../../src/storage/keys.ts";
import { LocalMetadataStore } from "../../src/storage/metadata/local.ts";
import type { Digest, RepositoryName, Tag } from "../../src/types/oci.ts";
import {
  errorOf,
  type PushedImage,
  pushImage,
  pushImageBlobs,
  pushIndex,
  putManifest,
  status,
} from "./fixtures.ts";

const repo = (value: string) => value as RepositoryName;
const digestOf = (value: string) => value as Digest;

Deno.test("a PUT records media type, size and the config and layers as references", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "org/app", { layers: 2 });
  const record = await new LocalMetadataStore(reg.driver).getRevision(
    repo("org/app"),
    digestOf(image.digest),
  );
  assert.deepEqual(record, {
    mediaType: OCI_MANIFEST,
    size: image.bytes.length,
    refs: [image.config.digest, ...image.layers.map((l) => l.digest)],
  });
});

Deno.test("a PUT of an index records its children as references", async () => {
  await using reg = await memoryRegistry();
  const a = await pushImage(reg, "app");
  const b = await pushImage(reg, "app");
  const index = await pushIndex(reg, "app", [a, b]);
  const record = await new LocalMetadataStore(reg.driver).getRevision(
    repo("app"),
    digestOf(index.digest),
  );
  assert.deepEqual(record, {
    mediaType: OCI_INDEX,
    size: index.bytes.length,
    refs: [a.digest, b.digest],
  });
});

Deno.test("a PUT with a subject records it and answers OCI-Subject", async () => {
  await using reg = await memoryRegistry();
  const subject = await pushImage(reg, "app");
  const parts = await pushImageBlobs(reg, "app");
  const artifact = await ociManifest(parts, {
    artifactType: "application/vnd.example.sig",
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
  });
  const put = await putManifest(reg, "app", artifact.digest, artifact.bytes);
  assert.equal(put.status, 201);
  assert.equal(put.headers.get("oci-subject"), subject.digest);
  await put.body?.cancel();
  const record = await new LocalMetadataStore(reg.driver).getRevision(
    repo("app"),
    digestOf(artifact.digest),
  );
  assert.equal(record?.subject, subject.digest);
});

Deno.test("a PUT naming a layer that is not in the repository is 400 MANIFEST_BLOB_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const missing = {
    mediaType: parts.layers[0].mediaType,
    digest: `sha256:${"1".repeat(64)}`,
    size: 3,
  };
  const { bytes } = await ociManifest({ config: parts.config, layers: [...parts.layers, missing] });
  const put = await putManifest(reg, "app", "latest", bytes);
  assert.equal(put.status, 400);
  const error = await errorOf(put);
  assert.equal(error.code, "MANIFEST_BLOB_UNKNOWN");
  assert.deepEqual(error.detail, { digest: missing.digest });
  assert.equal(await status(reg, "/v2/app/manifests/latest"), 404, "nothing stored");
});

Deno.test("a PUT naming a missing config is 400 MANIFEST_BLOB_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const config = { ...parts.config, digest: `sha256:${"2".repeat(64)}` };
  const { bytes } = await ociManifest({ config, layers: parts.layers });
  const put = await putManifest(reg, "app", "latest", bytes);
  assert.equal(put.status, 400);
  const error = await errorOf(put);
  assert.equal(error.code, "MANIFEST_BLOB_UNKNOWN");
  assert.deepEqual(error.detail, { digest: config.digest });
});

Deno.test("a PUT naming a blob linked only in another repository is 400 MANIFEST_BLOB_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  const parts = await pushImageBlobs(reg, "elsewhere");
  const { bytes } = await ociManifest(parts);
  const put = await putManifest(reg, "app", "latest", bytes);
  assert.equal(put.status, 400);
  assert.equal((await errorOf(put)).code, "MANIFEST_BLOB_UNKNOWN");
  assert.deepEqual(await reg.app.services.listings.catalog({ n: null, last: null }), {
    items: ["elsewhere"],
    next: null,
  }, "the failed PUT made no repository");
});

Deno.test("a PUT of an index naming a missing child is 400 MANIFEST_BLOB_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  const child = await pushImage(reg, "app");
  const ghost = `sha256:${"3".repeat(64)}`;
  const index = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: child.digest, size: child.bytes.length },
      { mediaType: OCI_MANIFEST, digest: ghost, size: 10 },
    ],
  });
  const put = await putManifest(reg, "app", "multi", index.bytes, OCI_INDEX);
  assert.equal(put.status, 400);
  const error = await errorOf(put);
  assert.equal(error.code, "MANIFEST_BLOB_UNKNOWN");
  assert.deepEqual(error.detail, { digest: ghost });
});

Deno.test("a PUT of an index whose child is stored only in another repository is 400", async () => {
  await using reg = await memoryRegistry();
  const child = await pushImage(reg, "elsewhere");
  const index = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ mediaType: OCI_MANIFEST, digest: child.digest, size: child.bytes.length }],
  });
  const put = await putManifest(reg, "app", "multi", index.bytes, OCI_INDEX);
  assert.equal(put.status, 400);
  assert.equal((await errorOf(put)).code, "MANIFEST_BLOB_UNKNOWN");
});

Deno.test("a foreign layer with URLs need not be in the repository", async () => {
  await using reg = await memoryRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const foreign = {
    mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    digest: `sha256:${"4".repeat(64)}`,
    size: 1000,
    urls: ["https://example.com/layer.tar.gz"],
  };
  const { bytes } = await jsonBytes({
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST,
    config: parts.config,
    layers: [...parts.layers, foreign],
  });
  const put = await putManifest(reg, "app", "win", bytes, DOCKER_MANIFEST);
  assert.equal(put.status, 201);
  await put.body?.cancel();
});

Deno.test("a PUT by digest whose body has another digest is 400 DIGEST_INVALID", async () => {
  await using reg = await memoryRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const { bytes } = await ociManifest(parts);
  const wrong = `sha256:${"5".repeat(64)}`;
  const put = await putManifest(reg, "app", wrong, bytes);
  assert.equal(put.status, 400);
  const error = await errorOf(put);
  assert.equal(error.code, "DIGEST_INVALID");
  assert.equal((error.detail as { expected: string }).expected, wrong);
});

Deno.test("a DELETE of a manifest a stored index lists is 409 DENIED naming the index", async () => {
  await using reg = await memoryRegistry();
  const child = await pushImage(reg, "app");
  const other = await pushImage(reg, "app");
  const index = await pushIndex(reg, "app", [other, child], "multi");
  const denied = await reg.fetch(`/v2/app/manifests/${child.digest}`, { method: "DELETE" });
  assert.equal(denied.status, 409);
  const error = await errorOf(denied);
  assert.equal(error.code, "DENIED");
  assert.deepEqual(error.detail, { digest: child.digest, index: index.digest });
  assert.equal(await status(reg, `/v2/app/manifests/${child.digest}`), 200, "still stored");
});

Deno.test("a manifest listed by an index can be deleted once the index is deleted", async () => {
  await using reg = await memoryRegistry();
  const child = await pushImage(reg, "app");
  const index = await pushIndex(reg, "app", [child], "multi");
  const del = (ref: string) => status(reg, `/v2/app/manifests/${ref}`, { method: "DELETE" });
  assert.equal(await del(child.digest), 409);
  assert.equal(await del(index.digest), 202);
  assert.equal(await del(child.digest), 202);
  assert.equal(await status(reg, `/v2/app/manifests/${child.digest}`), 404);
  assert.equal(await status(reg, "/v2/app/manifests/multi"), 404);
});

Deno.test("deleting only the index's tag still leaves the index blocking its child", async () => {
  await using reg = await memoryRegistry();
  const child = await pushImage(reg, "app");
  await pushIndex(reg, "app", [child], "multi");
  assert.equal(await status(reg, "/v2/app/manifests/multi", { method: "DELETE" }), 202);
  assert.equal(await status(reg, `/v2/app/manifests/${child.digest}`, { method: "DELETE" }), 409);
});

Deno.test("a Docker manifest list blocks the DELETE of its children too", async () => {
  await using reg = await memoryRegistry();
  const child = await pushImage(reg, "app");
  const list = await jsonBytes({
    schemaVersion: 2,
    mediaType: DOCKER_LIST,
    manifests: [{ mediaType: DOCKER_MANIFEST, digest: child.digest, size: child.bytes.length }],
  });
  const put = await putManifest(reg, "app", list.digest, list.bytes, DOCKER_LIST);
  assert.equal(put.status, 201);
  await put.body?.cancel();
  const denied = await reg.fetch(`/v2/app/manifests/${child.digest}`, { method: "DELETE" });
  assert.equal(denied.status, 409);
  assert.deepEqual((await errorOf(denied)).detail, { digest: child.digest, index: list.digest });
});

Deno.test("an index in another repository does not block a DELETE", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app");
  // The same manifest, with the same blobs, stored in a second repository under an index.
  for (const blob of [image.config, ...image.layers]) {
    const mount = `/v2/other/blobs/uploads/?mount=${blob.digest}&from=app`;
    assert.equal(await status(reg, mount, { method: "POST" }), 201);
  }
  (await putManifest(reg, "other", image.digest, image.bytes)).body?.cancel();
  await pushIndex(reg, "other", [image]);
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`, { method: "DELETE" }), 202);
  assert.equal(await status(reg, `/v2/other/manifests/${image.digest}`), 200);
  assert.equal(await status(reg, `/v2/other/manifests/${image.digest}`, { method: "DELETE" }), 409);
});

Deno.test("an index stored without references (older data root) still blocks, and gets them filled in", async () => {
  const driver = new MemoryDriver();
  let index: { digest: string };
  let child: PushedImage;
  {
    await using first = await memoryRegistry({ driver });
    child = await pushImage(first, "app");
    index = await pushIndex(first, "app", [child], "multi");
  }
  const key = revisionKey(repo("app"), digestOf(index.digest));
  const record = JSON.parse(new TextDecoder().decode((await driver.get(key))!));
  delete record.refs;
  await driver.put(key, JSON.stringify(record));
  await using reg = await memoryRegistry({ driver }); // fresh caches
  const denied = await reg.fetch(`/v2/app/manifests/${child.digest}`, { method: "DELETE" });
  assert.equal(denied.status, 409);
  assert.deepEqual((await errorOf(denied)).detail, { digest: child.digest, index: index.digest });
  const filled = JSON.parse(new TextDecoder().decode((await driver.get(key))!));
  assert.deepEqual(filled.refs, [child.digest]);
});

Deno.test("a DELETE by digest removes every tag pointing at the manifest, and only those", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  const other = await pushImage(reg, "app", { reference: "v2" });
  for (const tag of ["latest", "stable"]) {
    (await putManifest(reg, "app", tag, image.bytes)).body?.cancel();
  }
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`, { method: "DELETE" }), 202);
  for (const tag of ["v1", "latest", "stable", image.digest]) {
    assert.equal(await status(reg, `/v2/app/manifests/${tag}`), 404, tag);
  }
  const list = await reg.fetch("/v2/app/tags/list");
  assert.deepEqual((await list.json()).tags, ["v2"]);
  assert.equal(await status(reg, `/v2/app/manifests/${other.digest}`), 200);
});

Deno.test("a DELETE by digest removes the manifest's referrers entry", async () => {
  await using reg = await memoryRegistry();
  const subject = await pushImage(reg, "app");
  const parts = await pushImageBlobs(reg, "app");
  const descriptor = {
    mediaType: OCI_MANIFEST,
    digest: subject.digest,
    size: subject.bytes.length,
  };
  const kept = await ociManifest(parts, { artifactType: "application/kept", subject: descriptor });
  const gone = await ociManifest(parts, { artifactType: "application/gone", subject: descriptor });
  for (const artifact of [kept, gone]) {
    (await putManifest(reg, "app", artifact.digest, artifact.bytes)).body?.cancel();
  }
  const before = await (await reg.fetch(`/v2/app/referrers/${subject.digest}`)).json();
  assert.equal(before.manifests.length, 2);
  assert.equal(await status(reg, `/v2/app/manifests/${gone.digest}`, { method: "DELETE" }), 202);
  const after = await (await reg.fetch(`/v2/app/referrers/${subject.digest}`)).json();
  assert.deepEqual(after.manifests.map((m: { digest: string }) => m.digest), [kept.digest]);
});

Deno.test("a DELETE by tag removes only the tag; the manifest stays by digest and other tags", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  (await putManifest(reg, "app", "latest", image.bytes)).body?.cancel();
  assert.equal(await status(reg, "/v2/app/manifests/v1", { method: "DELETE" }), 202);
  assert.equal(await status(reg, "/v2/app/manifests/v1"), 404);
  assert.equal(await status(reg, "/v2/app/manifests/latest"), 200);
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`), 200);
});

Deno.test("a DELETE in an unknown repository is 404 NAME_UNKNOWN; of an unknown manifest 404 MANIFEST_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  await pushBlob(reg, "app", randomBytes(10));
  const unknownDigest = `sha256:${"6".repeat(64)}`;
  const noRepo = await reg.fetch(`/v2/nowhere/manifests/${unknownDigest}`, { method: "DELETE" });
  assert.equal(noRepo.status, 404);
  assert.equal((await errorOf(noRepo)).code, "NAME_UNKNOWN");
  for (const ref of [unknownDigest, "no-such-tag"]) {
    const res = await reg.fetch(`/v2/app/manifests/${ref}`, { method: "DELETE" });
    assert.equal(res.status, 404, ref);
    assert.equal((await errorOf(res)).code, "MANIFEST_UNKNOWN");
  }
});

Deno.test("a repository keeps existing after its last manifest is deleted while blobs stay linked", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`, { method: "DELETE" }), 202);
  const tags = await reg.fetch("/v2/app/tags/list");
  assert.equal(tags.status, 200);
  assert.deepEqual((await tags.json()).tags, []);
  const catalog = await reg.app.services.listings.catalog({ n: null, last: null });
  assert.deepEqual(catalog.items, ["app"]);
});

Deno.test("resolve and get by tag or digest give the stored record and exact bytes", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app", { reference: "v1" });
  const { manifests } = reg.app.services;
  const byTag = await manifests.get(repo("app"), { kind: "tag", tag: "v1" as Tag });
  assert.equal(byTag.digest, image.digest);
  assert.equal(byTag.mediaType, OCI_MANIFEST);
  assert.deepEqual(byTag.bytes, image.bytes);
  const byDigest = await manifests.resolve(repo("app"), {
    kind: "digest",
    digest: digestOf(image.digest),
  });
  assert.equal(byDigest.size, image.bytes.length);
});
