/**
 * The built-in server's connection limit (`maxConnections`): at the limit a connection idle
 * long enough is closed to make room for a new one; while none is, and while every connection
 * is in the middle of a request, new connections wait in the listen queue until a place frees.
 */

import assert from "node:assert/strict";
import { serveHttp1 } from "../../src/server/mod.ts";
import type { Handler, Http1Server } from "../../src/server/mod.ts";
import { readResponse, writeAllTo } from "../helpers/raw_http.ts";

const ASK = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/** A handler answering 200 after reading the whole request body; `entered` counts its calls. */
function counting(): { handler: Handler; entered: (n: number) => Promise<void> } {
  let calls = 0;
  const waiters: (() => void)[] = [];
  const handler: Handler = async (_request, body) => {
    calls++;
    waiters.splice(0).forEach((wake) => wake());
    if (body !== null) {
      const buffer = new Uint8Array(64 * 1024);
      while ((await body.read(buffer)).length > 0) { /* drain */ }
    }
    return { status: 200, headers: [["Content-Length", "0"]], body: null };
  };
  const entered = async (n: number) => {
    while (calls < n) await new Promise<void>((wake) => waiters.push(wake));
  };
  return { handler, entered };
}

const handler = counting().handler;

function connect(port: number): Promise<Deno.Conn> {
  return Deno.connect({ hostname: "127.0.0.1", port });
}

/** Sends a GET on `conn` and returns the status of its answer (null: the connection closed). */
async function statusOf(conn: Deno.Conn): Promise<number | null> {
  if (!(await writeAllTo(conn, ASK))) return null;
  return (await readResponse(conn, 5000))?.status ?? null;
}

/** Closes the connections (those still open) and shuts the server down. */
async function closeAll(server: Http1Server, conns: Deno.Conn[]): Promise<void> {
  for (const conn of conns) {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  await server.shutdown();
}

/** Whether `reading` settles within `ms`. */
async function settlesWithin(reading: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    reading.then(() => true, () => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms)),
  ]);
  clearTimeout(timer);
  return outcome;
}

Deno.test("at the limit the connection idle longest is closed for a new one once idle evictIdleMs; the others stay", async () => {
  const server = serveHttp1(
    { hostname: "127.0.0.1", port: 0, maxConnections: 2, evictIdleMs: 200 },
    handler,
  );
  const port = server.addr.port;
  const [a, b] = [await connect(port), await connect(port)];
  try {
    assert.equal(await statusOf(a), 200); // a goes idle first
    assert.equal(await statusOf(b), 200);
    const c = await connect(port);
    try {
      assert.equal(await statusOf(c), 200);
      // a was closed to make room (its read ends, with nothing); b, idle less long, still serves
      assert.equal(await readResponse(a, 5000), null);
      assert.equal(await statusOf(b), 200);
    } finally {
      c.close();
    }
  } finally {
    a.close();
    b.close();
    await server.shutdown();
  }
});

Deno.test("at the limit a connection idle for less than evictIdleMs keeps its place; the new one waits", async () => {
  const server = serveHttp1(
    { hostname: "127.0.0.1", port: 0, maxConnections: 2, evictIdleMs: 60_000 },
    handler,
  );
  const port = server.addr.port;
  const [a, b] = [await connect(port), await connect(port)];
  const c = await connect(port);
  try {
    assert.equal(await statusOf(a), 200);
    assert.equal(await statusOf(b), 200);
    await writeAllTo(c, ASK);
    const answered = readResponse(c, 10_000);
    assert.equal(await settlesWithin(answered, 500), false, "served beside two idle connections");
    assert.equal(await statusOf(b), 200, "the idle ones still serve");
    a.close();
    assert.equal((await answered)?.status, 200);
  } finally {
    await closeAll(server, [a, b, c]);
  }
});

Deno.test("at the limit with every connection in the middle of a request, a new connection waits until one closes", async () => {
  const { handler, entered } = counting();
  const server = serveHttp1(
    { hostname: "127.0.0.1", port: 0, maxConnections: 2, evictIdleMs: 100 },
    handler,
  );
  const port = server.addr.port;
  const [a, b] = [await connect(port), await connect(port)];
  // two uploads under way: their bodies stop halfway
  for (const conn of [a, b]) {
    await writeAllTo(conn, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345");
  }
  await entered(2);
  const c = await connect(port);
  try {
    await writeAllTo(c, ASK);
    const answered = readResponse(c, 10_000);
    assert.equal(await settlesWithin(answered, 500), false, "served beside two busy connections");
    // one upload ends and its client goes: its place is c's
    await writeAllTo(a, "67890");
    assert.equal((await readResponse(a))?.status, 200);
    a.close();
    assert.equal((await answered)?.status, 200);
    // b's request, unharmed, still completes
    await writeAllTo(b, "67890");
    assert.equal((await readResponse(b))?.status, 200);
  } finally {
    await closeAll(server, [a, b, c]);
  }
});

Deno.test("shutdown ends an accept loop waiting at the limit; the connection it held is closed unanswered", async () => {
  const { handler, entered } = counting();
  const lines: string[] = [];
  const server = serveHttp1(
    { hostname: "127.0.0.1", port: 0, maxConnections: 1, log: (line) => lines.push(line) },
    handler,
  );
  const a = await connect(server.addr.port);
  const waiting = await connect(server.addr.port);
  try {
    await writeAllTo(a, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345");
    await entered(1); // a request in flight: the shutdown lets it finish
    await writeAllTo(waiting, ASK);
    // the server has accepted the second connection and holds it at the limit
    for (let i = 0; i < 250 && !lines.some((l) => l.includes("limit reached")); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(lines.some((l) => l.includes("limit reached")), lines.join("\n"));
    const stopped = server.shutdown();
    await writeAllTo(a, "67890");
    assert.equal((await readResponse(a))?.status, 200);
    assert.equal(await settlesWithin(stopped, 5000), true, "shutdown waited for a place");
    assert.equal(await readResponse(waiting, 5000), null, "the held connection was answered");
  } finally {
    a.close();
    waiting.close();
  }
});
