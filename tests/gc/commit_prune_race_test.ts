/**
 * A blob commit racing a sweep that empties (and so prunes) the commit's target folder
 * `blobs/sha256/<xx>`: the sweep deletes another blob of the same two-hex prefix (it holds that
 * blob's lock, not the committed one's), and the filesystem driver removes the emptied folder.
 * The interleaving of tests/e2e/gc_crash_test.ts's rare 500 is forced here: a whole collection
 * runs between the commit's `ensureDir` seeing the folder (its lstat) and canonicalising it
 * (its realPath). The client's monolithic POST must get its 201 all the same.
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import type { GcReport } from "../../src/gc/collector.ts";
import { ociManifest, pushImageBlobs, putManifest } from "../helpers/manifests.ts";
import { pushBlob, randomBytes, sha256Digest, tempRegistry } from "../helpers/registry.ts";

const hexOf = (digest: string) => digest.slice("sha256:".length);

Deno.test("a monolithic blob POST whose target folder a sweep prunes meanwhile gets 201", async () => {
  await using reg = await tempRegistry({
    config: { gc: { ...DEFAULTS.gc, intervalMs: 0, graceMs: 0, retention: [] } },
  });
  const root = await Deno.realPath(reg.dataDir);

  // A tagged image keeps a few prefixes (so blobs/sha256 itself is never emptied).
  const parts = await pushImageBlobs(reg, "keep/app");
  const image = await ociManifest(parts);
  const put = await putManifest(reg, "keep/app", "v1", image.bytes);
  await put.body?.cancel();
  assert.equal(put.status, 201);
  const kept = new Set(
    [parts.config.digest, ...parts.layers.map((l) => l.digest), image.digest]
      .map((d) => hexOf(d).slice(0, 2)),
  );

  // NEW: the blob the client commits, in a prefix no kept blob uses.
  let bytes = randomBytes(500);
  while (kept.has(hexOf(await sha256Digest(bytes)).slice(0, 2))) bytes = randomBytes(500);
  const digest = await sha256Digest(bytes);
  const prefix = hexOf(digest).slice(0, 2);
  // OTHER: garbage of the same prefix, alone in that folder (pushed, then left unneeded).
  let other: Uint8Array<ArrayBuffer>;
  for (let i = 0;; i++) {
    other = new TextEncoder().encode(`other-${i}`);
    if (hexOf(await sha256Digest(other)).slice(0, 2) === prefix) break;
  }
  const otherDigest = await pushBlob(reg, "junk/app", other);
  const folder = `${root}/blobs/sha256/${prefix}`;
  assert.deepEqual([...Deno.readDirSync(folder)].map((e) => e.name), [hexOf(otherDigest)]);

  // ensureDir's lstat of the folder (in FsDriver.move): a collection runs to its end right
  // after it, before ensureDir's realPath.
  const lstat = Deno.lstat;
  let armed = true;
  const ran: { report: GcReport | null } = { report: null };
  Deno.lstat = async (path: string | URL) => {
    const byEnsureDir = new Error().stack?.includes("ensureDir") ?? false;
    const info = await lstat(path);
    if (armed && byEnsureDir && String(path) === folder) {
      armed = false;
      ran.report = await reg.app.services.gc.run().report;
    }
    return info;
  };
  let response: Response;
  try {
    response = await reg.fetch(`/v2/new/app/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: bytes,
    });
  } finally {
    Deno.lstat = lstat;
  }
  const text = await response.text();
  assert.equal(
    response.status,
    201,
    `POST gave ${response.status}: ${text}\n${reg.logs.join("\n")}`,
  );
  const report = ran.report;
  assert.ok(report !== null, "the collection ran inside the commit");
  assert.equal(report.error, undefined);
  assert.deepEqual(report.blobs.map((b) => b.digest), [otherDigest], "the sweep took OTHER");
  const got = await reg.fetch(`/v2/new/app/blobs/${digest}`);
  assert.equal(got.status, 200);
  assert.equal(await sha256Digest(new Uint8Array(await got.arrayBuffer())), digest);
});
