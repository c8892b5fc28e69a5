/**
 * The chunked decoder and the wire body (src/server/chunked.ts, body.ts) fed from memory, no
 * socket: what they decode, where they leave the reader, and every framing they refuse.
 */

import assert from "node:assert/strict";
import { WireBody } from "../../src/server/body.ts";
import { ChunkedDecoder, MAX_LINE, MAX_TRAILERS } from "../../src/server/chunked.ts";
import { HttpError } from "../../src/server/errors.ts";
import { WireReader } from "../../src/server/reader.ts";
import { concat } from "../helpers/uploads.ts";
import { PieceReader, splitAt } from "./wire_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Decodes `framed` (in the given pieces) with reads of `readSize`; the body and what is left. */
async function decode(
  pieces: (string | Uint8Array)[],
  readSize = 64 * 1024,
): Promise<{ body: string; rest: string }> {
  const reader = new WireReader(
    new PieceReader(pieces.map((p) => typeof p === "string" ? encoder.encode(p) : p)),
  );
  const chunked = new ChunkedDecoder(reader);
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(readSize);
  while (true) {
    const n = await chunked.read(buffer);
    if (n === 0) break;
    parts.push(buffer.slice(0, n));
  }
  assert.ok(chunked.done);
  const rest = decoder.decode(reader.buffer.subarray(reader.start, reader.end));
  return { body: decoder.decode(concat(...parts)), rest };
}

Deno.test("chunked bodies decode: extensions, trailers, hex of any case, leading zeros, empty", async () => {
  assert.deepEqual(await decode(["5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"]), {
    body: "hello world",
    rest: "",
  });
  assert.deepEqual(
    await decode(['5;a=b;c\r\nhello\r\n00A ; ext="q"\r\n0123456789\r\n000\r\nX-T: 1\r\n\r\n']),
    { body: "hello0123456789", rest: "" },
  );
  assert.deepEqual(await decode(["a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n"]), {
    body: "01234567890123456789",
    rest: "",
  });
  assert.deepEqual(await decode(["0\r\n\r\n"]), { body: "", rest: "" });
  // the next request stays in the buffer
  assert.deepEqual(await decode(["3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"]), {
    body: "abc",
    rest: "GET / HTTP/1.1\r\n",
  });
});

Deno.test("one read takes what is at hand across chunks; tiny reads and one-byte pieces decode the same", async () => {
  const framed = "3\r\nabc\r\n4\r\ndefg\r\n1\r\nh\r\n0\r\n\r\n";
  const reader = new WireReader(new PieceReader([encoder.encode(framed)]));
  const chunked = new ChunkedDecoder(reader);
  const buffer = new Uint8Array(100);
  assert.equal(await chunked.read(buffer), 8);
  assert.equal(decoder.decode(buffer.subarray(0, 8)), "abcdefgh");
  assert.equal(await chunked.read(buffer), 0);
  const bytes = encoder.encode(framed);
  const ones = splitAt(bytes, Array.from({ length: bytes.length }, (_, i) => i));
  assert.deepEqual(await decode(ones, 1), { body: "abcdefgh", rest: "" });
});

Deno.test("chunked framings the decoder refuses with 400, whole or byte by byte", async () => {
  const cases: [string, string | Uint8Array][] = [
    ["size is not hex", "zz\r\nabc\r\n0\r\n\r\n"],
    ["0x prefix", "0x3\r\nabc\r\n0\r\n\r\n"],
    ["signed size", "+3\r\nabc\r\n0\r\n\r\n"],
    ["negative size", "-3\r\nabc\r\n0\r\n\r\n"],
    ["empty size line", "\r\nabc\r\n0\r\n\r\n"],
    ["whitespace before the size", " 3\r\nabc\r\n0\r\n\r\n"],
    ["whitespace after the size without an extension", "3 \r\nabc\r\n0\r\n\r\n"],
    ["data longer than its size", "3\r\nabcdef\r\n0\r\n\r\n"],
    ["data shorter than its size", "5\r\nabc\r\n0\r\n\r\n"],
    ["size line with a bare LF", "3\nabc\r\n0\r\n\r\n"],
    ["data end with a bare LF", "3\r\nabc\n0\r\n\r\n"],
    ["last chunk with a bare LF", "3\r\nabc\r\n0\n\r\n"],
    ["trailer with a bare LF", "0\r\nX-T: 1\n\r\n"],
    ["end with a bare LF", "0\r\n\n"],
    ["a folded trailer", "0\r\nX-T: 1\r\n folded\r\n\r\n"],
    ["size too large to be real", "10000000000000\r\nabc"],
    ["control character in an extension", "3;a\x01b\r\nabc\r\n0\r\n\r\n"],
    ["a chunk line over MAX_LINE", `3;${"e".repeat(MAX_LINE)}\r\nabc\r\n0\r\n\r\n`],
    ["trailers over MAX_TRAILERS", `0\r\n${`X-T: ${"t".repeat(1000)}\r\n`.repeat(70)}\r\n`],
    ["the body ends in the middle", concat(encoder.encode("8000\r\n"), new Uint8Array(5000))],
    ["the body ends before its last chunk", "3\r\nabc\r\n"],
    ["the body ends in the trailers", "0\r\nX-T: 1\r\n"],
  ];
  assert.ok(70 * 1006 > MAX_TRAILERS);
  for (const [what, framed] of cases) {
    const bytes = typeof framed === "string" ? encoder.encode(framed) : framed;
    for (const pieces of [[bytes], splitAt(bytes, Array.from({ length: 200 }, (_, i) => i))]) {
      await assert.rejects(
        decode(pieces),
        (error) => error instanceof HttpError && error.status === 400,
        what,
      );
    }
  }
});

Deno.test("WireBody: a length body reads straight from the source once the buffer is empty", async () => {
  const reads: number[] = [];
  const source = new PieceReader([encoder.encode("0123456789"), encoder.encode("abcdefghij")]);
  const counting = {
    read(into: Uint8Array) {
      reads.push(into.length);
      return source.read(into);
    },
  };
  const reader = new WireReader(counting);
  await reader.fill(); // the head's read took the first piece
  reader.start = 4; // ...and the head was "0123"
  const body = new WireBody(reader, 12);
  const buffer = new Uint8Array(100);
  const first = await body.read(buffer);
  assert.equal(decoder.decode(first), "456789");
  const second = await body.read(new Uint8Array(first.buffer));
  assert.equal(decoder.decode(second), "abcdef");
  assert.equal(reads.at(-1), 6, "the read asks the source for no more than the body");
  assert.ok(body.done);
  assert.equal((await body.read(new Uint8Array(8))).length, 0);
});

Deno.test("WireBody: a body cut short is a fault of the client; an abort is not", async () => {
  const cut = new WireBody(new WireReader(new PieceReader([encoder.encode("abc")])), 10);
  assert.equal((await cut.read(new Uint8Array(10))).length, 3);
  await assert.rejects(cut.read(new Uint8Array(10)), HttpError);
  assert.equal(cut.fault?.status, 400);
  assert.ok(cut.broken);

  const never = { read: () => new Promise<number | null>(() => {}) };
  const stalled = new WireBody(new WireReader(never), 10);
  const reading = stalled.read(new Uint8Array(10));
  assert.ok(stalled.waitingSince !== null);
  const reason = new Error("the app gave up");
  stalled.abort(reason);
  await assert.rejects(reading, (error) => error === reason);
  await assert.rejects(stalled.read(new Uint8Array(10)), (error) => error === reason);
  assert.equal(stalled.fault, null);
  assert.ok(stalled.broken);
});

Deno.test("WireBody: Expect: 100-continue is answered before the first read, once", async () => {
  let sent = 0;
  const reader = new WireReader(new PieceReader([encoder.encode("1\r\nz\r\n0\r\n\r\n")]));
  const body = new WireBody(reader, null, () => {
    sent++;
    return Promise.resolve();
  });
  assert.ok(body.unrequested);
  assert.equal(decoder.decode(await body.read(new Uint8Array(10))), "z");
  assert.equal((await body.read(new Uint8Array(10))).length, 0);
  assert.equal(sent, 1);
  assert.ok(!body.unrequested);
  assert.ok(body.done);
});
