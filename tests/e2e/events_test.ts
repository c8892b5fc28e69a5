/**
 * Notifications end to end, with a real HTTP receiver on 127.0.0.1: the events of a push, a
 * pull and a delete (digests, repository, tag, media types, request ids matching
 * `X-Request-Id`); every push event arriving after the receiver was down (not listening, then
 * answering 500); and a push acknowledged just before a SIGKILL, delivered after the restart.
 */

import * as assert from "node:assert/strict";
import type { NotificationEndpoint } from "../../src/config/mod.ts";
import { BLOB_MEDIA_TYPE, EVENTS_MEDIA_TYPE } from "../../src/events/event.ts";
import { freePort, type Receiver, startReceiver, waitUntil } from "../events/helpers.ts";
import { ociManifest, type TestDescriptor } from "../helpers/manifests.ts";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import {
  randomBytes,
  sha256Digest,
  spawnRegistry,
  type TempRegistry,
  tempRegistry,
} from "../helpers/registry.ts";

const SECRET = "Bearer e2e-s3cret";

function hook(url: string): NotificationEndpoint {
  return {
    name: "hook",
    url,
    headers: { Authorization: [SECRET] },
    timeoutMs: 1000,
    threshold: 2,
    backoffMs: 50,
    ignoredMediaTypes: [],
    ignoredActions: [],
    disabled: false,
  };
}

type Fetcher = Pick<TempRegistry, "fetch">;

/** Sends a request, checks its status, returns its request id (body discarded). */
async function send(reg: Fetcher, path: string, init: RequestInit, expect: number) {
  const response = await reg.fetch(path, init);
  await response.body?.cancel();
  assert.equal(response.status, expect, `${init.method ?? "GET"} ${path}`);
  return { id: response.headers.get("x-request-id")!, headers: response.headers };
}

/** Pushes a blob by session (POST, PUT); returns its descriptor and the PUT's request id. */
async function pushBlob(reg: Fetcher, name: string, bytes: Uint8Array<ArrayBuffer>) {
  const digest = await sha256Digest(bytes);
  const start = await send(reg, `/v2/${name}/blobs/uploads/`, { method: "POST" }, 202);
  const location = start.headers.get("location")!;
  const url = new URL(location, "http://x");
  const put = await send(reg, `${url.pathname}?digest=${digest}`, {
    method: "PUT",
    body: bytes,
  }, 201);
  const blob: TestDescriptor = { mediaType: BLOB_MEDIA_TYPE, digest, size: bytes.length };
  return { blob, requestId: put.id };
}

/** Pushes a config, a layer and a manifest under `tag`; the request id of each write. */
async function pushImage(reg: Fetcher, name: string, tag: string) {
  const config = await pushBlob(reg, name, new TextEncoder().encode(`{"n":"${tag}"}`));
  const layer = await pushBlob(reg, name, randomBytes(2000));
  const manifest = await ociManifest({ config: config.blob, layers: [layer.blob] });
  const put = await send(reg, `/v2/${name}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest.bytes,
  }, 201);
  return { config, layer, manifest, requestId: put.id };
}

/** The objects queued for the endpoint `hook` under a data root (none: the folder is gone). */
function queued(dataDir: string): string[] {
  try {
    return [...Deno.readDirSync(`${dataDir}/events/hook`)].map((e) => e.name)
      .filter((name) => !name.startsWith("."));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

/** `action digest-or-tag` of each distinct event (by id), in order of first arrival. */
function distinct(receiver: Receiver): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const event of receiver.events) {
    if (seen.has(event.id)) continue;
    seen.add(event.id);
    out.push(`${event.action} ${event.target.digest || event.target.tag}`);
  }
  return out;
}

Deno.test("push, pull and delete: the receiver gets Distribution's events", async () => {
  await using receiver = startReceiver();
  await using reg = await tempRegistry({ config: { notifications: [hook(receiver.url)] } });
  const host = new URL(reg.url).host;
  const image = await pushImage(reg, "team/app", "v1");
  const pullManifest = await send(reg, "/v2/team/app/manifests/v1", {}, 200);
  const pullBlob = await send(reg, `/v2/team/app/blobs/${image.layer.blob.digest}`, {}, 200);
  const deleteManifest = await send(reg, `/v2/team/app/manifests/${image.manifest.digest}`, {
    method: "DELETE",
  }, 202);
  const deleteBlob = await send(reg, `/v2/team/app/blobs/${image.layer.blob.digest}`, {
    method: "DELETE",
  }, 202);
  await waitUntil(() => receiver.events.length >= 8, 5000, "8 events");

  for (const post of receiver.posts) {
    assert.equal(post.headers.get("content-type"), EVENTS_MEDIA_TYPE);
    assert.equal(post.headers.get("authorization"), SECRET);
  }
  const events = receiver.events;
  const digest = image.manifest.digest;
  const manifestTarget = {
    mediaType: OCI_MANIFEST,
    digest,
    size: image.manifest.bytes.length,
    length: image.manifest.bytes.length,
    repository: "team/app",
    url: `http://${host}/v2/team/app/manifests/${digest}`,
    tag: "v1",
  };
  const blobTarget = ({ blob }: { blob: TestDescriptor }) => ({
    mediaType: BLOB_MEDIA_TYPE,
    digest: blob.digest,
    size: blob.size,
    length: blob.size,
    repository: "team/app",
    url: `http://${host}/v2/team/app/blobs/${blob.digest}`,
  });
  const summary = events.map((e) => ({
    action: e.action,
    target: e.target,
    request: e.request.id,
    method: e.request.method,
  }));
  assert.deepEqual(summary, [
    {
      action: "push",
      target: blobTarget(image.config),
      request: image.config.requestId,
      method: "PUT",
    },
    {
      action: "push",
      target: blobTarget(image.layer),
      request: image.layer.requestId,
      method: "PUT",
    },
    { action: "push", target: manifestTarget, request: image.requestId, method: "PUT" },
    { action: "pull", target: manifestTarget, request: pullManifest.id, method: "GET" },
    { action: "pull", target: blobTarget(image.layer), request: pullBlob.id, method: "GET" },
    {
      action: "delete",
      target: { mediaType: "", digest, size: 0, repository: "team/app" },
      request: deleteManifest.id,
      method: "DELETE",
    },
    {
      action: "delete",
      target: { mediaType: "", digest: "", size: 0, repository: "team/app", tag: "v1" },
      request: deleteManifest.id,
      method: "DELETE",
    },
    {
      action: "delete",
      target: { mediaType: "", digest: image.layer.blob.digest, size: 0, repository: "team/app" },
      request: deleteBlob.id,
      method: "DELETE",
    },
  ]);
  for (const event of events) {
    assert.equal(event.request.addr, "127.0.0.1");
    assert.equal(event.request.host, host);
    assert.equal(typeof event.request.useragent, "string");
    assert.deepEqual(event.actor, {});
    assert.match(event.source.instanceID!, /^[0-9a-f-]{36}$/);
  }
  assert.equal(new Set(events.map((e) => e.id)).size, 8);
  await waitUntil(() => queued(reg.dataDir).length === 0, 5000, "the queue to empty");
});

Deno.test("receiver not listening, then failing, then up: every push event arrives", async () => {
  const port = freePort();
  await using reg = await tempRegistry({
    config: { notifications: [hook(`http://127.0.0.1:${port}/events`)] },
  });
  const expected: string[] = [];
  const record = (image: Awaited<ReturnType<typeof pushImage>>) =>
    expected.push(
      `push ${image.config.blob.digest}`,
      `push ${image.layer.blob.digest}`,
      `push ${image.manifest.digest}`,
    );
  record(await pushImage(reg, "app", "a")); // nobody listens
  record(await pushImage(reg, "app", "b"));
  await using receiver = startReceiver(port);
  receiver.status = 500; // listening, failing
  record(await pushImage(reg, "app", "c"));
  await waitUntil(() => receiver.attempts >= 2, 5000, "attempts answered with 500");
  assert.equal(receiver.posts.length, 0);
  receiver.status = 200;
  record(await pushImage(reg, "other", "d"));
  await waitUntil(() => distinct(receiver).length >= expected.length, 8000, "all push events");
  assert.deepEqual(distinct(receiver), expected, "each once, in push order");
  const logs = reg.logs.join("\n");
  assert.match(logs, /event delivery failed.*endpoint=hook/);
  assert.doesNotMatch(logs, /e2e-s3cret/);
});

Deno.test("a push acknowledged just before a SIGKILL is delivered after the restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "registry-events-" });
  const port = freePort();
  const configFile = `${dataDir}.yml`;
  await Deno.writeTextFile(
    configFile,
    `version: 0.1
notifications:
  endpoints:
    - name: hook
      url: http://127.0.0.1:${port}/events
      headers:
        Authorization: ["${SECRET}"]
      timeout: 500ms
      threshold: 1
      backoff: 100ms
`,
  );
  try {
    let image;
    {
      await using registry = await spawnRegistry(dataDir, ["--config", configFile]);
      const reg = { fetch: (path: string, init?: RequestInit) => fetch(registry.url + path, init) };
      image = await pushImage(reg, "app", "v1"); // nobody listens: nothing delivered
      await registry.kill("SIGKILL");
    }
    assert.equal(queued(dataDir).length, 3, "three objects queued on disk");

    await using receiver = startReceiver(port);
    await using _registry = await spawnRegistry(dataDir, ["--config", configFile]);
    await waitUntil(() => distinct(receiver).length >= 3, 10_000, "the queued events");
    assert.deepEqual(distinct(receiver), [
      `push ${image.config.blob.digest}`,
      `push ${image.layer.blob.digest}`,
      `push ${image.manifest.digest}`,
    ]);
    const manifestEvent = receiver.events.find((e) => e.target.digest === image.manifest.digest)!;
    assert.equal(manifestEvent.request.id, image.requestId);
    assert.equal(manifestEvent.target.tag, "v1");
    assert.equal(receiver.posts[0].headers.get("authorization"), SECRET);
    await waitUntil(() => queued(dataDir).length === 0, 5000, "the queue to empty");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
    await Deno.remove(configFile);
  }
});
