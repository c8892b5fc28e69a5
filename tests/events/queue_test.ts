/**
 * Event queues over the memory driver: delivery order, Distribution's retry and backoff (with
 * an injected clock and sleep), timeouts, which statuses count as delivery, recovery of a
 * queue left on disk, the memory window with spilling to disk, and failed writes.
 */

import * as assert from "node:assert/strict";
import { type DispatcherOptions, EventDispatcher } from "../../src/events/dispatcher.ts";
import { BLOB_MEDIA_TYPE, type EventSpec } from "../../src/events/event.ts";
import type { StorageDriver } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { endpoint, FakeEndpoint, testLogger, waitUntil } from "./helpers.ts";

/** The n-th blob push, its size telling it apart. */
function push(n: number): EventSpec {
  return {
    action: "push",
    kind: "blob",
    repository: "app",
    digest: `sha256:${"c".repeat(64)}`,
    mediaType: BLOB_MEDIA_TYPE,
    size: n + 1,
  };
}

const sizes = (fake: FakeEndpoint) => fake.events.map((e) => e.target.size - 1);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

async function open(
  fake: FakeEndpoint,
  options: Partial<DispatcherOptions> & { driver?: StorageDriver; lines?: string[] } = {},
  settings = endpoint(),
) {
  const lines = options.lines ?? [];
  const driver = options.driver ?? new MemoryDriver();
  const dispatcher = await EventDispatcher.open(driver, [settings], {
    log: testLogger(lines, "debug"),
    fetch: fake.fetch,
    ...options,
  });
  return { dispatcher, driver, lines };
}

Deno.test("events are delivered in the order they were recorded, in batches", async () => {
  const fake = new FakeEndpoint();
  fake.hold();
  const { dispatcher } = await open(fake, { batch: 4 });
  dispatcher.start();
  // Started together: their writes may finish in any order, the delivery is in call order.
  await Promise.all(range(30).map((n) => dispatcher.record([push(n)])));
  fake.open();
  await waitUntil(() => fake.events.length === 30);
  await dispatcher.close();
  assert.deepEqual(sizes(fake), range(30));
  assert.ok(fake.posts.every((post) => post.body.events.length <= 4));
  assert.ok(fake.posts.length >= 8);
});

Deno.test("retry: at once up to the threshold, then backoff after each failure; success resets", async () => {
  const fake = new FakeEndpoint();
  const failing = new Set([0, 1, 2, 3, 4, 5, 7]);
  fake.answer = (n) => (failing.has(n) ? (n % 2 ? 500 : "error") : 200);
  let clock = 1_000_000;
  const sleeps: number[] = [];
  const lines: string[] = [];
  const { dispatcher } = await open(fake, {
    lines,
    now: () => clock,
    sleep: (ms) => {
      sleeps.push(ms);
      clock += ms;
      return Promise.resolve();
    },
  }, endpoint({ threshold: 3, backoffMs: 1000, headers: { Authorization: ["Bearer s3cret"] } }));
  dispatcher.start();
  await dispatcher.record([push(0)]);
  await waitUntil(() => fake.events.length === 1);
  // Attempts 1-3 fail at once; 4, 5, 6 and the successful 7th each wait the backoff.
  assert.equal(fake.attempts, 7);
  assert.deepEqual(sleeps, [1000, 1000, 1000, 1000]);
  await dispatcher.record([push(1)]);
  await waitUntil(() => fake.events.length === 2);
  assert.equal(fake.attempts, 9, "one failure after a success is retried at once");
  assert.deepEqual(sleeps, [1000, 1000, 1000, 1000]);
  await dispatcher.close();
  const text = lines.join("\n");
  assert.match(
    text,
    /"event delivery failed","endpoint":"hook","reason":"TypeError: .*\(<hook>\)"/,
  );
  assert.match(
    text,
    /"event delivery failing: backing off","endpoint":"hook","reason":.*"failures":3/,
  );
  assert.match(text, /"event delivery resumed","endpoint":"hook","failures":6/);
  assert.doesNotMatch(text, /s3cret|receiver\.test/, "no header values, no URL");
});

Deno.test("an attempt gets the endpoint's timeout, then counts as failed", async () => {
  const fake = new FakeEndpoint();
  fake.answer = (n) => (n === 0 ? "hang" : 200);
  const { dispatcher, lines } = await open(fake, {}, endpoint({ timeoutMs: 50 }));
  dispatcher.start();
  const started = Date.now();
  await dispatcher.record([push(0)]);
  await waitUntil(() => fake.events.length === 1);
  assert.ok(Date.now() - started >= 45);
  assert.equal(fake.attempts, 2);
  assert.match(lines.join("\n"), /no answer within 50 ms/);
  await dispatcher.close();
});

Deno.test("200-399 is delivery (as in Distribution); 4xx and 5xx are retried", async () => {
  for (const [status, delivered] of [[204, true], [302, true], [404, false], [502, false]]) {
    const fake = new FakeEndpoint();
    fake.answer = (n) => (n === 0 ? status as number : 299);
    const { dispatcher } = await open(fake, {}, endpoint({ backoffMs: 1 }));
    dispatcher.start();
    await dispatcher.record([push(0)]);
    await waitUntil(() => dispatcher.backlog().hook === 0);
    await dispatcher.close();
    assert.equal(fake.attempts, delivered ? 1 : 2, `status ${status}`);
  }
});

Deno.test("a queue left on disk is delivered first after a restart, numbering goes on", async () => {
  const driver = new MemoryDriver();
  const fake = new FakeEndpoint();
  const first = await open(fake, { driver });
  for (const n of range(5)) await first.dispatcher.record([push(n)]);
  await first.dispatcher.close(); // never started: a crash before any delivery
  assert.equal((await driver.list("events/hook")).length, 5);

  const lines: string[] = [];
  const second = await open(fake, { driver, lines });
  assert.match(lines.join("\n"), /"undelivered events found","endpoint":"hook","pending":5/);
  await second.dispatcher.record([push(5)]);
  assert.equal((await driver.list("events/hook")).at(-1), "0000000000000005");
  second.dispatcher.start();
  await waitUntil(() => fake.events.length === 6);
  await waitUntil(() => second.dispatcher.backlog().hook === 0);
  await second.dispatcher.close();
  assert.deepEqual(sizes(fake), range(6));
  assert.deepEqual(await driver.list("events"), []);
});

Deno.test("an unreadable object in a queue is skipped (and kept), the others delivered", async () => {
  const driver = new MemoryDriver();
  const fake = new FakeEndpoint();
  const first = await open(fake, { driver });
  await first.dispatcher.record([push(0)]);
  await driver.put("events/hook/0000000000000001", "{not json");
  await first.dispatcher.close();
  const lines: string[] = [];
  const { dispatcher } = await open(fake, { driver, lines });
  await dispatcher.record([push(2)]);
  dispatcher.start();
  await waitUntil(() => fake.events.length === 2 && dispatcher.backlog().hook === 0);
  await dispatcher.close();
  assert.deepEqual(sizes(fake), [0, 2]);
  assert.match(lines.join("\n"), /"unreadable event object skipped".*0000000000000001/);
  assert.deepEqual(await driver.list("events/hook"), ["0000000000000001"]);
});

Deno.test("a queue of an endpoint no longer configured is kept, with a warning", async () => {
  const driver = new MemoryDriver();
  await driver.put("events/old/0000000000000000", '{"events":[]}');
  const lines: string[] = [];
  const { dispatcher } = await open(new FakeEndpoint(), { driver, lines });
  await dispatcher.close();
  assert.match(lines.join("\n"), /"level":"warn".*"queue":"events\/old"/);
  assert.ok(await driver.get("events/old/0000000000000000"));
});

Deno.test("beyond the memory window objects wait on disk; none is lost, order holds", async () => {
  const fake = new FakeEndpoint();
  fake.answer = () => 503;
  const lines: string[] = [];
  const { dispatcher, driver } = await open(fake, {
    lines,
    window: 4,
    batch: 3,
    warnBacklog: 10,
  }, endpoint({ backoffMs: 2 }));
  dispatcher.start();
  for (const n of range(15)) await dispatcher.record([push(n)]);
  await Promise.all(range(15).map((n) => dispatcher.record([push(15 + n)])));
  dispatcher.pulled({ ...push(99), action: "pull" }); // the window is full: dropped
  assert.equal((await driver.list("events/hook")).length, 30);
  assert.equal(dispatcher.backlog().hook, 30);
  const text = lines.join("\n");
  assert.match(
    text,
    /"event queue growing: the endpoint is not keeping up","endpoint":"hook","pending":11/,
  );
  assert.match(text, /"pending":23/); // and again at each doubling
  assert.match(text, /"event queue full: pull events are dropped"/);
  fake.answer = () => 200;
  // Written while the queue drains: still after the others.
  const late = Promise.all(range(10).map((n) => dispatcher.record([push(30 + n)])));
  await late;
  await waitUntil(() => fake.events.length >= 40 && dispatcher.backlog().hook === 0);
  assert.deepEqual(sizes(fake), range(40));
  // Drained: new events are held in memory again, and pulls are queued again.
  dispatcher.pulled({ ...push(40), action: "pull" });
  await waitUntil(() => fake.events.length === 41);
  await dispatcher.close();
  assert.deepEqual(await driver.list("events"), []);
});

Deno.test("a failed write fails the record and leaves the queue usable", async () => {
  const driver = new MemoryDriver();
  let failNext = false;
  const faulty = new Proxy(driver, {
    get(target, property) {
      if (property === "put" && failNext) {
        failNext = false;
        return () => Promise.reject(new Error("disk full"));
      }
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const fake = new FakeEndpoint();
  const { dispatcher } = await open(fake, { driver: faulty });
  dispatcher.start();
  await dispatcher.record([push(0)]);
  failNext = true;
  await assert.rejects(dispatcher.record([push(1)]), /disk full/);
  await dispatcher.record([push(2)]);
  await waitUntil(() => fake.events.length === 2);
  await dispatcher.close();
  assert.deepEqual(sizes(fake), [0, 2]);
});

Deno.test("writes finishing out of order, a tiny window, a flaky endpoint: each event once, in order", async () => {
  const driver = new MemoryDriver();
  const slow = new Proxy(driver, {
    get(target, property) {
      const value = Reflect.get(target, property);
      if (property !== "put" && property !== "list") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (...args: unknown[]) => {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const fake = new FakeEndpoint();
  fake.answer = () => (Math.random() < 0.3 ? 500 : 200);
  const { dispatcher } = await open(
    fake,
    { driver: slow, window: 3, batch: 2 },
    endpoint({
      threshold: 2,
      backoffMs: 1,
    }),
  );
  dispatcher.start();
  let next = 0;
  for (let wave = 0; wave < 8; wave++) {
    await Promise.all(range(1 + wave * 3).map(() => dispatcher.record([push(next++)])));
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
  }
  await waitUntil(() => dispatcher.backlog().hook === 0 && fake.events.length === next);
  await dispatcher.close();
  assert.deepEqual(sizes(fake), range(next));
});

Deno.test("a spill written slower than the next one, both begun while the disk is listed, is delivered in its place", async () => {
  /** Lists only when let through; holds the put of event 5 until let through. */
  class Gated extends MemoryDriver {
    listed = Promise.withResolvers<void>();
    listGate: PromiseWithResolvers<void> | null = null;
    readonly put5 = Promise.withResolvers<void>();
    override async list(prefix: string, options?: { after?: string; limit?: number }) {
      const gate = this.listGate;
      if (gate) {
        this.listGate = null;
        this.listed.resolve();
        await gate.promise;
      }
      return await super.list(prefix, options);
    }
    override async put(key: string, bytes: Uint8Array | string): Promise<void> {
      if (key.endsWith("0000000000000005")) await this.put5.promise;
      await super.put(key, bytes);
    }
  }
  const driver = new Gated();
  const fake = new FakeEndpoint();
  fake.hold();
  const { dispatcher } = await open(fake, { driver, window: 4, batch: 1 });
  dispatcher.start();
  // Events 0 to 3 fill the window; 4 spills to disk.
  for (const n of [0, 1, 2, 3, 4]) await dispatcher.record([push(n)]);
  // The next listing of the disk (the refill once half the window is delivered) waits.
  driver.listGate = Promise.withResolvers<void>();
  const gate = driver.listGate;
  fake.open();
  await driver.listed.promise;
  // While it waits: event 5 spills and its write hangs; event 6 spills and is written.
  const fifth = dispatcher.record([push(5)]);
  await dispatcher.record([push(6)]);
  gate.resolve();
  await waitUntil(() => sizes(fake).length >= 5); // up to event 4: nothing past 5 may go yet
  driver.put5.resolve();
  await fifth;
  await waitUntil(() => dispatcher.backlog().hook === 0 && fake.events.length >= 7);
  await dispatcher.close();
  assert.deepEqual(sizes(fake), range(7));
});
