/**
 * The registry on the built-in HTTP/1.1 server (src/server/) over real sockets: chunked bodies
 * in any framing, malformed bodies and framing attacks refused by the server itself (plain
 * text, connection closed), pipelining, HEAD, Expect: 100-continue, unread bodies, HTTP/1.0,
 * and the `Deno.serve` fallback.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { portOf } from "../helpers/raw_http.ts";
import { randomBytes, sha256Digest, tempRegistry } from "../helpers/registry.ts";
import { chunkedEncoding, concat, startUpload } from "../helpers/uploads.ts";
import { type Answer, chunked, exchange, parseAnswers, textOf } from "./wire_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Checks a refusal of the server's own: plain text, no OCI body, the connection closes. */
function assertPlainRefusal(answer: Answer, status: number, what: string): void {
  assert.equal(answer.status, status, what);
  assert.equal(answer.headers.get("content-type"), "text/plain; charset=utf-8", what);
  assert.equal(answer.headers.get("connection"), "close", what);
  assert.ok(!textOf(answer).includes('"errors"'), `${what}: ${textOf(answer)}`);
  assert.ok(textOf(answer).trim().length > 0, `${what}: a message`);
}

Deno.test("chunked PATCH bodies in any framing store exactly their bytes", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  const bytes = randomBytes(300_000);
  const digest = await sha256Digest(bytes);
  const framings: [string, Uint8Array][] = [
    ["32 KiB frames (Go's net/http)", chunked(bytes, 32 * 1024)],
    [
      "1-byte frames for the first 2000 bytes",
      concat(
        chunked(bytes.subarray(0, 2000), 1).slice(0, -5), // without the last chunk
        chunked(bytes.subarray(2000), 65_536),
      ),
    ],
    [
      "upper-case hex, extensions and a trailer",
      chunked(bytes, 0x1ABCD, ";name=value", "X-T: 1\r\n"),
    ],
    ["one frame", chunked(bytes, bytes.length)],
  ];
  for (const [what, body] of framings) {
    const { location } = await startUpload(reg, "wire/chunked");
    // The body goes out in odd-sized writes so that frame heads straddle reads.
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < body.length; at += 7777) pieces.push(body.subarray(at, at + 7777));
    const raw = await exchange(port, [
      `PATCH ${location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
      ...pieces,
      `PUT ${location}?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n` +
      `Connection: close\r\n\r\n`,
    ]);
    const [patched, put] = parseAnswers(raw);
    assert.equal(patched.status, 202, what);
    assert.equal(patched.headers.get("range"), `0-${bytes.length - 1}`, what);
    assert.equal(put.status, 201, what);
    assert.equal(put.headers.get("docker-content-digest"), digest, what);
  }
  const pulled = await reg.fetch(`/v2/wire/chunked/blobs/${digest}`);
  assert.deepEqual(new Uint8Array(await pulled.arrayBuffer()), bytes);
});

Deno.test("a malformed or cut chunked body is a plain 400 from the server; the session stays at its last offset", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  const first = randomBytes(100);
  const cases: [string, string | Uint8Array, boolean][] = [
    ["size is not hex", "zz\r\nabc\r\n0\r\n\r\n", false],
    ["data longer than its size", "3\r\nabcdef\r\n0\r\n\r\n", false],
    ["size line with a bare LF", "3\nabc\r\n0\r\n\r\n", false],
    ["size too large to be real", "1000000000000000\r\nabc", false],
    ["whitespace after the size without an extension", "3 \r\nabc\r\n0\r\n\r\n", false],
    [
      "the client closes in the middle",
      concat(encoder.encode("8000\r\n"), randomBytes(5000)),
      true,
    ],
  ];
  for (const [what, body, end] of cases) {
    const { location } = await startUpload(reg, "wire/bad");
    const ack = await reg.fetch(location, {
      method: "PATCH",
      headers: { "Content-Range": "0-99" },
      body: first,
    });
    await ack.body?.cancel();
    assert.equal(ack.status, 202);
    const raw = await exchange(port, [
      `PATCH ${location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`,
      body,
    ], { end });
    const [answer, ...more] = parseAnswers(raw);
    assertPlainRefusal(answer, 400, what);
    assert.deepEqual(more, [], what);
    const status = await reg.fetch(location);
    await status.body?.cancel();
    assert.equal(status.status, 204, what);
    assert.equal(status.headers.get("range"), "0-99", what);
  }
});

Deno.test("framing that could smuggle a request is refused with a plain 400 and the connection closes", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  // If a framing were misread, the body would run as a second request creating a session.
  const smuggled = "POST /v2/wire/smuggled/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n" +
    "Content-Length: 0\r\n\r\n";
  const heads = [
    `Content-Length: ${smuggled.length}\r\nTransfer-Encoding: chunked`,
    `Transfer-Encoding: chunked\r\nContent-Length: ${smuggled.length}`,
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, identity",
    "Transfer-Encoding: xchunked",
    `Content-Length: ${smuggled.length}\r\nContent-Length: 0`,
    `Content-Length: +${smuggled.length}`,
    `Content-Length: 0x${smuggled.length.toString(16)}`,
    `Content-Length : ${smuggled.length}`,
    `X-Folded: a\r\n Content-Length: ${smuggled.length}`,
    `X-Nul: a\0b\r\nContent-Length: ${smuggled.length}`,
  ];
  for (const head of heads) {
    const raw = await exchange(port, [
      `POST /v2/wire/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n${head}\r\n\r\n${smuggled}`,
    ]);
    const answers = parseAnswers(raw);
    assert.equal(answers.length, 1, `${JSON.stringify(head)}: one answer only`);
    assertPlainRefusal(answers[0], 400, JSON.stringify(head));
  }
  // Neither request ran: no upload session exists.
  assert.deepEqual([...Deno.readDirSync(join(reg.dataDir, "uploads"))], []);

  const malformed: [string, number][] = [
    ["GET /v2/ HTTP/1.1\r\n\r\n", 400], // no Host
    ["GET /v2/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400],
    ["GET /v2/ HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400],
    ["GET /v2/ HTTP/1.1\nHost: x\n\n", 400], // bare LF
    ["GET /v2/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
    ["GET  /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /v2/ HTTP/2.0\r\nHost: x\r\n\r\n", 400],
    ["GARBAGE\r\n\r\n", 400],
    ["GET /v2/ HTTP/1.1\r\nHost: a/b\r\n\r\n", 400],
    ["GET /v2/_catalog?n=1 HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400],
    ["GET http://[::1/v2/_catalog?n=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /v2/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400],
    ["GET /v2/ HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", 417],
    [
      `GET /v2/ HTTP/1.1\r\nHost: x\r\n${
        Array.from({ length: 101 }, (_, i) => `X-${i}: v\r\n`).join("")
      }\r\n`,
      431,
    ],
    [`GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Huge: ${"a".repeat(1024 * 1024)}\r\n\r\n`, 431],
  ];
  for (const [request, status] of malformed) {
    const what = JSON.stringify(request.slice(0, 100));
    const [answer, ...more] = parseAnswers(await exchange(port, [request]));
    assertPlainRefusal(answer, status, what);
    assert.equal(answer.headers.get("docker-distribution-api-version"), undefined, what);
    assert.deepEqual(more, [], what);
  }
});

Deno.test("pipelined requests are answered in order on one connection; HEAD carries no body", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  const bytes = randomBytes(200_000);
  const digest = await sha256Digest(bytes);
  const { location } = await startUpload(reg, "wire/pipe");
  const put = `PUT ${location}?digest=${digest} HTTP/1.1\r\nHost: x\r\n` +
    `Content-Length: ${bytes.length}\r\n\r\n`;
  const get = (path: string, method = "GET", extra = "") =>
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${extra}\r\n`;
  const raw = await exchange(port, [
    concat(
      encoder.encode(put),
      bytes,
      encoder.encode(
        get(`/v2/wire/pipe/blobs/${digest}`, "HEAD") +
          get(`/v2/wire/pipe/blobs/${digest}`) +
          get(`/v2/wire/pipe/blobs/${digest}`, "GET", "Range: bytes=10-19\r\n") +
          get("/v2/wire/pipe/blobs/sha256:" + "0".repeat(64), "HEAD") +
          get("/v2/", "GET", "Connection: close\r\n"),
      ),
    ),
  ]);
  const answers = parseAnswers(raw, [false, true, false, false, true, false]);
  assert.deepEqual(answers.map((a) => a.status), [201, 200, 200, 206, 404, 200]);
  assert.equal(answers[1].headers.get("content-length"), String(bytes.length));
  assert.equal(answers[1].body.length, 0);
  assert.deepEqual(answers[2].body, bytes);
  assert.deepEqual(answers[3].body, bytes.subarray(10, 20));
  assert.equal(answers[5].headers.get("connection"), "close");
  for (const answer of answers) {
    assert.equal(answer.headers.get("docker-distribution-api-version"), "registry/2.0");
    assert.equal(answer.headers.get("content-encoding"), undefined);
  }
});

Deno.test("Expect: 100-continue gets a 100 once the body is wanted; a refusal comes without one", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  const bytes = randomBytes(50_000);
  const digest = await sha256Digest(bytes);
  const { location } = await startUpload(reg, "wire/expect");

  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = `PUT ${location}?digest=${digest} HTTP/1.1\r\nHost: x\r\n` +
      `Content-Length: ${bytes.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`;
    await conn.write(encoder.encode(head));
    const buffer = new Uint8Array(1024);
    const n = await conn.read(buffer);
    assert.equal(decoder.decode(buffer.subarray(0, n ?? 0)), "HTTP/1.1 100 Continue\r\n\r\n");
    for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    const received: Uint8Array[] = [];
    while (true) {
      const got = await conn.read(buffer);
      if (got === null) break;
      received.push(buffer.slice(0, got));
    }
    const [answer] = parseAnswers(concat(...received));
    assert.equal(answer.status, 201);
    assert.equal(answer.headers.get("docker-content-digest"), digest);
  } finally {
    conn.close();
  }

  // A PATCH to an unknown session is refused before its body is read: no 100, and the
  // connection closes (the client never sent the body it was waiting to send).
  const raw = await exchange(port, [
    `PATCH /v2/wire/expect/blobs/uploads/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\n` +
    `Host: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`,
  ]);
  const answers = parseAnswers(raw);
  assert.deepEqual(answers.map((a) => a.status), [404]);
  assert.equal(answers[0].headers.get("connection"), "close");
});

Deno.test("a small unread body is drained and the connection reused; a large one closes it after the answer", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  const unknown = "/v2/wire/drain/blobs/uploads/00000000-0000-4000-8000-000000000000";
  const small = randomBytes(10_000);
  const raw = await exchange(port, [
    concat(
      encoder.encode(
        `PATCH ${unknown} HTTP/1.1\r\nHost: x\r\nContent-Length: ${small.length}\r\n\r\n`,
      ),
      small,
      encoder.encode(`PATCH ${unknown} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`),
      chunkedEncoding(small),
      encoder.encode("GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ),
  ]);
  assert.deepEqual(parseAnswers(raw).map((a) => a.status), [404, 404, 200]);

  const large = randomBytes(3 * 1024 * 1024);
  const after = await exchange(port, [
    `PATCH ${unknown} HTTP/1.1\r\nHost: x\r\nContent-Length: ${large.length}\r\n\r\n`,
    large,
    "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
  ]);
  const answers = parseAnswers(after);
  assert.deepEqual(answers.map((a) => a.status), [404]);
  assert.equal(answers[0].headers.get("connection"), "close");
});

Deno.test("HTTP/1.0: no Host needed, closes unless keep-alive is asked", async () => {
  await using reg = await tempRegistry();
  const port = portOf(reg.url);
  const closes = parseAnswers(await exchange(port, ["GET /v2/ HTTP/1.0\r\n\r\n"]));
  assert.deepEqual(closes.map((a) => a.status), [200]);
  assert.equal(closes[0].headers.get("connection"), "close");
  const kept = parseAnswers(
    await exchange(port, [
      "GET /v2/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v2/_catalog HTTP/1.0\r\n\r\n",
    ]),
  );
  assert.deepEqual(kept.map((a) => a.status), [200, 200]);
  assert.equal(kept[0].headers.get("connection"), "keep-alive");
});

Deno.test("--server deno: the same app on Deno.serve takes a chunked push and serves it", async () => {
  await using reg = await tempRegistry({ config: { server: "deno" } });
  const bytes = randomBytes(100_000);
  const digest = await sha256Digest(bytes);
  const { location } = await startUpload(reg, "wire/fallback");
  const patched = await reg.fetch(location, {
    method: "PATCH",
    body: ReadableStream.from([bytes.subarray(0, 40_000), bytes.subarray(40_000)]),
  });
  await patched.body?.cancel();
  assert.equal(patched.status, 202);
  const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT" });
  await put.body?.cancel();
  assert.equal(put.status, 201);
  const range = await reg.fetch(`/v2/wire/fallback/blobs/${digest}`, {
    headers: { Range: "bytes=5-99999" },
  });
  assert.equal(range.status, 206);
  assert.deepEqual(new Uint8Array(await range.arrayBuffer()), bytes.subarray(5));
});
