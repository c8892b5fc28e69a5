/**
 * The coalescer of look-ups (`src/storage/postgres/coalesce.ts`), driven by a look-up whose
 * queries the test answers by hand: a call with room is sent at once; calls made while the
 * queries are out wait and go out together in the next one, never answered by a query sent
 * before them; batches are bounded; a failed query fails its own calls only.
 */

import assert from "node:assert/strict";
import { Coalescer } from "../../src/storage/postgres/coalesce.ts";

/** A look-up that records each query's keys and leaves it open until `answer` or `fail`. */
class ManualLookup {
  readonly queries: {
    keys: readonly string[];
    answer: (v: string[]) => void;
    fail: (e: Error) => void;
  }[] = [];

  readonly lookup = (keys: readonly string[]): Promise<string[]> =>
    new Promise((resolve, reject) => this.queries.push({ keys, answer: resolve, fail: reject }));

  /** Answers query `i` with each key's value (`value:` + key). */
  answer(i: number): void {
    this.queries[i]!.answer(this.queries[i]!.keys.map((k) => `value:${k}`));
  }
}

/** One query at a time, of at most 10 keys; no test waits for the timeout but the last. */
const OPTIONS = {
  maxInFlight: 1,
  maxBatch: 10,
  timeoutMs: 60_000,
  timedOut: () => new Error("timed out"),
};

/** Lets every settled promise's callbacks run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Whether `promise` has settled, and how. */
function watch<T>(promise: Promise<T>): { state: "pending" | "resolved" | "rejected"; value?: T } {
  const seen: { state: "pending" | "resolved" | "rejected"; value?: T } = { state: "pending" };
  promise.then(
    (value) => Object.assign(seen, { state: "resolved", value }),
    () => (seen.state = "rejected"),
  );
  return seen;
}

Deno.test("a call with a query free is sent at once, alone", async () => {
  const manual = new ManualLookup();
  const coalescer = new Coalescer(manual.lookup, { ...OPTIONS, maxInFlight: 2 });
  const a = coalescer.get("a");
  assert.deepEqual(manual.queries.map((q) => q.keys), [["a"]]);
  const b = coalescer.get("b");
  assert.deepEqual(manual.queries.map((q) => q.keys), [["a"], ["b"]]);
  manual.answer(1);
  manual.answer(0);
  assert.equal(await a, "value:a");
  assert.equal(await b, "value:b");
});

Deno.test("calls made while every query is out wait, and go out together in a later query", async () => {
  const manual = new ManualLookup();
  const coalescer = new Coalescer(manual.lookup, OPTIONS);
  const first = watch(coalescer.get("k"));
  // The same key again, and others, while the first query is out: not answered by it.
  const waiting = ["k", "x", "y"].map((key) => watch(coalescer.get(key)));
  assert.deepEqual(manual.queries.map((q) => q.keys), [["k"]]);
  manual.answer(0);
  await settle();
  assert.deepEqual(first, { state: "resolved", value: "value:k" });
  assert.deepEqual(waiting.map((w) => w.state), ["pending", "pending", "pending"]);
  // The first query's end sent the next one, with every waiting call in it.
  assert.deepEqual(manual.queries.map((q) => q.keys), [["k"], ["k", "x", "y"]]);
  manual.answer(1);
  await settle();
  assert.deepEqual(waiting.map((w) => w.value), ["value:k", "value:x", "value:y"]);
});

Deno.test("a batch holds at most maxBatch keys; the rest go in the next query", async () => {
  const manual = new ManualLookup();
  const coalescer = new Coalescer(manual.lookup, { ...OPTIONS, maxBatch: 2 });
  const calls = ["a", "b", "c", "d", "e"].map((key) => coalescer.get(key));
  manual.answer(0);
  await settle();
  manual.answer(1);
  await settle();
  manual.answer(2);
  assert.deepEqual(await Promise.all(calls), ["a", "b", "c", "d", "e"].map((k) => `value:${k}`));
  assert.deepEqual(manual.queries.map((q) => q.keys), [["a"], ["b", "c"], ["d", "e"]]);
});

Deno.test("a failed query fails its own calls only; the next query goes out", async () => {
  const manual = new ManualLookup();
  const coalescer = new Coalescer(manual.lookup, OPTIONS);
  const first = coalescer.get("a");
  const later = watch(coalescer.get("b"));
  manual.queries[0]!.fail(new Error("connection lost"));
  await assert.rejects(first, /connection lost/);
  await settle();
  assert.equal(later.state, "pending");
  assert.deepEqual(manual.queries[1]!.keys, ["b"]);
  manual.answer(1);
  await settle();
  assert.deepEqual(later, { state: "resolved", value: "value:b" });
});

Deno.test("a look-up that answers a different number of keys fails its calls", async () => {
  const coalescer = new Coalescer(
    (keys: readonly string[]) => Promise.resolve(keys.slice(1)),
    OPTIONS,
  );
  await assert.rejects(coalescer.get("a"), /answered 0 of 1 keys/);
  assert.throws(
    () => new Coalescer(() => Promise.resolve([]), { ...OPTIONS, maxInFlight: 0 }),
    RangeError,
  );
});

Deno.test("a query that never answers fails its calls after the timeout and frees its place", async () => {
  const manual = new ManualLookup();
  const coalescer = new Coalescer(manual.lookup, { ...OPTIONS, timeoutMs: 50 });
  const started = performance.now();
  const lost = coalescer.get("a");
  const next = watch(coalescer.get("b"));
  await assert.rejects(lost, /timed out/);
  assert.ok(performance.now() - started >= 45);
  // The next call went out in its own query once the first gave up its place.
  await settle();
  assert.deepEqual(manual.queries.map((q) => q.keys), [["a"], ["b"]]);
  manual.answer(1);
  await settle();
  assert.deepEqual(next, { state: "resolved", value: "value:b" });
  // The lost query's late answer changes nothing.
  manual.answer(0);
  await settle();
});
