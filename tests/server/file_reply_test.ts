/**
 * Blob files as reply streams (src/storage/file_stream.ts): reads of at most 1 MiB, into the
 * reader's buffers, the file closed exactly once whether the stream ends, is cancelled (also
 * mid-read) or fails; the server's reading of streams (src/server/stream_chunks.ts): one read
 * ahead, reused buffers; and a real file served through the server, whole, as a range, to HEAD.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { serveHttp1 } from "../../src/server/mod.ts";
import { StreamChunks } from "../../src/server/stream_chunks.ts";
import { fileStream } from "../../src/storage/file_stream.ts";
import { randomBytes } from "../helpers/registry.ts";
import { concat } from "../helpers/uploads.ts";
import { exchange, parseAnswers } from "./wire_helpers.ts";

const MiB = 1024 * 1024;

/** A stand-in for an open file over `bytes` that records its reads and closes. */
function fakeFile(bytes: Uint8Array, options: { failAt?: number; gate?: Promise<void> } = {}) {
  const record = { reads: 0, closes: 0, readsAfterClose: 0, sizes: [] as number[] };
  let position = 0;
  const file = {
    async read(into: Uint8Array): Promise<number | null> {
      record.reads++;
      record.sizes.push(into.length);
      if (record.closes > 0) record.readsAfterClose++;
      await options.gate;
      if (options.failAt !== undefined && position >= options.failAt) {
        throw new Error("read failed");
      }
      if (position >= bytes.length) return null;
      const n = Math.min(into.length, bytes.length - position);
      into.set(bytes.subarray(position, position + n));
      position += n;
      return n;
    },
    close() {
      record.closes++;
      if (record.closes > 1) throw new Deno.errors.BadResource("closed twice");
    },
  };
  return { file: file as unknown as Deno.FsFile, record };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

Deno.test("fileStream reads at most 1 MiB at a time, nothing before the first read; closes once at the end", async () => {
  const bytes = randomBytes(3 * MiB + 123);
  const { file, record } = fakeFile(bytes);
  const stream = fileStream(file, bytes.length);
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(record.reads, 0, "nothing is read before the first read");
  const chunks = await readAll(stream);
  assert.deepEqual(concat(...chunks), bytes);
  assert.deepEqual(record.sizes, [MiB, MiB, MiB, 123]);
  assert.equal(record.closes, 1);
  // a default reader gets distinct buffers: it may keep them
  assert.notEqual(chunks[0].buffer, chunks[1].buffer);
});

Deno.test("fileStream: a BYOB reader gets the bytes in its own buffer, cut to 1 MiB", async () => {
  const bytes = randomBytes(MiB + 10);
  const { file, record } = fakeFile(bytes);
  const reader = fileStream(file, bytes.length).getReader({ mode: "byob" });
  const first = await reader.read(new Uint8Array(2 * MiB));
  assert.equal(first.value?.length, MiB);
  assert.equal(first.value?.buffer.byteLength, 2 * MiB, "the reader's buffer, transferred");
  const kept = first.value!.slice();
  const second = await reader.read(new Uint8Array(first.value!.buffer));
  assert.deepEqual(concat(kept, second.value!), bytes);
  assert.equal((await reader.read(new Uint8Array(16))).done, true);
  assert.equal(record.closes, 1);
});

Deno.test("the server's stream reader: one read ahead, into a few reused buffers", async () => {
  const bytes = randomBytes(6 * MiB);
  const { file, record } = fakeFile(bytes);
  const chunks = new StreamChunks(fileStream(file, bytes.length));
  const handed: Uint8Array[] = [];
  const received: Uint8Array[] = [];
  let chunk = await chunks.next();
  await new Promise((resolve) => setTimeout(resolve, 0)); // as a write of the chunk would
  assert.equal(record.reads, 2, "the next read started while the first chunk is at hand");
  while (chunk !== null) {
    handed.push(chunk);
    received.push(chunk.slice());
    chunk = await chunks.next();
  }
  chunks.release();
  assert.deepEqual(concat(...received), bytes);
  // each chunk's buffer went back into a later read (transferred, so detached here), but the
  // last ones: no reads came after them
  const reused = handed.slice(0, -2).map((c) => (c.buffer as ArrayBuffer).detached);
  assert.deepEqual(reused, [true, true, true, true]);
  assert.equal(record.closes, 1);

  // a stream that is not a byte stream is read ahead as well
  let pulls = 0;
  const plain = new StreamChunks(
    new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls++;
        controller.enqueue(new Uint8Array([pulls]));
        if (pulls === 3) controller.close();
      },
    }, { highWaterMark: 0 }),
  );
  assert.deepEqual(await plain.next(), new Uint8Array([1]));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(pulls, 2);
  assert.deepEqual(await plain.next(), new Uint8Array([2]));
  assert.deepEqual(await plain.next(), new Uint8Array([3]));
  assert.equal(await plain.next(), null);
  plain.release();
});

Deno.test("fileStream: a range shorter than the file stops at its length; an empty one reads nothing", async () => {
  const bytes = randomBytes(5000);
  const { file, record } = fakeFile(bytes);
  assert.deepEqual(concat(...await readAll(fileStream(file, 1000))), bytes.subarray(0, 1000));
  assert.equal(record.closes, 1);
  const empty = fakeFile(bytes);
  assert.deepEqual(await readAll(fileStream(empty.file, 0)), []);
  assert.deepEqual(empty.record, { reads: 0, closes: 1, readsAfterClose: 0, sizes: [] });
});

Deno.test("fileStream: cancelled unread, or while a read is under way, the file closes once after it", async () => {
  const unread = fakeFile(randomBytes(100));
  await fileStream(unread.file, 100).cancel();
  assert.deepEqual(unread.record, { reads: 0, closes: 1, readsAfterClose: 0, sizes: [] });

  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const slow = fakeFile(randomBytes(3 * MiB), { gate });
  const reader = fileStream(slow.file, 3 * MiB).getReader();
  const pending = reader.read();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(slow.record.reads, 1, "a read is under way");
  const cancelled = reader.cancel();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(slow.record.closes, 0, "not closed under a pending read");
  open();
  await cancelled;
  assert.equal((await pending).done, true);
  assert.equal(slow.record.closes, 1);
  assert.equal(slow.record.readsAfterClose, 0);
  assert.equal(slow.record.reads, 1, "no read ahead after the cancel");
});

Deno.test("fileStream: a failing read or a file shorter than promised errors the stream; closed once", async () => {
  const failing = fakeFile(randomBytes(3 * MiB), { failAt: MiB });
  await assert.rejects(readAll(fileStream(failing.file, 3 * MiB)), /read failed/);
  assert.equal(failing.record.closes, 1);
  const short = fakeFile(randomBytes(1000));
  await assert.rejects(readAll(fileStream(short.file, 2000)), /ended before/);
  assert.equal(short.record.closes, 1);
});

Deno.test("a file served through the server: whole, a range, and HEAD (never read)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "file-reply-" });
  const bytes = randomBytes(2 * MiB + 77);
  const path = join(dir, "blob");
  await Deno.writeFile(path, bytes);
  const opened: Deno.FsFile[] = [];
  const server = serveHttp1({ hostname: "127.0.0.1", port: 0 }, async (request) => {
    const url = new URL(request.url);
    const file = await Deno.open(path);
    opened.push(file);
    const start = Number(url.searchParams.get("start") ?? 0);
    const length = Number(url.searchParams.get("length") ?? bytes.length);
    await file.seek(start, Deno.SeekMode.Start);
    return {
      status: 200,
      headers: url.searchParams.has("chunked") ? [] : [["Content-Length", String(length)]],
      body: fileStream(file, length),
    };
  });
  try {
    const port = server.addr.port;
    const raw = await exchange(port, [
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /?start=1000&length=1048576 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /?chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]);
    const answers = parseAnswers(raw, [false, false, true, false]);
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200]);
    assert.deepEqual(answers[0].body, bytes);
    assert.deepEqual(answers[1].body, bytes.subarray(1000, 1000 + MiB));
    assert.equal(answers[2].headers.get("content-length"), String(bytes.length));
    assert.equal(answers[3].headers.get("transfer-encoding"), "chunked");
    assert.deepEqual(answers[3].body, bytes);
    // every file was closed (by its stream: closing again fails)
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(opened.length, 4);
    for (const file of opened) assert.throws(() => file.close(), Deno.errors.BadResource);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
