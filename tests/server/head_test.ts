/**
 * The request head parser (src/server/head.ts) fed from memory, no socket: what it parses,
 * and every head it refuses, with the status the server answers.
 */

import assert from "node:assert/strict";
import { HttpError } from "../../src/server/errors.ts";
import { FieldMap, MAX_FIELDS, parseHead, readHead } from "../../src/server/head.ts";
import { WireReader } from "../../src/server/reader.ts";
import { Tripwire } from "../../src/server/tripwire.ts";
import { parseRequests, PieceReader, splitAt } from "./wire_helpers.ts";

const encoder = new TextEncoder();

/** The request in `text` parsed from one piece. */
async function parseOne(text: string, maxHeadBytes?: number) {
  const [request, ...more] = await parseRequests([encoder.encode(text)], { maxHeadBytes });
  assert.deepEqual(more, []);
  return request;
}

/** The status `text` is refused with (asserts it is refused with an HttpError). */
async function refusal(text: string | Uint8Array, maxHeadBytes?: number): Promise<number> {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  try {
    await parseRequests([bytes], { maxHeadBytes });
  } catch (error) {
    assert.ok(error instanceof HttpError, `${JSON.stringify(text)}: ${error}`);
    return error.status;
  }
  assert.fail(`${JSON.stringify(text)} was accepted`);
}

Deno.test("a head parses into method, url, fields and framing; the body follows in the buffer", async () => {
  const request = await parseOne(
    "PATCH /v2/a/blobs/uploads/x?y=1 HTTP/1.1\r\nHost: reg.test:5000\r\n" +
      "X-Padded: \t spaced value \t\r\nX-Twice: a\r\nx-twice: b\r\nX-Empty:\r\n" +
      "Content-Length: 5\r\n\r\nhello",
  );
  assert.equal(request.method, "PATCH");
  assert.equal(request.url, "http://reg.test:5000/v2/a/blobs/uploads/x?y=1");
  assert.deepEqual(request.fields, [
    ["host", "reg.test:5000"],
    ["x-padded", "spaced value"],
    ["x-twice", "a, b"],
    ["x-empty", ""],
    ["content-length", "5"],
  ]);
  assert.equal(request.framing, "length");
  assert.equal(new TextDecoder().decode(request.body), "hello");
  assert.equal(request.keepAlive, true);
  assert.equal(request.http10, false);
});

Deno.test("request forms: absolute-form, HTTP/1.0 without Host, empty lines before, keep-alive and expect", async () => {
  const absolute = await parseOne("GET http://other.test:1/v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(absolute.url, "http://other.test:1/v2/");
  const bare = await parseOne("GET https://other.test HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(bare.url, "http://other.test/");
  const query = await parseOne("GET http://other.test:1?n=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(query.url, "http://other.test:1/?n=1");
  const oldAbsolute = await parseOne("GET http://other.test/v2/ HTTP/1.0\r\n\r\n");
  assert.equal(oldAbsolute.url, "http://other.test/v2/");
  const old = await parseOne("GET /v2/ HTTP/1.0\r\n\r\n");
  assert.equal(old.url, "http://default.test:80/v2/");
  assert.equal(old.http10, true);
  assert.equal(old.keepAlive, false);
  const kept = await parseOne("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  assert.equal(kept.keepAlive, true);
  const closing = await parseOne("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n");
  assert.equal(closing.keepAlive, false);
  const emptyHost = await parseOne("GET / HTTP/1.1\r\nHost:\r\n\r\n");
  assert.equal(emptyHost.url, "http://default.test:80/");
  const leading = await parseOne("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(leading.method, "GET");
  const expecting = await parseOne(
    "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nz",
  );
  assert.equal(expecting.expectContinue, true);
  const chunked = await parseOne(
    "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
  );
  assert.equal(chunked.framing, "chunked");
  const zero = await parseOne("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 000\r\n\r\n");
  assert.equal(zero.framing, "none");
  const latin = await parseOne("GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\n\r\n");
  // one character per byte: the UTF-8 of "é" is two
  assert.deepEqual(latin.fields[1], ["x-latin", "caf\xc3\xa9"]);
});

Deno.test("a TLS connection's requests have https URLs, whatever the target's form", () => {
  const url = (head: string, scheme?: "http" | "https") =>
    parseHead(head, "default.test:443", scheme).request.url;
  assert.equal(
    url("GET /v2/ HTTP/1.1\r\nHost: reg.test:5000", "https"),
    "https://reg.test:5000/v2/",
  );
  assert.equal(
    url("GET http://other.test:1/v2/ HTTP/1.1\r\nHost: x", "https"),
    "https://other.test:1/v2/",
  );
  assert.equal(url("GET /v2/ HTTP/1.0", "https"), "https://default.test:443/v2/");
  assert.equal(url("GET /v2/ HTTP/1.1\r\nHost: reg.test:5000"), "http://reg.test:5000/v2/");
});

Deno.test("the end of the stream: null before a head, an Error (not HttpError) inside one", async () => {
  const empty = new WireReader(new PieceReader([]));
  assert.equal(await readHead(empty, { maxHeadBytes: 1000, defaultAuthority: "x" }), null);
  const blank = new WireReader(new PieceReader([encoder.encode("\r\n\r\n")]));
  assert.equal(await readHead(blank, { maxHeadBytes: 1000, defaultAuthority: "x" }), null);
  const cut = new WireReader(new PieceReader([encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n")]));
  await assert.rejects(
    readHead(cut, { maxHeadBytes: 1000, defaultAuthority: "x" }),
    (error) => error instanceof Error && !(error instanceof HttpError),
  );
});

Deno.test("the first byte is reported once; a wait for more is ended by `expiry`", async () => {
  let reported = 0;
  const pieces = splitAt(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), [1, 5, 9, 20]);
  const reader = new WireReader(new PieceReader(pieces));
  const head = await readHead(reader, {
    maxHeadBytes: 1000,
    defaultAuthority: "x",
    onFirstByte: () => reported++,
  });
  assert.equal(head?.request.method, "GET");
  assert.equal(reported, 1);

  const never = { read: () => new Promise<number | null>(() => {}) };
  const stalled = new WireReader(never);
  const is408 = (error: unknown) => error instanceof HttpError && error.status === 408;
  // Tripped while the head is awaited, and before it is.
  const expiry = new Tripwire();
  const waiting = readHead(stalled, { maxHeadBytes: 1000, defaultAuthority: "x", expiry });
  expiry.trip(new HttpError(408, "Request head not received in time"));
  await assert.rejects(waiting, is408);
  assert.equal(expiry.waiting, 0);
  const other = new WireReader(never);
  await assert.rejects(
    readHead(other, { maxHeadBytes: 1000, defaultAuthority: "x", expiry }),
    is408,
  );
});

Deno.test("heads the server refuses, with their status", async () => {
  const cases: [string, number][] = [
    // the request line
    ["GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400],
    ["GET /\r\nHost: x\r\n\r\n", 400],
    ["GET / http/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400],
    ["G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GARBAGE\r\n\r\n", 400],
    // line ends
    ["GET / HTTP/1.1\nHost: x\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\n\n", 400],
    ["\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400],
    // fields
    ["GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tfolded\r\n\r\n", 400],
    // Host
    ["GET / HTTP/1.1\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400],
    ["GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET http://other.test/v2/ HTTP/1.1\r\n\r\n", 400],
    ["GET http:///v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET http:// HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET http:///v2/ HTTP/1.0\r\n\r\n", 400],
    // framing
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", 400],
    [
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n",
      400,
    ],
    ["POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400],
    ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456\r\n\r\n", 400],
    // expectations and size
    ["PUT / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", 417],
    [
      `GET / HTTP/1.1\r\nHost: x\r\n${
        Array.from({ length: MAX_FIELDS }, (_, i) => `X-${i}: v\r\n`).join("")
      }\r\n`,
      431,
    ],
  ];
  for (const [text, status] of cases) {
    assert.equal(await refusal(text), status, JSON.stringify(text));
  }
  // exactly MAX_FIELDS fields are fine
  const fields = Array.from({ length: MAX_FIELDS - 1 }, (_, i) => `X-${i}: v\r\n`).join("");
  assert.equal((await parseOne(`GET / HTTP/1.1\r\nHost: x\r\n${fields}\r\n`)).fields.length, 100);
});

Deno.test("a head over maxHeadBytes is 431, whether it arrived whole or not; at the cap it parses", async () => {
  const head = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + "p".repeat(200) + "\r\n\r\n";
  const size = head.length;
  assert.equal(await refusal(head, size - 1), 431);
  await assert.rejects(
    parseRequests(splitAt(encoder.encode(head), [10, 50, 100]), { maxHeadBytes: size - 1 }),
    (error) => error instanceof HttpError && error.status === 431,
  );
  assert.equal((await parseOne(head, size)).method, "GET");
  // a body after the head does not count
  const withBody = head.replace("\r\n\r\n", "\r\nContent-Length: 1000\r\n\r\n") + "b".repeat(1000);
  assert.equal((await parseOne(withBody, size + 22)).body.length, 1000);
});

Deno.test("FieldMap: case-insensitive lookup, repeats joined and reported", () => {
  const fields = new FieldMap();
  assert.equal(fields.append("X-A", "1"), false);
  assert.equal(fields.append("x-a", "2"), true);
  assert.equal(fields.get("X-a"), "1, 2");
  assert.equal(fields.get("missing"), null);
  assert.deepEqual([...fields], [["x-a", "1, 2"]]);
});
