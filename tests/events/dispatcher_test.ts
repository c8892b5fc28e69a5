/**
 * The event dispatcher over the memory driver with an injected `fetch`: the envelope and the
 * fields of each kind of event, the configured headers, ignore rules, disabled endpoints.
 */

import * as assert from "node:assert/strict";
import { EventDispatcher } from "../../src/events/dispatcher.ts";
import {
  BLOB_MEDIA_TYPE,
  EVENTS_MEDIA_TYPE,
  type EventSpec,
  type RequestInfo,
} from "../../src/events/event.ts";
import { runInRequestScope } from "../../src/events/request_scope.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import { endpoint, FakeEndpoint, testLogger, waitUntil } from "./helpers.ts";

const D1 = `sha256:${"a".repeat(64)}`;
const D2 = `sha256:${"b".repeat(64)}`;
const NOW = Date.parse("2025-03-04T05:06:07.089Z");

const REQUEST: RequestInfo = {
  id: "req-1",
  addr: "10.1.2.3",
  host: "registry.example:5000",
  method: "PUT",
  userAgent: "docker/27.0",
  actor: "alice",
  baseUrl: "https://registry.example:5000",
};

const SPECS: EventSpec[] = [
  {
    action: "push",
    kind: "manifest",
    repository: "team/app",
    digest: D1,
    mediaType: OCI_MANIFEST,
    size: 321,
    tag: "v1",
  },
  {
    action: "push",
    kind: "blob",
    repository: "team/app",
    digest: D2,
    mediaType: BLOB_MEDIA_TYPE,
    size: 9,
  },
  {
    action: "mount",
    kind: "blob",
    repository: "team/app",
    digest: D2,
    mediaType: BLOB_MEDIA_TYPE,
    size: 9,
    fromRepository: "base",
  },
  { action: "delete", kind: "blob", repository: "team/app", digest: D2 },
  { action: "delete", kind: "manifest", repository: "team/app", digest: D1 },
  { action: "delete", kind: "tag", repository: "team/app", tag: "v1" },
];

async function open(fake: FakeEndpoint, endpoints = [endpoint()], driver = new MemoryDriver()) {
  const lines: string[] = [];
  const dispatcher = await EventDispatcher.open(driver, endpoints, {
    log: testLogger(lines),
    fetch: fake.fetch,
    now: () => NOW,
    source: { addr: "node1:5000", instanceID: "instance-1" },
  });
  return { dispatcher, driver, lines };
}

Deno.test("envelope: media type, configured headers, and Distribution's fields per action", async () => {
  const fake = new FakeEndpoint();
  const { dispatcher } = await open(fake, [
    endpoint({ headers: { Authorization: ["Bearer s3cret"], "X-Tenant": ["a", "b"] } }),
  ]);
  await runInRequestScope(REQUEST, () => dispatcher.record(SPECS));
  runInRequestScope({ ...REQUEST, method: "GET", actor: null }, () => {
    dispatcher.pulled({ ...SPECS[0], action: "pull" });
    dispatcher.pulled({ ...SPECS[1], action: "pull" });
  });
  dispatcher.start();
  await waitUntil(() => fake.events.length === 8);
  await dispatcher.close();

  const post = fake.posts[0];
  assert.equal(post.url, "http://receiver.test/events");
  assert.equal(post.headers.get("content-type"), EVENTS_MEDIA_TYPE);
  assert.equal(post.headers.get("authorization"), "Bearer s3cret");
  assert.equal(post.headers.get("x-tenant"), "a, b");

  const events = fake.events;
  const ids = new Set(events.map((e) => e.id));
  assert.equal(ids.size, 8, "every event has its own id");
  for (const event of events) {
    assert.match(event.id, /^[0-9a-f-]{36}$/);
    assert.equal(event.timestamp, "2025-03-04T05:06:07.089Z");
    assert.deepEqual(event.source, { addr: "node1:5000", instanceID: "instance-1" });
    assert.deepEqual(Object.keys(event), [
      "id",
      "timestamp",
      "action",
      "target",
      "request",
      "actor",
      "source",
    ]);
  }
  const request = {
    id: "req-1",
    addr: "10.1.2.3",
    host: "registry.example:5000",
    method: "PUT",
    useragent: "docker/27.0",
  };
  const base = "https://registry.example:5000/v2/team/app";
  assert.deepEqual(events.slice(0, 6).map(({ action, target }) => ({ action, target })), [
    {
      action: "push",
      target: {
        mediaType: OCI_MANIFEST,
        digest: D1,
        size: 321,
        length: 321,
        repository: "team/app",
        url: `${base}/manifests/${D1}`,
        tag: "v1",
      },
    },
    {
      action: "push",
      target: {
        mediaType: BLOB_MEDIA_TYPE,
        digest: D2,
        size: 9,
        length: 9,
        repository: "team/app",
        url: `${base}/blobs/${D2}`,
      },
    },
    {
      action: "mount",
      target: {
        mediaType: BLOB_MEDIA_TYPE,
        digest: D2,
        size: 9,
        length: 9,
        repository: "team/app",
        fromRepository: "base",
        url: `${base}/blobs/${D2}`,
      },
    },
    {
      action: "delete",
      target: { mediaType: "", digest: D2, size: 0, repository: "team/app" },
    },
    {
      action: "delete",
      target: { mediaType: "", digest: D1, size: 0, repository: "team/app" },
    },
    {
      action: "delete",
      target: { mediaType: "", digest: "", size: 0, repository: "team/app", tag: "v1" },
    },
  ]);
  for (const event of events.slice(0, 6)) {
    assert.deepEqual(event.request, request);
    assert.deepEqual(event.actor, { name: "alice" });
  }
  // Distribution's key order in the target: the descriptor, then length, repository, url, tag.
  assert.deepEqual(Object.keys(events[0].target), [
    "mediaType",
    "digest",
    "size",
    "length",
    "repository",
    "url",
    "tag",
  ]);
  const [manifestPull, blobPull] = events.slice(6);
  assert.equal(manifestPull.action, "pull");
  assert.equal(manifestPull.target.tag, "v1");
  assert.equal(manifestPull.target.url, `${base}/manifests/${D1}`);
  assert.deepEqual(manifestPull.request, { ...request, method: "GET" });
  assert.deepEqual(manifestPull.actor, {}, "anonymous: no actor name");
  assert.equal(blobPull.target.mediaType, BLOB_MEDIA_TYPE);
});

Deno.test("outside a request scope the request record is empty and URLs are relative", async () => {
  const fake = new FakeEndpoint();
  const { dispatcher } = await open(fake);
  await dispatcher.record([SPECS[1]]);
  dispatcher.start();
  await waitUntil(() => fake.events.length === 1);
  await dispatcher.close();
  const [event] = fake.events;
  assert.deepEqual(event.request, { id: "", method: "", useragent: "" });
  assert.equal(event.target.url, `/v2/team/app/blobs/${D2}`);
});

Deno.test("ignore rules per endpoint: actions, media types; a disabled endpoint gets nothing", async () => {
  const fake = new FakeEndpoint();
  const endpoints = [
    endpoint({ name: "no-pulls", url: "http://a.test/", ignoredActions: ["pull", "mount"] }),
    endpoint({ name: "no-manifests", url: "http://b.test/", ignoredMediaTypes: [OCI_MANIFEST] }),
    endpoint({ name: "off", url: "http://c.test/", disabled: true }),
  ];
  const { dispatcher, driver } = await open(fake, endpoints);
  await dispatcher.record([SPECS[0]]);
  await dispatcher.record([SPECS[2]]);
  // An ignored durable event is never written for that endpoint.
  assert.equal((await driver.list("events/no-pulls")).length, 1);
  assert.equal((await driver.list("events/no-manifests")).length, 1);
  assert.deepEqual(await driver.list("events"), ["no-manifests", "no-pulls"]);
  dispatcher.pulled({ ...SPECS[0], action: "pull" });
  dispatcher.pulled({ ...SPECS[1], action: "pull" });
  dispatcher.start();
  await waitUntil(() => fake.events.length === 3);
  await new Promise((resolve) => setTimeout(resolve, 20));
  await dispatcher.close();
  const to = (url: string) =>
    fake.posts.filter((p) => p.url === url).flatMap((p) => p.body.events)
      .map((e) => `${e.action} ${e.target.mediaType}`);
  assert.deepEqual(to("http://a.test/"), [`push ${OCI_MANIFEST}`]);
  assert.deepEqual(to("http://b.test/"), [`mount ${BLOB_MEDIA_TYPE}`, `pull ${BLOB_MEDIA_TYPE}`]);
  assert.deepEqual(to("http://c.test/"), []);
  assert.deepEqual(await driver.list("events"), [], "delivered objects are removed");
});

Deno.test("record resolves once the object is stored; delivery removes it", async () => {
  const fake = new FakeEndpoint();
  fake.hold();
  const { dispatcher, driver } = await open(fake);
  dispatcher.start();
  await dispatcher.record([SPECS[0]]);
  const names = await driver.list("events/hook");
  assert.deepEqual(names, ["0000000000000000"]);
  const stored = JSON.parse(
    new TextDecoder().decode((await driver.get(`events/hook/${names[0]}`))!),
  );
  assert.equal(stored.events[0].target.digest, D1, "the object is a Distribution envelope");
  assert.equal(fake.events.length, 0);
  fake.open();
  await waitUntil(() => fake.events.length === 1);
  await waitUntil(() => dispatcher.backlog().hook === 0);
  assert.deepEqual(await driver.list("events/hook"), []);
  await dispatcher.close();
});

Deno.test("endpoints acknowledge independently: one down does not hold the other", async () => {
  const fake = new FakeEndpoint();
  fake.answer = () => 200;
  const down = new FakeEndpoint();
  down.answer = () => 503;
  const driver = new MemoryDriver();
  const dispatcher = await EventDispatcher.open(driver, [
    endpoint({ name: "up", url: "http://up.test/" }),
    endpoint({ name: "down", url: "http://down.test/", backoffMs: 5 }),
  ], {
    log: testLogger([]),
    fetch: (input, init) =>
      String(input).startsWith("http://up") ? fake.fetch(input, init) : down.fetch(input, init),
  });
  dispatcher.start();
  for (const spec of SPECS.slice(0, 3)) await dispatcher.record([spec]);
  await waitUntil(() => fake.events.length === 3);
  await waitUntil(() => down.attempts >= 5);
  assert.deepEqual(dispatcher.backlog(), { up: 0, down: 3 });
  await dispatcher.close();
  assert.equal((await driver.list("events/down")).length, 3, "still queued on disk");
});
