/**
 * Storage usage (`src/maintenance/usage.ts`, `GET /admin/usage`): exact figures on a store
 * whose every blob size is known.
 */

import assert from "node:assert/strict";
import { parseRepositoryName } from "../../src/http/params.ts";
import { measureUsage } from "../../src/maintenance/usage.ts";
import { memoryRegistry, pushBlob, randomBytes } from "../helpers/registry.ts";
import { buildStore } from "./fixtures.ts";

const ADMIN = { adminAllowRemote: true };

Deno.test("usage: bytes alone and shared per repository, unlinked and upload bytes", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  const built = await buildStore(reg);
  // A blob no repository links any more: pushed into `scratch`, then unlinked.
  const orphan = randomBytes(777);
  const orphanDigest = await pushBlob(reg, "scratch", orphan);
  const unlink = await reg.fetch(`/v2/scratch/blobs/${orphanDigest}`, { method: "DELETE" });
  await unlink.body?.cancel();
  assert.equal(unlink.status, 202);
  // An upload session with 10 bytes received.
  const start = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
  await start.body?.cancel();
  const patch = await reg.fetch(start.headers.get("location")!, {
    method: "PATCH",
    body: randomBytes(10),
  });
  await patch.body?.cancel();
  assert.equal(patch.status, 202);

  const { app, other, sub, shared } = built;
  const size = (m: { bytes: Uint8Array }) => m.bytes.length;
  const appAlone = app.image1.config.size + app.image1.layers[0].size + app.image2.config.size +
    app.image2.layers[0].size + app.emptyConfig.size +
    size(app.image1) + size(app.image2) + size(app.index) + size(app.referrer);
  const otherAlone = other.config.size + size(other);
  const subAlone = sub.config.size + sub.layers[0].size + size(sub);

  const response = await reg.fetch("/admin/usage");
  assert.equal(response.status, 200);
  const report = await response.json();
  assert.deepEqual(report, {
    store: {
      repositories: 3,
      blobs: 16, // app: 6 linked + 4 manifests; other: config + manifest; sub: 3; the orphan
      blobBytes: appAlone + otherAlone + subAlone + shared.size + orphan.length,
      unlinkedBlobs: 1,
      unlinkedBytes: orphan.length,
      uploads: 1,
      uploadBytes: 10,
    },
    repositories: [
      {
        name: "app",
        manifests: 4,
        tags: 2,
        blobs: 6,
        exclusiveBytes: appAlone,
        sharedBytes: shared.size,
        missingBlobs: 0,
      },
      {
        name: "app/sub",
        manifests: 1,
        tags: 1,
        blobs: 2,
        exclusiveBytes: subAlone,
        sharedBytes: 0,
        missingBlobs: 0,
      },
      {
        name: "other",
        manifests: 1,
        tags: 1,
        blobs: 2,
        exclusiveBytes: otherAlone,
        sharedBytes: shared.size,
        missingBlobs: 0,
      },
    ],
  });

  // One repository: the same figures, sharing still counted against the others.
  const one = await (await reg.fetch("/admin/usage?repository=other")).json();
  assert.deepEqual(one.repositories, [report.repositories[2]]);
  assert.deepEqual(one.store, report.store);

  // After `app` is deleted its bytes are unlinked, and the shared layer is `other`'s alone.
  const deleted = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
  await deleted.body?.cancel();
  const after = await measureUsage(reg.driver);
  assert.equal(after.store.unlinkedBytes, orphan.length + appAlone);
  assert.deepEqual(after.repositories.map((r) => [r.name, r.exclusiveBytes, r.sharedBytes]), [
    ["app/sub", subAlone, 0],
    ["other", otherAlone + shared.size, 0],
  ]);
});

Deno.test("usage of an unknown repository is 404 NAME_UNKNOWN; a bad name 400", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  await buildStore(reg);
  const unknown = await reg.fetch("/admin/usage?repository=nope");
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).errors[0].code, "NAME_UNKNOWN");
  const bad = await reg.fetch("/admin/usage?repository=NOPE");
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
});

Deno.test("usage counts a link whose blob is missing apart from the bytes", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  const built = await buildStore(reg);
  const hex = built.other.config.digest.slice("sha256:".length);
  assert.ok(await reg.driver.delete(`blobs/sha256/${hex.slice(0, 2)}/${hex}`));
  const report = await measureUsage(reg.driver, { repository: parseRepositoryName("other") });
  assert.equal(report.repositories[0].missingBlobs, 1);
  assert.equal(report.repositories[0].exclusiveBytes, built.other.bytes.length);
});
