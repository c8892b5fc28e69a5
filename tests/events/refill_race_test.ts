/**
 * A regression test for the event queue's refill: an event spilled to disk whose write ends
 * while a refill is listing the queue folder is still delivered, in order, without a restart.
 */

import assert from "node:assert/strict";
import { EventDispatcher } from "../../src/events/dispatcher.ts";
import { BLOB_MEDIA_TYPE, type EventSpec } from "../../src/events/event.ts";
import type { ListOptions, PutOptions } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { endpoint, FakeEndpoint, testLogger } from "./helpers.ts";

const push = (n: number): EventSpec => ({
  action: "push",
  kind: "blob",
  repository: "app",
  digest: `sha256:${"c".repeat(64)}`,
  mediaType: BLOB_MEDIA_TYPE,
  size: n + 1,
});

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** A memory driver that can hold the queue's next listing and the write of event 5. */
class GatedDriver extends MemoryDriver {
  listGate: ReturnType<typeof gate> | null = null;
  readonly listed = gate();
  putGate: ReturnType<typeof gate> | null = null;

  override async list(prefix: string, options?: ListOptions): Promise<string[]> {
    const snapshot = await super.list(prefix, options);
    if (this.listGate && prefix.startsWith("events/")) {
      const held = this.listGate;
      this.listGate = null;
      this.listed.open();
      await held.promise;
    }
    return snapshot;
  }

  override async put(key: string, bytes: Uint8Array | string, options?: PutOptions) {
    if (this.putGate && key.endsWith("0005")) await this.putGate.promise;
    return await super.put(key, bytes, options);
  }
}

Deno.test("a spilled event written while a refill lists the queue is delivered in order", async () => {
  const driver = new GatedDriver();
  const fake = new FakeEndpoint();
  fake.hold();
  const dispatcher = await EventDispatcher.open(driver, [endpoint()], {
    log: testLogger([], "debug"),
    fetch: fake.fetch,
    window: 4,
  });
  dispatcher.start();
  try {
    for (const n of [0, 1, 2, 3]) await dispatcher.record([push(n)]);
    await dispatcher.record([push(4)]); // the window is full: spilled to disk
    driver.putGate = gate();
    const slow = dispatcher.record([push(5)]); // spilled, its write held
    const listing = gate();
    driver.listGate = listing;
    fake.open(); // deliveries start; the queue refills from disk
    await driver.listed.promise; // the refill's listing has not seen event 5
    driver.putGate.open();
    await slow; // event 5 is acknowledged before the listing returns
    listing.open();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await dispatcher.record([push(6)]);
    const settled = () => fake.events.length >= 7 && Object.values(dispatcher.backlog())[0] === 0;
    for (let i = 0; i < 100 && !settled(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(fake.events.map((e) => e.target.size - 1), [0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Object.values(dispatcher.backlog()), [0]);
  } finally {
    await dispatcher.close();
  }
});
