/**
 * The batch writer's buffers: reused by the next writer of the same allocator once a writer is
 * done, and never handed on while a write or an observation of them is still running, also
 * when the source or the observer fails. A writer that overlaps writes gets two at once, never
 * more, in order; one that does not, one at a time.
 */

import assert from "node:assert/strict";
import { BatchWriter } from "../../src/storage/batch_writer.ts";
import type { AppendWriter } from "../../src/storage/driver.ts";
import { sourceOf } from "../helpers/byte_sources.ts";

const KiB = 1024;

/**
 * An append writer collecting bytes, whose writes take `delayMs`, with its own allocator; it
 * says it `overlaps` when told to. Each write's bytes are kept as they were when it was called,
 * and it fails the test when they changed by the time it ends (a buffer reused too soon).
 */
function slowWriter(
  delayMs: number,
  allocate: (size: number) => Uint8Array<ArrayBuffer>,
  overlaps = false,
) {
  const state = { running: 0, most: 0, written: [] as number[], bytes: [] as Uint8Array[] };
  const writer: AppendWriter = {
    async write(bytes) {
      state.running++;
      state.most = Math.max(state.most, state.running);
      const copy = bytes.slice();
      state.bytes.push(copy); // in call order: where the bytes land
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      assert.deepEqual(bytes, copy, "a batch's buffer is not refilled while it is written");
      state.written.push(bytes.length);
      state.running--;
    },
    sync: () => Promise.resolve(),
    close: () => {},
    layout: { head: 0, allocate },
    ...(overlaps ? { overlaps } : {}),
  };
  return { writer, state };
}

/** An allocator that keeps every buffer it made. */
function countingAllocator() {
  const made: Uint8Array[] = [];
  const allocate = (size: number) => {
    const buffer = new Uint8Array(size);
    made.push(buffer);
    return buffer;
  };
  return { made, allocate };
}

function joined(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const part of parts) out.set(part, (at += part.length) - part.length);
  return out;
}

Deno.test("a finished writer's buffers go to the next writer of the same allocator", async () => {
  const { made, allocate } = countingAllocator();
  const bytes = new Uint8Array(200 * KiB).map((_, i) => i % 251);
  for (let round = 0; round < 3; round++) {
    const { writer, state } = slowWriter(1, allocate);
    await new BatchWriter(writer, 64 * KiB).writeFrom(sourceOf(bytes, 10 * KiB));
    assert.deepEqual(
      joined(state.bytes),
      bytes,
      `round ${round}: the bytes written are the source's`,
    );
    assert.equal(state.most, 1, "one write at a time to a writer that does not overlap");
  }
  assert.equal(made.length, 2, "two buffers made, then reused");
  // two writers at once need four
  const a = slowWriter(5, allocate);
  const b = slowWriter(5, allocate);
  await Promise.all([
    new BatchWriter(a.writer, 64 * KiB).writeFrom(sourceOf(bytes)),
    new BatchWriter(b.writer, 64 * KiB).writeFrom(sourceOf(bytes)),
  ]);
  assert.equal(made.length, 4);
});

Deno.test("a failing source: writeFrom rejects only once the write of the other batch is done", async () => {
  const { writer, state } = slowWriter(30, (size) => new Uint8Array(size));
  const inner = sourceOf(new Uint8Array(100 * KiB).fill(1), 64 * KiB);
  let reads = 0;
  const failing = {
    read(into: Uint8Array<ArrayBuffer>) {
      // the first batch fills and goes to the slow write; the next read fails
      return ++reads === 2 ? Promise.reject(new Error("client went away")) : inner.read(into);
    },
  };
  const batches = new BatchWriter(writer, 64 * KiB);
  await assert.rejects(batches.writeFrom(failing), /client went away/);
  assert.equal(state.running, 0, "no write is running on a buffer that was handed back");
  assert.deepEqual(state.written, [64 * KiB]);
  await assert.rejects(batches.writeFrom(sourceOf(new Uint8Array(1))), /twice/);
});

Deno.test("a failing observer: writeFrom rejects only once the write of that batch is done", async () => {
  const { writer, state } = slowWriter(30, (size) => new Uint8Array(size));
  const batches = new BatchWriter(
    writer,
    64 * KiB,
    () => Promise.reject(new Error("hash failed")),
  );
  await assert.rejects(batches.writeFrom(sourceOf(new Uint8Array(100 * KiB))), /hash failed/);
  assert.equal(state.running, 0, "the write outlived the observer's failure and was waited for");
  assert.equal(batches.written, 0, "a batch whose observation failed does not count");
});

Deno.test("a writer that overlaps gets the next batch while it writes one: two at once, never more, in order, each hashed in turn", async () => {
  const { made, allocate } = countingAllocator();
  const bytes = new Uint8Array(1000 * KiB).map((_, i) => (i * 7) % 253);
  const { writer, state } = slowWriter(3, allocate, true);
  const seen: Uint8Array[] = [];
  let observing = 0;
  const observe = async (batch: Uint8Array) => {
    assert.equal(observing++, 0, "observations never overlap");
    const copy = batch.slice();
    await new Promise((resolve) => setTimeout(resolve, 1));
    assert.deepEqual(batch, copy, "a batch's buffer is not refilled while it is observed");
    seen.push(copy);
    observing--;
  };
  const batches = new BatchWriter(writer, 64 * KiB, observe);
  await batches.writeFrom(sourceOf(bytes, 16 * KiB));
  assert.equal(state.most, 2, "two writes ran at once");
  assert.equal(state.running, 0);
  assert.equal(made.length, 3, "three buffers: one filled while two are written");
  assert.deepEqual(joined(state.bytes), bytes, "the writes were called in the source's order");
  assert.deepEqual(joined(seen), bytes, "the observer saw every batch, in order");
  assert.equal(batches.written, bytes.length);
});

Deno.test("beside another batch writer, one whose writer overlaps writes one batch at a time with two buffers", async () => {
  const { made, allocate } = countingAllocator();
  const bytes = new Uint8Array(640 * KiB).map((_, i) => (i * 13) % 251);
  const first = slowWriter(3, allocate, true);
  const second = slowWriter(3, allocate, true);
  const running = new BatchWriter(first.writer, 64 * KiB).writeFrom(sourceOf(bytes));
  await new BatchWriter(second.writer, 64 * KiB).writeFrom(sourceOf(bytes));
  await running;
  assert.equal(first.state.most, 2, "the first, alone when it started, had two writes at once");
  assert.equal(second.state.most, 1, "the second, started beside it, one at a time");
  assert.equal(made.length, 5, "three buffers for the first, two for the second");
  assert.deepEqual(joined(first.state.bytes), bytes);
  assert.deepEqual(joined(second.state.bytes), bytes);
});

Deno.test("a writer that overlaps: a failed write fails writeFrom once every write called is done", async () => {
  const { writer, state } = slowWriter(5, (size) => new Uint8Array(size), true);
  let calls = 0;
  const failing: AppendWriter = {
    ...writer,
    async write(bytes) {
      await writer.write(bytes);
      if (++calls === 3) throw new Error("disk full");
    },
  };
  const batches = new BatchWriter(failing, 64 * KiB);
  await assert.rejects(batches.writeFrom(sourceOf(new Uint8Array(1000 * KiB))), /disk full/);
  assert.equal(state.running, 0, "no write is running on a buffer that was handed back");
  assert.ok(calls <= 4, `${calls} writes called: none after the failure was seen`);
});
