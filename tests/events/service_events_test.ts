/**
 * Which events the services report for which operations (as Distribution sends them), over
 * the app on the memory driver with a recording sink: durable ones (push, mount, delete)
 * through `record`, pulls through `pulled`; failed operations report nothing.
 */

import * as assert from "node:assert/strict";
import { BLOB_MEDIA_TYPE, type EventSpec } from "../../src/events/event.ts";
import type { EventSink } from "../../src/events/sink.ts";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import { memoryRegistry, pushBlob, randomBytes } from "../helpers/registry.ts";
import { pushImage, status } from "../services/fixtures.ts";

/** A sink keeping what it is told: `durable` from `record`, `pulls` from `pulled`. */
class Recorder implements EventSink {
  durable: EventSpec[][] = [];
  pulls: EventSpec[] = [];
  record(events: readonly EventSpec[]): Promise<void> {
    this.durable.push([...events]);
    return Promise.resolve();
  }
  pulled(event: EventSpec): void {
    this.pulls.push(event);
  }
  take(): { durable: EventSpec[][]; pulls: EventSpec[] } {
    const out = { durable: this.durable, pulls: this.pulls };
    this.durable = [];
    this.pulls = [];
    return out;
  }
}

async function setup() {
  const recorder = new Recorder();
  const reg = await memoryRegistry({ eventSink: () => Promise.resolve(recorder) });
  return { reg, recorder };
}

Deno.test("blob push (monolithic and by session), HEAD and GET pulls, delete", async () => {
  const { reg, recorder } = await setup();
  await using _ = reg;
  const bytes = randomBytes(100);
  const digest = await pushBlob(reg, "app", bytes);
  const blob = { kind: "blob", repository: "app", digest } as const;
  const described = { ...blob, mediaType: BLOB_MEDIA_TYPE, size: 100 };
  const whole = await reg.fetch(`/v2/app/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: bytes,
  });
  assert.equal(whole.status, 201);
  assert.deepEqual(recorder.take(), {
    durable: [[{ action: "push", ...described }], [{ action: "push", ...described }]],
    pulls: [],
  });
  assert.equal(await status(reg, `/v2/app/blobs/${digest}`, { method: "HEAD" }), 200);
  assert.equal(await status(reg, `/v2/app/blobs/${digest}`), 200);
  assert.equal(
    await status(reg, `/v2/app/blobs/${digest}`, { headers: { range: "bytes=0-9" } }),
    206,
  );
  assert.deepEqual(recorder.take(), {
    durable: [],
    pulls: [1, 2, 3].map(() => ({ action: "pull", ...described })),
  });
  assert.equal(await status(reg, `/v2/app/blobs/${digest}`, { method: "DELETE" }), 202);
  assert.deepEqual(recorder.take().durable, [[{ action: "delete", ...blob }]]);
  // Failures report nothing.
  assert.equal(await status(reg, `/v2/app/blobs/${digest}`), 404);
  assert.equal(await status(reg, `/v2/app/blobs/${digest}`, { method: "DELETE" }), 404);
  assert.deepEqual(recorder.take(), { durable: [], pulls: [] });
});

Deno.test("mount from a named repository and automatic mount: the mount action", async () => {
  const { reg, recorder } = await setup();
  await using _ = reg;
  const digest = await pushBlob(reg, "base", randomBytes(10));
  recorder.take();
  const mount = (name: string, from: string) =>
    status(reg, `/v2/${name}/blobs/uploads/?mount=${digest}${from}`, { method: "POST" });
  assert.equal(await mount("app", "&from=base"), 201);
  assert.equal(await mount("other", ""), 201);
  const mounted = (repository: string, fromRepository: string) => ({
    action: "mount",
    kind: "blob",
    repository,
    digest,
    mediaType: BLOB_MEDIA_TYPE,
    size: 10,
    fromRepository,
  });
  // Automatic mount takes the blob from the first repository holding it (`app`, by now).
  assert.deepEqual(recorder.take().durable, [[mounted("app", "base")], [
    mounted("other", "app"),
  ]]);
  assert.equal(await mount("app", "&from=nowhere"), 202, "not mounted: a session, no event");
  assert.deepEqual(recorder.take().durable, []);
});

Deno.test("manifest push by tag and by digest; pulls by tag carry the tag", async () => {
  const { reg, recorder } = await setup();
  await using _ = reg;
  const image = await pushImage(reg, "app", { reference: "v1" });
  const manifest = {
    kind: "manifest",
    repository: "app",
    digest: image.digest,
    mediaType: OCI_MANIFEST,
    size: image.bytes.length,
  };
  const pushed = recorder.take().durable;
  assert.equal(pushed.length, 3, "config, layer, manifest");
  assert.deepEqual(pushed[2], [{ action: "push", ...manifest, tag: "v1" }]);
  const again = await reg.fetch(`/v2/app/manifests/${image.digest}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: image.bytes,
  });
  assert.equal(again.status, 201);
  assert.deepEqual(recorder.take().durable, [[{ action: "push", ...manifest }]]);
  assert.equal(await status(reg, "/v2/app/manifests/v1"), 200);
  assert.equal(await status(reg, "/v2/app/manifests/v1", { method: "HEAD" }), 200);
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`), 200);
  assert.deepEqual(recorder.take().pulls, [
    { action: "pull", ...manifest, tag: "v1" },
    { action: "pull", ...manifest, tag: "v1" },
    { action: "pull", ...manifest },
  ]);
  assert.equal(await status(reg, "/v2/app/manifests/v2"), 404);
  assert.deepEqual(recorder.take(), { durable: [], pulls: [] });
});

Deno.test("delete of a tag; delete of a manifest with the tags it takes along", async () => {
  const { reg, recorder } = await setup();
  await using _ = reg;
  const image = await pushImage(reg, "app", { reference: "v1" });
  for (const tag of ["v2", "latest"]) {
    const put = await reg.fetch(`/v2/app/manifests/${tag}`, {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: image.bytes,
    });
    assert.equal(put.status, 201);
  }
  recorder.take();
  assert.equal(await status(reg, "/v2/app/manifests/v2", { method: "DELETE" }), 202);
  assert.deepEqual(recorder.take().durable, [[
    { action: "delete", kind: "tag", repository: "app", tag: "v2" },
  ]]);
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`, { method: "DELETE" }), 202);
  const [deleted] = recorder.take().durable;
  assert.deepEqual(deleted[0], {
    action: "delete",
    kind: "manifest",
    repository: "app",
    digest: image.digest,
  });
  assert.deepEqual(
    deleted.slice(1).map((e) => `${e.kind} ${e.tag}`).sort(),
    ["tag latest", "tag v1"],
  );
  assert.equal(await status(reg, `/v2/app/manifests/${image.digest}`, { method: "DELETE" }), 404);
  assert.deepEqual(recorder.take().durable, []);
});
