/**
 * The tripwire: races fail when it trips, pass the work's outcome through otherwise, and
 * leave nothing behind once settled; and the built-in server, which races its request-head waits
 * and its body reads against one, does not grow the heap request by request on a kept-alive
 * connection, nor read by read in one body.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Tripwire } from "../../src/server/tripwire.ts";

Deno.test("a race passes the work's value or failure through and forgets its wait", async () => {
  const wire = new Tripwire();
  assert.equal(await wire.race(Promise.resolve(7)), 7);
  await assert.rejects(wire.race(Promise.reject(new Error("work failed"))), /work failed/);
  const late = Promise.withResolvers<string>();
  const racing = wire.race(late.promise);
  assert.equal(wire.waiting, 1);
  late.resolve("done");
  assert.equal(await racing, "done");
  assert.equal(wire.waiting, 0);
  for (let i = 0; i < 1000; i++) await wire.race(Promise.resolve(i));
  assert.equal(wire.waiting, 0);
  assert.equal(wire.tripped, false);
});

Deno.test("tripping fails the races under way and every later one; the work's outcome is ignored", async () => {
  const wire = new Tripwire();
  const first = Promise.withResolvers<number>();
  const second = Promise.withResolvers<number>();
  const racing = [wire.race(first.promise), wire.race(second.promise)];
  wire.trip(new Error("expired"));
  wire.trip(new Error("a second trip is ignored"));
  for (const race of racing) await assert.rejects(race, /^Error: expired$/);
  assert.equal(wire.waiting, 0);
  assert.equal(wire.tripped, true);
  // Work that settles after the trip, even failing, is no unhandled rejection.
  first.resolve(1);
  second.reject(new Error("late failure"));
  const after = Promise.reject(new Error("work failing after the trip"));
  await assert.rejects(wire.race(after), /^Error: expired$/);
});

Deno.test("30,000 requests on one kept-alive connection, or reads of one body, leave the heap as it was", async () => {
  // A child with gc exposed: the heap in use after full collections, before and after.
  const fixture = fileURLToPath(new URL("../fixtures/server/keepalive_heap.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--v8-flags=--expose-gc", "--allow-net", fixture, "30000"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const { requests, body } = JSON.parse(new TextDecoder().decode(out.stdout));
  // Racing each wait against one promise pending for the connection's (or the body's) life
  // kept about 310 bytes per wait (9 MiB here); what is left now is the noise of a few KiB.
  for (const [what, { before, after }] of Object.entries({ requests, body })) {
    const grown = (after as number) - (before as number);
    assert.ok(grown < 1024 * 1024, `${what}: the heap grew from ${before} to ${after} bytes`);
  }
});
