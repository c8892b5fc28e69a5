/**
 * The built-in HTTP/1.1 server's timeouts, with the registry on it: a request head left
 * unfinished (408), an idle keep-alive connection, a client that stops reading its reply.
 */

import assert from "node:assert/strict";
import { serveHttp1 } from "../../src/server/mod.ts";
import { portOf } from "../helpers/raw_http.ts";
import { randomBytes, sha256Digest, tempRegistry } from "../helpers/registry.ts";
import { startUpload } from "../helpers/uploads.ts";
import { exchange, parseAnswers, textOf } from "./wire_helpers.ts";

const encoder = new TextEncoder();

Deno.test("a request head left unfinished gets a plain 408 after the head timeout; idle keep-alive connections close", async () => {
  await using reg = await tempRegistry({ config: { bodyIdleTimeoutMs: 300 } });
  const started = Date.now();
  const raw = await exchange(portOf(reg.url), ["GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: "], {
    timeoutMs: 5000,
  });
  const waited = Date.now() - started;
  const [answer, ...more] = parseAnswers(raw);
  assert.equal(answer.status, 408);
  assert.equal(answer.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(answer.headers.get("connection"), "close");
  assert.match(textOf(answer), /in time/);
  assert.deepEqual(more, []);
  assert.ok(waited >= 250 && waited < 4000, `closed after ${waited} ms`);

  const server = serveHttp1(
    { hostname: "127.0.0.1", port: 0, keepAliveTimeoutMs: 300 },
    () => Promise.resolve({ status: 200, headers: [], body: null }),
  );
  try {
    const idleStart = Date.now();
    const answers = parseAnswers(
      await exchange(server.addr.port, ["GET / HTTP/1.1\r\nHost: x\r\n\r\n"], { timeoutMs: 5000 }),
    );
    const idle = Date.now() - idleStart;
    assert.deepEqual(answers.map((a) => a.status), [200]);
    assert.ok(idle >= 250 && idle < 4000, `idle connection closed after ${idle} ms`);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a client that stops reading a response is disconnected after the write timeout", async () => {
  await using reg = await tempRegistry({ config: { bodyIdleTimeoutMs: 400 } });
  const bytes = randomBytes(48 * 1024 * 1024);
  const digest = await sha256Digest(bytes);
  const { location } = await startUpload(reg, "wire/stall");
  const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT", body: bytes });
  await put.body?.cancel();
  assert.equal(put.status, 201);

  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(reg.url) });
  try {
    await conn.write(
      encoder.encode(`GET /v2/wire/stall/blobs/${digest} HTTP/1.1\r\nHost: x\r\n\r\n`),
    );
    await new Promise((resolve) => setTimeout(resolve, 2000)); // read nothing
    let received = 0;
    const buffer = new Uint8Array(1024 * 1024);
    while (true) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      received += n;
    }
    // The server gave up: what reached the socket buffers before it stopped, not the blob.
    assert.ok(received < bytes.length, `received ${received} of ${bytes.length}`);
  } finally {
    conn.close();
  }
  // The registry still serves.
  const head = await reg.fetch(`/v2/wire/stall/blobs/${digest}`, { method: "HEAD" });
  await head.body?.cancel();
  assert.equal(head.status, 200);
});
