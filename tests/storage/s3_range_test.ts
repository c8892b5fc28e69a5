/**
 * The bytes of a ranged GetObject (`rangeBytes` of the S3 driver), whatever the server did with
 * the range: a 206 gives its body; a 200 (the range ignored) gives the range cut out of the
 * whole object, and what follows the range is not read; a body that ends short of the range
 * fails the stream instead of passing for the bytes asked for.
 */

import assert from "node:assert/strict";
import { rangeBytes, S3Driver } from "../../src/storage/drivers/s3.ts";

const OBJECT = Uint8Array.from({ length: 100 }, (_, i) => i);

/** A reply whose body comes in chunks of `size`; `pulled` counts the chunks read. */
function reply(status: number, bytes: Uint8Array, size: number) {
  const counter = { pulled: 0, cancelled: false };
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      counter.pulled++;
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
    cancel() {
      counter.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { response: new Response(body, { status }), counter };
}

async function all(stream: ReadableStream<Uint8Array>): Promise<number[]> {
  return [...new Uint8Array(await new Response(stream).arrayBuffer())];
}

Deno.test("a 206 reply gives its body", async () => {
  const { response } = reply(206, OBJECT.subarray(10, 30), 7);
  assert.deepEqual(await all(rangeBytes(response, 10, 20, "GetObject x")), [
    ...OBJECT.slice(10, 30),
  ]);
});

Deno.test("a 200 reply (range ignored) gives the range, and the rest is not read", async () => {
  for (const chunk of [1, 3, 10, 64, 100]) {
    const { response, counter } = reply(200, OBJECT, chunk);
    assert.deepEqual(
      await all(rangeBytes(response, 10, 20, "GetObject x")),
      [...OBJECT.slice(10, 30)],
      `chunks of ${chunk}`,
    );
    assert.ok(counter.cancelled, `the body was let go (chunks of ${chunk})`);
    assert.ok(counter.pulled <= Math.ceil(30 / chunk) + 1, `read past the range: ${chunk}`);
  }
});

Deno.test("a body short of its range fails the stream", async () => {
  const short = reply(206, OBJECT.subarray(10, 25), 4);
  await assert.rejects(
    all(rangeBytes(short.response, 10, 20, "GetObject x")),
    /GetObject x: the body ended 5 bytes short of its range/,
  );
  const whole = reply(200, OBJECT.subarray(0, 20), 8);
  await assert.rejects(all(rangeBytes(whole.response, 10, 20, "GetObject y")), /10 bytes short/);
});

Deno.test("the driver's ranged read of a blob answered 200 gives the span, and a reply without its length fails", async () => {
  const driver = new S3Driver({
    accesskey: "a",
    secretkey: "s",
    region: "us-east-1",
    regionendpoint: "http://127.0.0.1:9",
    bucket: "b",
  });
  let length: string | null = String(OBJECT.length);
  // A server that ignores Range: every GetObject is the whole object, 200.
  driver.client.getObject = (_name: string) =>
    Promise.resolve(
      new Response(OBJECT.slice(), {
        status: 200,
        headers: length === null ? {} : { "content-length": length },
      }),
    );
  const reader = await driver.read("blobs/sha256/ab/abcd", { start: 10, length: 20 });
  assert.equal(reader?.size, OBJECT.length);
  assert.deepEqual(await all(reader!.stream), [...OBJECT.slice(10, 30)]);
  const tail = await driver.read("blobs/sha256/ab/abcd", { start: 90, length: 20 });
  assert.deepEqual(await all(tail!.stream), [...OBJECT.slice(90)]);
  length = null;
  await assert.rejects(driver.read("blobs/sha256/ab/abcd", { start: 10, length: 20 }), /length/);
});
