/**
 * The batch writer's buffers: reused by the next writer once a writer is done, and never handed
 * on while a write or an observation of them is still running, also when the source or the
 * observer fails. Writes are called one at a time, in order; a writer that does not write back
 * as it goes is synced in the background every 64 MiB, one that does is not.
 */

import assert from "node:assert/strict";
import { BatchWriter } from "../../src/storage/batch_writer.ts";
import type { AppendWriter } from "../../src/storage/driver.ts";
import { sourceOf } from "../helpers/byte_sources.ts";

const KiB = 1024;

/**
 * An append writer collecting bytes, whose writes take `delayMs`; it says it `writesBack` when
 * told to. Each write's bytes are kept as they were when it was called, and it fails the test
 * when they changed by the time it ends (a buffer reused too soon). It records the buffers it
 * was given and its syncs.
 */
function slowWriter(delayMs: number, writesBack = false) {
  const state = {
    running: 0,
    most: 0,
    syncs: 0,
    written: [] as number[],
    bytes: [] as Uint8Array[],
    buffers: new Set<ArrayBufferLike>(),
  };
  const writer: AppendWriter = {
    async write(bytes) {
      state.running++;
      state.most = Math.max(state.most, state.running);
      state.buffers.add(bytes.buffer);
      const copy = bytes.slice();
      state.bytes.push(copy); // in call order: where the bytes land
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      assert.deepEqual(bytes, copy, "a batch's buffer is not refilled while it is written");
      state.written.push(bytes.length);
      state.running--;
    },
    sync: () => {
      state.syncs++;
      return Promise.resolve();
    },
    close: () => {},
    ...(writesBack ? { writesBack } : {}),
  };
  return { writer, state };
}

function joined(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const part of parts) out.set(part, (at += part.length) - part.length);
  return out;
}

Deno.test("a finished writer's buffers go to the next writer; writes run one at a time, in order", async () => {
  const bytes = new Uint8Array(200 * KiB).map((_, i) => i % 251);
  const seen = new Set<ArrayBufferLike>();
  for (let round = 0; round < 3; round++) {
    const { writer, state } = slowWriter(1);
    await new BatchWriter(writer, 64 * KiB).writeFrom(sourceOf(bytes, 10 * KiB));
    assert.deepEqual(
      joined(state.bytes),
      bytes,
      `round ${round}: the bytes written are the source's`,
    );
    assert.equal(state.most, 1, "one write at a time");
    assert.equal(state.buffers.size, 2, "two buffers per writer");
    for (const buffer of state.buffers) seen.add(buffer);
  }
  assert.equal(seen.size, 2, "the first writer's two buffers, then the same ones again");
  // two writers at once need four
  const a = slowWriter(5);
  const b = slowWriter(5);
  await Promise.all([
    new BatchWriter(a.writer, 64 * KiB).writeFrom(sourceOf(bytes)),
    new BatchWriter(b.writer, 64 * KiB).writeFrom(sourceOf(bytes)),
  ]);
  assert.equal(new Set([...a.state.buffers, ...b.state.buffers]).size, 4);
});

Deno.test("a failing source: writeFrom rejects only once the write of the other batch is done", async () => {
  const { writer, state } = slowWriter(30);
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
  const { writer, state } = slowWriter(30);
  const batches = new BatchWriter(
    writer,
    64 * KiB,
    () => Promise.reject(new Error("hash failed")),
  );
  await assert.rejects(batches.writeFrom(sourceOf(new Uint8Array(100 * KiB))), /hash failed/);
  assert.equal(state.running, 0, "the write outlived the observer's failure and was waited for");
  assert.equal(batches.written, 0, "a batch whose observation failed does not count");
});

Deno.test("every batch is observed in order while it is written; a writer that does not write back is synced every 64 MiB, one that does only by its owner", async () => {
  const MiB = 1024 * KiB;
  const bytes = new Uint8Array(130 * MiB).map((_, i) => (i * 7) % 253);
  for (const writesBack of [false, true]) {
    const { writer, state } = slowWriter(0, writesBack);
    const seen: Uint8Array[] = [];
    const observe = async (batch: Uint8Array) => {
      const copy = batch.slice();
      await new Promise((resolve) => setTimeout(resolve, 0));
      assert.deepEqual(batch, copy, "a batch's buffer is not refilled while it is observed");
      seen.push(copy);
    };
    const batches = new BatchWriter(writer, MiB, observe);
    await batches.writeFrom(sourceOf(bytes, 256 * KiB));
    assert.deepEqual(joined(seen), bytes, "the observer saw every batch, in order");
    assert.equal(batches.written, bytes.length);
    // at 64 and 128 MiB written (each sync here is done before the next batch)
    assert.equal(state.syncs, writesBack ? 0 : 2, `writesBack: ${writesBack}`);
  }
});

Deno.test("a failed write fails writeFrom once it is done, and no write is called after it", async () => {
  const { writer, state } = slowWriter(5);
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
  assert.equal(calls, 3, "none after the failure");
  assert.equal(batches.written, 128 * KiB);
});

Deno.test("a writer that does not write back: a failed background sync fails writeFrom, and flush waits for the writer's own work", async () => {
  const MiB = 1024 * KiB;
  const { writer } = slowWriter(0);
  let idled = 0;
  const failing: AppendWriter = {
    ...writer,
    sync: () => Promise.reject(new Error("Input/output error (os error 5)")),
    idle: () => {
      idled++;
      return Promise.resolve();
    },
  };
  const batches = new BatchWriter(failing, MiB);
  await assert.rejects(
    batches.writeFrom(sourceOf(new Uint8Array(70 * MiB), 256 * KiB)),
    /os error 5/,
  );
  assert.ok(batches.written >= 64 * MiB, "the sync started at 64 MiB");
  assert.equal(idled, 0, "writeFrom does not wait for the writer's own work");
  await assert.rejects(batches.flush(), /os error 5/);
  assert.equal(idled, 1, "flush does, before the caller truncates");
});
