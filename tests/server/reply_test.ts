/**
 * Replies streamed from any byte source, on real sockets (src/server/reply.ts): with
 * `Content-Length` exactly that many bytes, without it chunked (HTTP/1.1) or close-delimited
 * (HTTP/1.0); a stream that fails, runs short or runs long closes the connection rather than
 * misframe; HEAD never reads a stream. Also the server's own answers to handler failures.
 */

import assert from "node:assert/strict";
import { type Reply, serveHttp1 } from "../../src/server/mod.ts";
import { randomBytes } from "../helpers/registry.ts";
import { concat } from "../helpers/uploads.ts";
import { exchange, parseAnswers, textOf } from "./wire_helpers.ts";

const encoder = new TextEncoder();

/** A stream of the given chunks that records pulls and cancels; `fail` errors after them. */
function recorded(chunks: Uint8Array[], fail = false) {
  const record = { pulls: 0, cancelled: false };
  let index = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      record.pulls++;
      if (index < chunks.length) controller.enqueue(chunks[index++]);
      else if (fail) controller.error(new Error("the source broke"));
      else controller.close();
    },
    cancel() {
      record.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, record };
}

/** Serves `route(path)` for every request; returns the server and what it logged. */
function serveRoutes(route: (path: string) => Reply | Promise<Reply>) {
  const logs: string[] = [];
  const server = serveHttp1(
    { hostname: "127.0.0.1", port: 0, log: (line) => logs.push(line) },
    (request) => Promise.resolve(route(new URL(request.url).pathname)),
  );
  return {
    port: server.addr.port,
    logs,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const get = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

Deno.test("a stream with Content-Length is sent as exactly its bytes, and the connection is kept", async () => {
  const chunks = [randomBytes(10), randomBytes(70_000), randomBytes(5), randomBytes(200_000)];
  const whole = concat(...chunks);
  await using server = serveRoutes((path) => {
    if (path === "/next") return { status: 204, headers: [], body: null };
    const { stream } = recorded(chunks);
    return {
      status: 200,
      headers: [["Content-Length", String(whole.length)], ["X-Kind", "stream"]],
      body: stream,
    };
  });
  const raw = await exchange(server.port, [get("/s") + get("/next", "Connection: close\r\n")]);
  const [answer, next, ...more] = parseAnswers(raw);
  assert.equal(answer.status, 200);
  assert.equal(answer.headers.get("content-length"), String(whole.length));
  assert.equal(answer.headers.get("transfer-encoding"), undefined);
  assert.equal(answer.headers.get("x-kind"), "stream");
  assert.deepEqual(answer.body, whole);
  assert.equal(next.status, 204);
  assert.deepEqual(more, []);
});

Deno.test("a stream without Content-Length is chunked on the wire, empty chunks skipped; fetch reads it", async () => {
  const big = randomBytes(100_000);
  await using server = serveRoutes((path) => {
    const parts = path === "/big"
      ? [big, encoder.encode("tail")]
      : [encoder.encode("hello"), new Uint8Array(0), encoder.encode(" world")];
    return { status: 200, headers: [["Content-Type", "text/plain"]], body: recorded(parts).stream };
  });
  const raw = await exchange(server.port, [get("/small", "Connection: close\r\n")]);
  const text = new TextDecoder().decode(raw);
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  assert.match(text, /\r\nTransfer-Encoding: chunked\r\n/);
  assert.doesNotMatch(text, /Content-Length/i);
  assert.equal(body, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");

  // a chunk larger than the coalescing size goes out in its own write; framing intact
  const [answer] = parseAnswers(
    await exchange(server.port, [get("/big", "Connection: close\r\n")]),
  );
  assert.ok(answer.complete);
  assert.deepEqual(answer.body, concat(big, encoder.encode("tail")));
  const res = await fetch(`http://127.0.0.1:${server.port}/big`);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), concat(big, encoder.encode("tail")));
});

Deno.test("HTTP/1.0: a stream without Content-Length is delimited by the close", async () => {
  await using server = serveRoutes(() => ({
    status: 200,
    headers: [],
    body: recorded([encoder.encode("old "), encoder.encode("client")]).stream,
  }));
  const raw = await exchange(server.port, [
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
  ]);
  const [answer, ...more] = parseAnswers(raw);
  assert.equal(answer.headers.get("connection"), "close");
  assert.equal(answer.headers.get("transfer-encoding"), undefined);
  assert.equal(textOf(answer), "old client");
  assert.deepEqual(more, [], "the close ends the body: the second request is not served");
});

Deno.test("HEAD with a stream: the stream is cancelled unread; the length is kept; the connection too", async () => {
  const streams: ReturnType<typeof recorded>[] = [];
  await using server = serveRoutes(() => {
    const made = recorded([randomBytes(1000)]);
    streams.push(made);
    return { status: 200, headers: [["Content-Length", "1000"]], body: made.stream };
  });
  const raw = await exchange(server.port, [
    "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  ]);
  const answers = parseAnswers(raw, [true, true]);
  assert.deepEqual(answers.map((a) => a.status), [200, 200]);
  assert.equal(answers[0].headers.get("content-length"), "1000");
  assert.deepEqual(answers.map((a) => a.body.length), [0, 0]);
  assert.equal(streams.length, 2);
  for (const { record } of streams) assert.deepEqual(record, { pulls: 0, cancelled: true });
});

Deno.test("a stream that fails midway closes the connection: cut with a length, no last chunk without", async () => {
  await using server = serveRoutes((path) => {
    const { stream } = recorded([randomBytes(1000), randomBytes(2000)], true);
    const headers: [string, string][] = path === "/length" ? [["Content-Length", "5000"]] : [];
    return { status: 200, headers, body: stream };
  });
  for (const path of ["/length", "/chunked"]) {
    const started = Date.now();
    // keep-alive and a second request: the server must close rather than go on
    const raw = await exchange(server.port, [get(path) + get(path)], { timeoutMs: 5000 });
    assert.ok(Date.now() - started < 3000, `${path}: closed at once, no hang`);
    const [answer, ...more] = parseAnswers(raw);
    assert.equal(answer.status, 200, path);
    assert.equal(answer.complete, false, path);
    assert.equal(answer.body.length >= 3000, true, `${path}: what the stream gave was sent`);
    assert.deepEqual(more, [], path);
  }
  assert.equal(server.logs.filter((line) => line.includes("the source broke")).length, 2);
});

Deno.test("a stream that runs short or long of its Content-Length closes the connection", async () => {
  await using server = serveRoutes((path) => {
    const chunks = path === "/short" ? [randomBytes(50)] : [randomBytes(60), randomBytes(60)];
    const exact = path === "/exact-then-more" ? [randomBytes(100), randomBytes(1)] : chunks;
    const { stream } = recorded(exact);
    return { status: 200, headers: [["Content-Length", "100"]], body: stream };
  });
  for (const [path, sent] of [["/short", 50], ["/long", 60], ["/exact-then-more", 100]] as const) {
    const raw = await exchange(server.port, [get(path) + get(path)], { timeoutMs: 5000 });
    const [answer, ...more] = parseAnswers(raw);
    assert.equal(answer.body.length, sent, path);
    assert.equal(answer.complete, sent === 100, path);
    assert.deepEqual(more, [], `${path}: closed after the first reply`);
  }
});

Deno.test("a stream failing before its first byte, or a handler throwing, is a plain 500", async () => {
  await using server = serveRoutes((path) => {
    if (path === "/throw") throw new Error("handler bug");
    const locked = recorded([encoder.encode("x")]).stream;
    if (path === "/locked") locked.getReader();
    return {
      status: 200,
      headers: [],
      body: path === "/locked" ? locked : recorded([], true).stream,
    };
  });
  for (const path of ["/fails", "/locked", "/throw"]) {
    const [answer, ...more] = parseAnswers(await exchange(server.port, [get(path) + get(path)]));
    assert.equal(answer.status, 500, path);
    assert.equal(answer.headers.get("content-type"), "text/plain; charset=utf-8", path);
    assert.equal(answer.headers.get("connection"), "close", path);
    assert.deepEqual(more, [], path);
  }
  assert.equal(server.logs.length, 3, server.logs.join("\n"));
});

Deno.test("bytes and empty bodies: Content-Length from the bytes; 204 and 304 without a body", async () => {
  await using server = serveRoutes((path) => {
    if (path === "/204") return { status: 204, headers: [["Content-Length", "9"]], body: null };
    if (path === "/304") {
      const { stream } = recorded([encoder.encode("no")]);
      return { status: 304, headers: [["Content-Length", "2"]], body: stream };
    }
    // a wrong Content-Length from the handler is not trusted for bytes
    return { status: 200, headers: [["Content-Length", "1"]], body: encoder.encode("bytes!") };
  });
  const raw = await exchange(server.port, [
    get("/204") + get("/304") + get("/", "Connection: close\r\n"),
  ]);
  const answers = parseAnswers(raw);
  assert.deepEqual(answers.map((a) => a.status), [204, 304, 200]);
  assert.equal(answers[0].headers.get("content-length"), undefined);
  assert.equal(answers[1].headers.get("content-length"), "2");
  assert.equal(textOf(answers[2]), "bytes!");
  assert.equal(answers[2].headers.get("content-length"), "6");
});
