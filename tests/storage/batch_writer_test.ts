/**
 * The batch writer's buffers: reused by the next writer of the same allocator once a writer is
 * done, and never handed on while a write or an observation of them is still running, also
 * when the source or the observer fails.
 */

import assert from "node:assert/strict";
import { BatchWriter } from "../../src/storage/batch_writer.ts";
import type { AppendWriter } from "../../src/storage/driver.ts";
import { sourceOf } from "../helpers/byte_sources.ts";

const KiB = 1024;

/** An append writer collecting bytes, whose writes take `delayMs`, with its own allocator. */
function slowWriter(delayMs: number, allocate: (size: number) => Uint8Array<ArrayBuffer>) {
  const state = { running: 0, written: [] as number[], bytes: [] as Uint8Array[] };
  const writer: AppendWriter = {
    async write(bytes) {
      state.running++;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      state.bytes.push(bytes.slice());
      state.written.push(bytes.length);
      state.running--;
    },
    sync: () => Promise.resolve(),
    close: () => {},
    layout: { head: 0, allocate },
  };
  return { writer, state };
}

Deno.test("a finished writer's buffers go to the next writer of the same allocator", async () => {
  const made: Uint8Array[] = [];
  const allocate = (size: number) => {
    const buffer = new Uint8Array(size);
    made.push(buffer);
    return buffer;
  };
  const bytes = new Uint8Array(200 * KiB).map((_, i) => i % 251);
  for (let round = 0; round < 3; round++) {
    const { writer, state } = slowWriter(1, allocate);
    await new BatchWriter(writer, 64 * KiB).writeFrom(sourceOf(bytes, 10 * KiB));
    const joined = new Uint8Array(state.bytes.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const part of state.bytes) joined.set(part, (at += part.length) - part.length);
    assert.deepEqual(joined, bytes, `round ${round}: the bytes written are the source's`);
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
