/**
 * Garbage collection's decisions over `memoryRegistry()` with a clock the test moves: what is
 * a root (tags, untagged manifests the policy keeps, children of kept indexes, referrers of
 * kept manifests), what is swept (untagged manifests the policy drops, links no kept manifest
 * needs, bytes nothing references, orphan referrers only when configured), the grace window,
 * retention rules, and the dry run.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import { DEFAULTS } from "../../src/config/mod.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { blobKey, layerKey } from "../../src/storage/keys.ts";
import type { Digest, RepositoryName } from "../../src/types/oci.ts";
import { memoryRegistry, pushBlob, randomBytes } from "../helpers/registry.ts";
import { pushImage, pushIndex, putManifest, status } from "../services/fixtures.ts";
import { clockedRegistry, HOUR, rule } from "./helpers.ts";

const DROP_UNTAGGED = [rule({ untaggedAfterMs: 0 })];

Deno.test("a tagged multi-arch index keeps its untagged children and their blobs", async () => {
  await using reg = await clockedRegistry({ retention: DROP_UNTAGGED });
  const amd = await pushImage(reg, "org/app");
  const arm = await pushImage(reg, "org/app");
  const index = await pushIndex(reg, "org/app", [amd, arm], "v1");
  const loose = await pushImage(reg, "org/app"); // untagged, listed by nothing
  reg.advance(2 * HOUR);
  const report = await reg.collect();
  assert.equal(report.error, undefined);
  for (const child of [amd, arm]) {
    assert.ok(await reg.hasRevision("org/app", child.digest));
    assert.ok(await reg.hasBlob(child.digest));
    for (const blob of [child.config, ...child.layers]) {
      assert.ok(await reg.hasLink("org/app", blob.digest));
      assert.ok(await reg.hasBlob(blob.digest));
    }
  }
  assert.ok(await reg.hasRevision("org/app", index.digest));
  assert.equal(await status(reg, `/v2/org/app/manifests/${amd.digest}`), 200);
  // The loose one went: revision, links, bytes.
  assert.equal(await reg.hasRevision("org/app", loose.digest), false);
  assert.equal(await reg.hasBlob(loose.digest), false);
  assert.equal(await reg.hasLink("org/app", loose.layers[0].digest), false);
  assert.equal(await reg.hasBlob(loose.layers[0].digest), false);
  assert.deepEqual(report.manifests, [{ repository: "org/app", digest: loose.digest }]);
  assert.equal(report.counts.links, 2);
  assert.equal(report.counts.blobs, 3); // config, layer, manifest bytes
});

Deno.test("referrers of a kept manifest stay; orphans stay unless configured", async () => {
  for (const deleteOrphanReferrers of [false, true]) {
    await using reg = await clockedRegistry({
      retention: DROP_UNTAGGED,
      gc: { deleteOrphanReferrers },
    });
    const subject = await pushImage(reg, "org/app", { reference: "v1" });
    const descriptor = {
      mediaType: OCI_MANIFEST,
      digest: subject.digest,
      size: subject.bytes.length,
    };
    const signature = await pushImage(reg, "org/app", {
      extra: { subject: descriptor, artifactType: "application/vnd.example.sig" },
    });
    const gone = await pushImage(reg, "org/app");
    const orphan = await pushImage(reg, "org/app", {
      extra: {
        subject: { mediaType: OCI_MANIFEST, digest: gone.digest, size: gone.bytes.length },
        artifactType: "application/vnd.example.sig",
      },
    });
    assert.equal(
      await status(reg, `/v2/org/app/manifests/${gone.digest}`, { method: "DELETE" }),
      202,
    );
    reg.advance(2 * HOUR);
    const report = await reg.collect();
    assert.ok(await reg.hasRevision("org/app", signature.digest), "referrer of a kept subject");
    const referrers = await (await reg.fetch(`/v2/org/app/referrers/${subject.digest}`)).json();
    assert.equal(referrers.manifests.length, 1);
    assert.equal(await reg.hasRevision("org/app", orphan.digest), !deleteOrphanReferrers);
    assert.equal(await reg.hasBlob(orphan.digest), !deleteOrphanReferrers);
    assert.deepEqual(
      report.manifests.map((m) => m.digest),
      deleteOrphanReferrers ? [orphan.digest] : [],
    );
  }
});

Deno.test("a blob in two repositories survives its deletion from one", async () => {
  await using reg = await clockedRegistry();
  const a = await pushImage(reg, "team/a");
  // The same layer and config in team/b (mounted), under its own manifest.
  for (const blob of [a.config, ...a.layers]) {
    const mount = await reg.fetch(
      `/v2/team/b/blobs/uploads/?mount=${blob.digest}&from=team/a`,
      { method: "POST" },
    );
    await mount.body?.cancel();
    assert.equal(mount.status, 201);
  }
  const put = await putManifest(reg, "team/b", "v1", a.bytes);
  await put.body?.cancel();
  assert.equal(put.status, 201);
  assert.equal(await status(reg, `/v2/team/a/manifests/${a.digest}`, { method: "DELETE" }), 202);
  reg.advance(2 * HOUR);
  const report = await reg.collect();
  for (const blob of [a.config, ...a.layers]) {
    assert.equal(await reg.hasLink("team/a", blob.digest), false, "no kept manifest needs it");
    assert.ok(await reg.hasLink("team/b", blob.digest));
    assert.ok(await reg.hasBlob(blob.digest));
    assert.equal(await status(reg, `/v2/team/b/blobs/${blob.digest}`), 200);
  }
  // The manifest's bytes stay too: team/b holds that revision.
  assert.ok(await reg.hasBlob(a.digest));
  assert.equal(report.counts.blobs, 0);
  assert.equal(report.counts.links, 2);
});

Deno.test("a manifest named only by digest is kept or dropped as the policy says", async () => {
  // No rule: untagged manifests are kept.
  {
    await using reg = await clockedRegistry();
    const image = await pushImage(reg, "org/app");
    reg.advance(48 * HOUR);
    await reg.collect();
    assert.ok(await reg.hasRevision("org/app", image.digest));
    assert.ok(await reg.hasBlob(image.layers[0].digest));
  }
  // untaggedafter 24h, for org/** only.
  {
    await using reg = await clockedRegistry({
      retention: [rule({ repositories: ["org/**"], untaggedAfterMs: 24 * HOUR })],
    });
    const image = await pushImage(reg, "org/app");
    const other = await pushImage(reg, "other/app");
    reg.advance(23 * HOUR);
    await reg.collect();
    assert.ok(await reg.hasRevision("org/app", image.digest), "not yet 24 h old");
    reg.advance(2 * HOUR);
    const report = await reg.collect();
    assert.equal(await reg.hasRevision("org/app", image.digest), false);
    assert.equal(await reg.hasBlob(image.digest), false);
    assert.equal(await reg.hasBlob(image.layers[0].digest), false);
    assert.ok(await reg.hasRevision("other/app", other.digest), "no rule matches other/app");
    assert.deepEqual(report.manifests, [{ repository: "org/app", digest: image.digest }]);
  }
});

Deno.test("a blob deleted from every repository is freed after the grace window, not before", async () => {
  await using reg = await clockedRegistry({ gc: { graceMs: HOUR } });
  const bytes = randomBytes(3000);
  const digest = await pushBlob(reg, "org/a", bytes);
  await pushBlob(reg, "org/b", bytes);
  for (const name of ["org/a", "org/b"]) {
    assert.equal(await status(reg, `/v2/${name}/blobs/${digest}`, { method: "DELETE" }), 202);
  }
  reg.advance(50 * 60 * 1000);
  let report = await reg.collect();
  assert.ok(await reg.hasBlob(digest), "pushed 50 minutes ago");
  assert.equal(report.counts.blobs, 0);
  reg.advance(20 * 60 * 1000);
  report = await reg.collect();
  assert.equal(await reg.hasBlob(digest), false);
  assert.deepEqual(report.blobs, [{ digest, size: 3000 }]);
  assert.equal(report.bytesFreed, 3000);
});

Deno.test("a link no manifest needs goes after the grace window; a HEAD restarts it", async () => {
  await using reg = await clockedRegistry({ gc: { graceMs: HOUR } });
  const digest = await pushBlob(reg, "org/a", randomBytes(500));
  reg.advance(50 * 60 * 1000);
  assert.equal(await status(reg, `/v2/org/a/blobs/${digest}`, { method: "HEAD" }), 200);
  reg.advance(50 * 60 * 1000); // 100 min after the push, 50 after the HEAD
  await reg.collect();
  assert.ok(await reg.hasLink("org/a", digest));
  assert.ok(await reg.hasBlob(digest));
  reg.advance(20 * 60 * 1000);
  await reg.collect();
  assert.equal(await reg.hasLink("org/a", digest), false);
  assert.equal(await reg.hasBlob(digest), false);
});

Deno.test("a dry run deletes nothing and reports what would go and the bytes", async () => {
  await using reg = await clockedRegistry({ retention: DROP_UNTAGGED });
  await pushImage(reg, "org/app", { reference: "v1" });
  const loose = await pushImage(reg, "org/app");
  const orphanBytes = randomBytes(777);
  const orphan = await pushBlob(reg, "org/app", orphanBytes);
  reg.advance(2 * HOUR);
  const dry = await reg.collect(true);
  assert.equal(dry.dryRun, true);
  assert.ok(await reg.hasRevision("org/app", loose.digest));
  assert.ok(await reg.hasBlob(loose.digest));
  assert.ok(await reg.hasLink("org/app", orphan));
  assert.ok(await reg.hasBlob(orphan));
  const expected = loose.bytes.length + loose.config.size + loose.layers[0].size + 777;
  assert.equal(dry.bytesFreed, expected);
  assert.deepEqual(dry.counts, { tags: 0, manifests: 1, links: 3, blobs: 4, uploads: 0 });
  const real = await reg.collect();
  assert.equal(real.bytesFreed, expected);
  assert.deepEqual(
    new Set(real.blobs.map((b) => b.digest)),
    new Set(dry.blobs.map((b) => b.digest)),
  );
  assert.equal(await reg.hasBlob(orphan), false);
});

Deno.test("retention keeps the newest tags, matching tags and pulled tags; the rest go", async () => {
  await using reg = await clockedRegistry({
    retention: [rule({
      repositories: ["org/*"],
      keepTags: 2,
      keepTagPatterns: ["release-*"],
      keepPulledWithinMs: 24 * HOUR,
      untaggedAfterMs: 0,
    })],
  });
  const images: Record<string, string> = {};
  for (const tag of ["release-1", "old", "pulled", "mid", "new1", "new2"]) {
    images[tag] = (await pushImage(reg, "org/app", { reference: tag })).digest;
    reg.advance(10 * 60 * 1000);
  }
  reg.advance(2 * HOUR);
  assert.equal(await status(reg, "/v2/org/app/manifests/pulled"), 200);
  reg.advance(HOUR);
  const report = await reg.collect();
  assert.deepEqual(report.tags.map((t) => t.tag).sort(), ["mid", "old"]);
  for (const tag of ["release-1", "pulled", "new1", "new2"]) {
    assert.ok(await reg.hasTag("org/app", tag));
  }
  for (const tag of ["mid", "old"]) {
    assert.equal(await reg.hasTag("org/app", tag), false);
    assert.equal(await reg.hasRevision("org/app", images[tag]), false, "untagged, then dropped");
  }
  const list = await (await reg.fetch("/v2/org/app/tags/list")).json();
  assert.deepEqual(list.tags, ["new1", "new2", "pulled", "release-1"]);
});

Deno.test("nothing pushed within the grace window goes, whatever the rules say", async () => {
  await using reg = await clockedRegistry({
    gc: { graceMs: HOUR },
    retention: [rule({ keepTags: 0, untaggedAfterMs: 0 })],
  });
  const image = await pushImage(reg, "org/app", { reference: "v1" });
  reg.advance(30 * 60 * 1000);
  const report = await reg.collect();
  assert.deepEqual(report.counts, { tags: 0, manifests: 0, links: 0, blobs: 0, uploads: 0 });
  reg.advance(HOUR);
  await reg.collect();
  assert.equal(await reg.hasTag("org/app", "v1"), false);
  assert.equal(await reg.hasRevision("org/app", image.digest), false);
  assert.equal(await reg.hasBlob(image.layers[0].digest), false);
});

Deno.test("a touch written to the journal protects a blob across a restart", async () => {
  let offset = 0;
  const clock = () => Date.now() + offset;
  const driver = new MemoryDriver(clock);
  const options = {
    driver,
    now: () => new Date(clock()),
    config: { gc: { ...DEFAULTS.gc, intervalMs: 0, graceMs: HOUR } },
  };
  let digest: string;
  {
    await using reg = await memoryRegistry(options);
    digest = await pushBlob(reg, "org/a", randomBytes(200));
    offset += 50 * 60 * 1000;
    assert.equal(await status(reg, `/v2/org/a/blobs/${digest}`, { method: "HEAD" }), 200);
    await reg.app.quiesce(); // as at a clean stop: the journal is written
  }
  offset += 30 * 60 * 1000; // 80 min after the push, 30 after the HEAD
  await using reg = await memoryRegistry(options);
  await reg.app.services.gc.run().report;
  assert.ok(await driver.stat(layerKey("org/a" as RepositoryName, digest as Digest)));
  offset += 40 * 60 * 1000;
  const report = await reg.app.services.gc.run().report;
  assert.deepEqual(report.blobs.map((b) => b.digest), [digest]);
});

Deno.test("the bytes of a live upload at their blob's key are spared on a driver that stores them there (S3); once it ends they go", async () => {
  await using reg = await clockedRegistry({ gc: { graceMs: HOUR }, storesWhole: true });
  const bytes = randomBytes(5000);
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}` as Digest;
  const started = await reg.fetch("/v2/org/up/blobs/uploads/", { method: "POST" });
  await started.body?.cancel();
  const patched = await reg.fetch(started.headers.get("location")!, {
    method: "PATCH",
    headers: { "content-type": "application/octet-stream" },
    body: bytes,
  });
  await patched.body?.cancel();
  assert.equal(patched.status, 202);
  // What the S3 driver's sync does with a first PATCH: the bytes at their blob's key.
  await reg.driver.put(blobKey(digest), bytes);
  reg.advance(2 * HOUR); // idle past the grace window, not past the session's age
  let report = await reg.collect();
  assert.equal(report.error, undefined);
  assert.ok(await reg.hasBlob(digest), "held by the session");
  assert.equal(report.counts.blobs, 0);
  const cancelled = await reg.fetch(patched.headers.get("location")!, { method: "DELETE" });
  await cancelled.body?.cancel();
  assert.equal(cancelled.status, 204);
  report = await reg.collect();
  assert.equal(await reg.hasBlob(digest), false);
  assert.deepEqual(report.blobs, [{ digest, size: 5000 }]);
});
