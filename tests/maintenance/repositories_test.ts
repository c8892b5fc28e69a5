/**
 * Repository deletion (`src/maintenance/repositories.ts`) and its admin endpoint
 * `DELETE /admin/repositories/<name>`, over the memory driver (admin access from any client
 * is switched on here: the access rule has its own tests).
 */

import assert from "node:assert/strict";
import type { EventSpec } from "../../src/events/event.ts";
import type { EventSink } from "../../src/events/sink.ts";
import { memoryRegistry } from "../helpers/registry.ts";
import { buildStore, keysUnder } from "./fixtures.ts";

const ADMIN = { adminAllowRemote: true };

Deno.test("deleting a repository removes exactly its metadata and keeps every blob", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  const built = await buildStore(reg);
  const otherBefore = await keysUnder(reg.driver, "repositories/other");
  const subBefore = await keysUnder(reg.driver, "repositories/app/sub");
  const blobsBefore = await keysUnder(reg.driver, "blobs");

  const response = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
  assert.equal(response.status, 202);
  assert.deepEqual(await response.json(), {
    repository: "app",
    tags: 2, // v1, multi
    manifests: 4, // two images, the index, the referrer
    referrers: 1,
    layers: 6, // shared, layer 1, config 1, layer 2, config 2, the empty config
  });

  const appKeys = (await keysUnder(reg.driver, "repositories/app"))
    .filter((key) => !key.startsWith("repositories/app/sub/"));
  assert.deepEqual(appKeys, []);
  assert.deepEqual(await keysUnder(reg.driver, "repositories/other"), otherBefore);
  assert.deepEqual(await keysUnder(reg.driver, "repositories/app/sub"), subBefore);
  assert.deepEqual(await keysUnder(reg.driver, "blobs"), blobsBefore);

  // The shared layer is still linked in `other` and served there, not in `app`.
  const inOther = await reg.fetch(`/v2/other/blobs/${built.shared.digest}`, { method: "HEAD" });
  assert.equal(inOther.status, 200);
  const inApp = await reg.fetch(`/v2/app/blobs/${built.shared.digest}`, { method: "HEAD" });
  assert.equal(inApp.status, 404);
  const pull = await reg.fetch(`/v2/other/manifests/latest`);
  assert.equal(pull.status, 200);
  await pull.body?.cancel();
});

Deno.test("after a deletion the catalog omits the repository and its tags are unknown", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  const built = await buildStore(reg);
  // Fill the caches first: the deletion must update them, not only the store.
  const before = await (await reg.fetch("/v2/_catalog")).json();
  assert.deepEqual(before, { repositories: ["app", "app/sub", "other"] });
  assert.equal((await reg.fetch("/v2/app/tags/list")).status, 200);
  assert.equal((await reg.fetch(`/v2/app/manifests/v1`, { method: "HEAD" })).status, 200);

  const deleted = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
  await deleted.body?.cancel();
  assert.equal(deleted.status, 202);

  assert.deepEqual(await (await reg.fetch("/v2/_catalog")).json(), {
    repositories: ["app/sub", "other"],
  });
  const tags = await reg.fetch("/v2/app/tags/list");
  assert.equal(tags.status, 404);
  assert.equal(
    ((await tags.json()) as { errors: { code: string }[] }).errors[0].code,
    "NAME_UNKNOWN",
  );
  for (const ref of ["v1", "multi", built.app.image2.digest]) {
    const head = await reg.fetch(`/v2/app/manifests/${ref}`, { method: "HEAD" });
    assert.equal(head.status, 404, ref);
  }
  const referrers = await (await reg.fetch(`/v2/app/referrers/${built.app.image1.digest}`)).json();
  assert.deepEqual((referrers as { manifests: unknown[] }).manifests, []);
  // Nested and other repositories still answer.
  const sub = await reg.fetch("/v2/app/sub/tags/list");
  assert.deepEqual(await sub.json(), { name: "app/sub", tags: ["v1"] });

  // The name can be used again from scratch: nothing of the old repository comes back.
  const again = await reg.fetch(`/v2/app/manifests/fresh`, {
    method: "PUT",
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
    body: built.app.image1.bytes,
  });
  await again.body?.cancel();
  assert.equal(again.status, 400, "its blobs are no longer linked in app");
});

Deno.test("deleting an unknown repository answers 404 NAME_UNKNOWN; a bad name 400", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  await buildStore(reg);
  const unknown = await reg.fetch("/admin/repositories/nothing/here", { method: "DELETE" });
  assert.equal(unknown.status, 404);
  const body = (await unknown.json()) as { errors: { code: string }[] };
  assert.equal(body.errors[0].code, "NAME_UNKNOWN");
  const bad = await reg.fetch("/admin/repositories/Bad..Name", { method: "DELETE" });
  assert.equal(bad.status, 400);
  assert.equal(
    ((await bad.json()) as { errors: { code: string }[] }).errors[0].code,
    "NAME_INVALID",
  );
  const twice = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
  await twice.body?.cancel();
  const third = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
  await third.body?.cancel();
  assert.deepEqual([twice.status, third.status], [202, 404]);
  const get = await reg.fetch("/admin/repositories/app");
  await get.body?.cancel();
  assert.equal(get.status, 405);
});

Deno.test("read-only mode and disabled deletes refuse a repository deletion", async () => {
  for (const config of [{ readOnly: true }, { deleteEnabled: false }]) {
    const driver = (await memoryRegistry({ config: ADMIN })).driver;
    {
      await using writer = await memoryRegistry({ config: ADMIN, driver });
      await buildStore(writer);
    }
    await using reg = await memoryRegistry({ config: { ...ADMIN, ...config }, driver });
    const response = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
    assert.equal(response.status, 405, JSON.stringify(config));
    assert.equal(response.headers.get("allow"), "", "its only method is refused");
    await response.body?.cancel();
    assert.equal((await reg.fetch("/v2/app/tags/list")).status, 200);
  }
});

Deno.test("a deletion sends a delete event per manifest and per tag", async () => {
  const events: EventSpec[] = [];
  const sink: EventSink = {
    record: (batch) => {
      events.push(...batch);
      return Promise.resolve();
    },
    pulled: () => {},
  };
  await using reg = await memoryRegistry({
    config: ADMIN,
    eventSink: () => Promise.resolve(sink),
  });
  const built = await buildStore(reg);
  events.length = 0;
  const response = await reg.fetch("/admin/repositories/app", { method: "DELETE" });
  await response.body?.cancel();
  const manifests = events.filter((e) => e.kind === "manifest").map((e) => e.digest).sort();
  const expected = [built.app.image1, built.app.image2, built.app.index, built.app.referrer]
    .map((m) => m.digest).sort();
  assert.deepEqual(manifests, expected);
  assert.deepEqual(events.filter((e) => e.kind === "tag").map((e) => e.tag).sort(), [
    "multi",
    "v1",
  ]);
  assert.ok(events.every((e) => e.action === "delete" && e.repository === "app"));
});

Deno.test("the deletion runs under the repository lock: a concurrent push is before or after", async () => {
  await using reg = await memoryRegistry({ config: ADMIN });
  const built = await buildStore(reg);
  // A tag PUT of an existing manifest races the deletion. Either it ran first (and the
  // deletion took the tag along) or after (and fails: the manifest's blobs are unlinked).
  const [deleted, tagged] = await Promise.all([
    reg.fetch("/admin/repositories/app", { method: "DELETE" }),
    reg.fetch("/v2/app/manifests/race", {
      method: "PUT",
      headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
      body: built.app.image1.bytes,
    }),
  ]);
  const report = (await deleted.json()) as { tags: number };
  await tagged.body?.cancel();
  assert.equal(deleted.status, 202);
  if (tagged.status === 201) {
    assert.equal(report.tags, 3, "the tag was made first and deleted with the rest");
    assert.equal((await reg.fetch("/v2/app/tags/list")).status, 404);
  } else {
    assert.equal(tagged.status, 400);
    assert.equal(report.tags, 2);
  }
});
