/**
 * The S3 client's failure handling, against a scripted fake server on a raw socket: requests
 * are sent again after 5xx, 429, connection resets and stalls (with the same body), with the
 * last failure reported as StorageUnavailable; a 4xx is never retried; a body cut short is
 * resumed from where it broke; bodies carry a Content-MD5 the server can check; a large PUT
 * body, or one read from a writer's spill file, goes with its Content-Length, never chunked.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { createServer, type Socket } from "node:net";
import { StorageUnavailable } from "../../src/storage/driver.ts";
import { S3Client, S3Error } from "../../src/storage/drivers/s3_client.ts";
import { SpillFile } from "../../src/storage/drivers/s3_spill.ts";

/**
 * What the fake does with one request: answer a status (an error body unless 200), reset the
 * connection, stall (read the request, never answer), or answer a reply whose body may stop
 * after `cut` bytes (then the connection is reset, or held open when `hang`).
 */
type Action = number | "reset" | "stall" | Reply | { readonly raw: string };

interface Reply {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body: Uint8Array;
  readonly cut?: number;
  readonly hang?: boolean;
}

interface Seen {
  readonly method: string;
  readonly target: string;
  readonly headers: Map<string, string>;
  readonly body: Uint8Array;
}

const encoder = new TextEncoder();

/** A fake S3 server answering each request with the next action; 200 when none is left. */
async function withFake(
  actions: Action[],
  fn: (client: S3Client, seen: Seen[]) => Promise<void>,
  options: { timeoutSeconds?: number } = {},
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Seen[] = [];
  const open = new Set<Deno.Conn>();
  const handle = async (conn: Deno.Conn) => {
    let keep = false;
    open.add(conn);
    try {
      const request = await readRequest(conn);
      if (request === null) return;
      seen.push(request);
      const action = actions.shift() ?? 200;
      if (action === "reset") return; // closed in finally, no reply
      if (action === "stall") {
        keep = true; // held open until the end
        return;
      }
      if (typeof action === "object" && "raw" in action) {
        await writeAll(conn, encoder.encode(action.raw)); // these bytes, then the close
        return;
      }
      const reply: Reply = typeof action === "number"
        ? {
          status: action,
          headers: { etag: '"e"' },
          body: encoder.encode(
            action === 200 ? "" : `<?xml version="1.0"?><Error><Code>Fake${action}</Code></Error>`,
          ),
        }
        : action;
      const headers = Object.entries({
        "content-length": String(reply.body.length),
        connection: "close",
        ...reply.headers,
      }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      await conn.write(encoder.encode(`HTTP/1.1 ${reply.status} X\r\n${headers}\r\n`));
      await writeAll(conn, reply.body.subarray(0, reply.cut ?? reply.body.length));
      if (reply.cut !== undefined && reply.hang) keep = true; // held open until the end
    } finally {
      if (!keep) {
        open.delete(conn);
        conn.close();
      }
    }
  };
  const serving = (async () => {
    const handlers: Promise<void>[] = [];
    for await (const conn of listener) handlers.push(handle(conn).catch(() => {}));
    await Promise.all(handlers);
  })();
  const { port } = listener.addr as Deno.NetAddr;
  const client = fakeClient(port, options.timeoutSeconds ?? 30);
  try {
    await fn(client, seen);
  } finally {
    listener.close();
    // every connection still open (held, or one a request never came on) is closed
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // closed meanwhile
      }
    }
    await serving.catch(() => {});
  }
}

/** A client of a fake on `port`: four attempts, 10 ms backoff. */
function fakeClient(port: number, timeoutSeconds: number): S3Client {
  return new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    bucket: "b",
    accessKey: "ak",
    secretKey: "sk",
    region: "us-east-1",
    attempts: 4,
    backoffMs: 10,
    timeoutSeconds,
  });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Reads one HTTP/1.1 request (headers and a Content-Length body); null on EOF. */
async function readRequest(conn: Deno.Conn): Promise<Seen | null> {
  let data = new Uint8Array(0);
  const buf = new Uint8Array(65536);
  const decoder = new TextDecoder();
  let headEnd = -1;
  for (;;) {
    if (headEnd < 0) headEnd = decoder.decode(data).indexOf("\r\n\r\n");
    if (headEnd >= 0) {
      const head = decoder.decode(data.subarray(0, headEnd)).split("\r\n");
      const headers = new Map(
        head.slice(1).map((line) => {
          const at = line.indexOf(":");
          return [line.slice(0, at).toLowerCase(), line.slice(at + 1).trim()] as [string, string];
        }),
      );
      const length = Number(headers.get("content-length") ?? 0);
      if (data.length >= headEnd + 4 + length) {
        const [method, target] = head[0].split(" ");
        return {
          method,
          target,
          headers,
          body: data.slice(headEnd + 4, headEnd + 4 + length),
        };
      }
    }
    const n = await conn.read(buf);
    if (n === null) return null;
    const grown = new Uint8Array(data.length + n);
    grown.set(data);
    grown.set(buf.subarray(0, n), data.length);
    data = grown;
  }
}

Deno.test("s3 client: an idempotent request is retried after 5xx, 429 and a connection reset", async () => {
  await withFake([503, "reset", 429], async (client, seen) => {
    assert.notEqual(await client.headObject("k"), null);
    assert.equal(seen.length, 4);
    assert.ok(seen.every((r) => r.method === "HEAD" && r.target === "/b/k"));
  });
});

Deno.test("s3 client: a retried PUT sends the same body with its Content-MD5", async () => {
  const body = new Uint8Array(100_000).map((_, i) => i % 256);
  await withFake([500], async (client, seen) => {
    const response = await client.putObject("a/b", body);
    assert.equal(response.status, 200);
    assert.equal(seen.length, 2);
    const md5 = createHash("md5").update(body).digest("base64");
    for (const request of seen) {
      assert.deepEqual(request.body, body);
      assert.equal(request.headers.get("content-md5"), md5);
    }
  });
});

Deno.test("s3 client: a PUT of a MiB or more is sent from the bytes with its Content-Length, and retried", async () => {
  const bytes = new Uint8Array(2 * 1024 * 1024 + 7).map((_, i) => (i * 31 + (i >> 9)) % 256);
  await withFake([503, "reset"], async (client, seen) => {
    assert.equal(await client.uploadPart("k", "u1", 3, bytes), '"e"');
    assert.equal(seen.length, 3);
    const md5 = createHash("md5").update(bytes).digest("base64");
    for (const request of seen) {
      assert.equal(request.method, "PUT");
      assert.equal(request.target, "/b/k?partNumber=3&uploadId=u1");
      assert.equal(request.headers.get("content-length"), String(bytes.length));
      assert.equal(request.headers.has("transfer-encoding"), false);
      assert.equal(request.headers.get("content-md5"), md5);
      assert.match(request.headers.get("authorization") ?? "", /^AWS4-HMAC-SHA256 /);
      assert.deepEqual(request.body, bytes);
    }
  });
});

Deno.test("s3 client: a body read from a spill file goes with its Content-Length and MD5, read again when retried", async () => {
  const bytes = new Uint8Array(700_001).map((_, i) => (i * 13 + (i >> 11)) % 256);
  const file = await SpillFile.open();
  try {
    await file.append(bytes.subarray(0, 300_000));
    await file.append(bytes.subarray(300_000));
    await withFake([500, "reset"], async (client, seen) => {
      assert.equal(await client.uploadPart("k", "u1", 2, file.body()), '"e"');
      const response = await client.putObject("t/1", file.body());
      assert.equal(response.status, 200);
      await response.body?.cancel();
      assert.equal(seen.length, 4);
      const md5 = createHash("md5").update(bytes).digest("base64");
      for (const request of seen) {
        assert.equal(request.method, "PUT");
        assert.equal(request.headers.get("content-length"), String(bytes.length));
        assert.equal(request.headers.has("transfer-encoding"), false);
        assert.equal(request.headers.get("content-md5"), md5);
        assert.deepEqual(request.body, bytes);
      }
    });
  } finally {
    file.close();
  }
});

Deno.test("s3 client: a large PUT's reply is read past interim replies and chunks; a cut one is sent again", async () => {
  const bytes = new Uint8Array(1024 * 1024 + 3).fill(7);
  // An unasked-for 100 Continue, then a chunked 200: one request, its ETag read.
  const interim = "HTTP/1.1 100 Continue\r\n\r\n" +
    'HTTP/1.1 200 OK\r\netag: "e1"\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n';
  await withFake([{ raw: interim }], async (client, seen) => {
    assert.equal(await client.uploadPart("k", "u1", 1, bytes), '"e1"');
    assert.equal(seen.length, 1);
  });
  // Replies cut short (fewer bytes than their Content-Length; chunks without the last one):
  // not taken as answers; the part is sent again and that answer counts.
  for (
    const cut of [
      'HTTP/1.1 200 OK\r\netag: "e2"\r\ncontent-length: 50\r\n\r\nshort',
      'HTTP/1.1 200 OK\r\netag: "e3"\r\ntransfer-encoding: chunked\r\n\r\n5\r\nshort\r\n',
    ]
  ) {
    await withFake([{ raw: cut }], async (client, seen) => {
      assert.equal(await client.uploadPart("k", "u1", 2, bytes), '"e"');
      assert.equal(seen.length, 2);
      assert.deepEqual(seen[1].body, bytes);
    });
  }
});

Deno.test("s3 client: after the last attempt the failure is StorageUnavailable", async () => {
  await withFake([503, 503, 503, 503, 503], async (client, seen) => {
    await assert.rejects(
      client.headObject("k"),
      (e) =>
        e instanceof StorageUnavailable && e.cause instanceof S3Error && e.cause.status === 503,
    );
    assert.equal(seen.length, 4);
  });
  await withFake(["reset", "reset", "reset", "reset"], async (client, seen) => {
    await assert.rejects(client.headObject("k"), StorageUnavailable);
    assert.equal(seen.length, 4);
  });
});

Deno.test("s3 client: a 4xx is not retried, nor a request declared not idempotent", async () => {
  await withFake([403], async (client, seen) => {
    await assert.rejects(client.headObject("k"), (e) => e instanceof S3Error && e.status === 403);
    assert.equal(seen.length, 1);
  });
  await withFake([503], async (client, seen) => {
    await assert.rejects(
      client.request("POST", client.url("k", "x"), { idempotent: false }),
      StorageUnavailable,
    );
    assert.equal(seen.length, 1, "sent once");
  });
});

Deno.test("s3 client: a request without an answer is abandoned after the timeout and retried", async () => {
  await withFake(["stall", 200], async (client, seen) => {
    const started = performance.now();
    assert.notEqual(await client.headObject("k"), null);
    assert.equal(seen.length, 2);
    assert.ok(performance.now() - started >= 250, "the stalled attempt waited for the timeout");
  }, { timeoutSeconds: 0.3 });
  await withFake(["stall", "stall", "stall", "stall"], async (client, seen) => {
    const started = performance.now();
    await assert.rejects(client.headObject("k"), StorageUnavailable);
    assert.equal(seen.length, 4);
    assert.ok(performance.now() - started < 10_000, "bounded by attempts × timeout + backoff");
  }, { timeoutSeconds: 0.3 });
});

Deno.test("s3 client: a reply whose body stalls or is cut is read again", async () => {
  const xml = encoder.encode(
    `<?xml version="1.0"?><ListBucketResult><IsTruncated>false</IsTruncated>` +
      `<Contents><Key>a/one</Key><Size>3</Size></Contents></ListBucketResult>`,
  );
  await withFake([
    { status: 200, body: xml, cut: 40, hang: true },
    { status: 200, body: xml, cut: 40 },
    { status: 200, body: xml },
  ], async (client, seen) => {
    const page = await client.listPage("a/");
    assert.deepEqual(page.keys, [{ key: "a/one", size: 3 }]);
    assert.equal(seen.length, 3);
  }, { timeoutSeconds: 0.3 });
});

Deno.test("s3 client: a GetObject body cut or stalled resumes with a range pinned to the ETag", async () => {
  const bytes = new Uint8Array(200_000).map((_, i) => (i * 31) % 256);
  const etag = '"v1"';
  await withFake([
    { status: 200, headers: { etag }, body: bytes, cut: 50_000 },
    {
      status: 206,
      headers: { etag, "content-range": `bytes 50000-199999/200000` },
      body: bytes.subarray(50_000),
      cut: 70_000,
      hang: true,
    },
    {
      status: 206,
      headers: { etag, "content-range": `bytes 120000-199999/200000` },
      body: bytes.subarray(120_000),
    },
  ], async (client, seen) => {
    const response = await client.getObject("big");
    assert.equal(response.status, 200);
    const read = new Uint8Array(await response.arrayBuffer());
    assert.equal(read.length, bytes.length);
    assert.ok(read.every((b, i) => b === bytes[i]), "the bytes are the object's, in order");
    assert.deepEqual(seen.map((r) => r.headers.get("range")), [
      undefined,
      "bytes=50000-199999",
      "bytes=120000-199999",
    ]);
    assert.deepEqual(seen.slice(1).map((r) => r.headers.get("if-match")), [etag, etag]);
  }, { timeoutSeconds: 0.3 });
  // the object was replaced meanwhile: the read fails rather than mix two objects
  await withFake([
    { status: 200, headers: { etag }, body: bytes, cut: 50_000 },
    412,
  ], async (client) => {
    const response = await client.getObject("big");
    await assert.rejects(response.arrayBuffer(), /412/);
  });
});

Deno.test("s3 client: a presigned URL carries the expiry and a signature, and refuses bad lifetimes", async () => {
  await withFake([], async (client) => {
    const url = new URL(await client.presign("a/b c", 60));
    assert.equal(url.pathname, "/b/a/b%20c");
    assert.equal(url.searchParams.get("X-Amz-Expires"), "60");
    assert.equal(url.searchParams.get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    assert.match(url.searchParams.get("X-Amz-Signature") ?? "", /^[0-9a-f]{64}$/);
    await assert.rejects(client.presign("k", 0), RangeError);
    await assert.rejects(client.presign("k", 604801), RangeError);
  });
});

/**
 * One scripted reply of `withNetFake`: the raw head and body bytes, then how the connection
 * ends (`reset`: an RST, as a crashed or overloaded server gives; else a FIN), after `delayMs`.
 */
interface NetReply {
  readonly head: string;
  readonly body: Uint8Array;
  readonly end?: "reset" | "close";
  readonly delayMs?: number;
}

/** A fake on node:net (which can reset a connection), one scripted reply per request. */
async function withNetFake(
  replies: NetReply[],
  fn: (client: S3Client, ranges: (string | undefined)[]) => Promise<void>,
): Promise<void> {
  const ranges: (string | undefined)[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("data", (data) => {
      const head = data.toString("latin1");
      ranges.push(/\r\nrange: *([^\r]*)/i.exec(head)?.[1]);
      const reply = replies.shift();
      if (reply === undefined) return void socket.destroy();
      setTimeout(() => {
        if (socket.destroyed) return;
        socket.write(Buffer.concat([Buffer.from(reply.head, "latin1"), reply.body]), () => {
          // A moment for the bytes to arrive before the end.
          setTimeout(() => reply.end === "reset" ? socket.resetAndDestroy() : socket.end(), 30);
        });
      }, reply.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const client = fakeClient(port, 5);
  try {
    await fn(client, ranges);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}

const objectBytes = new Uint8Array(1000).map((_, i) => (i * 7) % 251);
const whole = (length: number) =>
  `HTTP/1.1 200 OK\r\netag: "v1"\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`;
const partial = (start: number) =>
  `HTTP/1.1 206 Partial Content\r\netag: "v1"\r\ncontent-range: bytes ${start}-999/1000\r\n` +
  `content-length: ${1000 - start}\r\nconnection: close\r\n\r\n`;

Deno.test("s3 client: a streamed GetObject cut by a connection reset resumes where it broke", async () => {
  await withNetFake([
    { head: whole(1000), body: objectBytes.subarray(0, 300), end: "reset" },
    { head: partial(300), body: objectBytes.subarray(300) },
  ], async (client, ranges) => {
    const response = await client.getObject("big", undefined, { direct: true });
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), objectBytes);
    assert.deepEqual(ranges, [undefined, "bytes=300-999"]);
  });
});

Deno.test("s3 client: a streamed GetObject reply without Content-Length is read whole (by fetch), not taken for empty", async () => {
  const noLength = `HTTP/1.1 200 OK\r\netag: "v1"\r\nconnection: close\r\n\r\n`;
  await withNetFake([
    { head: noLength, body: objectBytes },
    { head: noLength, body: objectBytes },
  ], async (client) => {
    const response = await client.getObject("big", undefined, { direct: true });
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), objectBytes);
  });
});

Deno.test("s3 client: a streamed GetObject cancelled while its rest is asked for asks nothing more", async () => {
  await withNetFake([
    { head: whole(1000), body: objectBytes.subarray(0, 300), end: "close" },
    { head: partial(300), body: objectBytes.subarray(300), delayMs: 300 },
    { head: partial(300), body: objectBytes.subarray(300) },
    { head: partial(300), body: objectBytes.subarray(300) },
  ], async (client, ranges) => {
    const response = await client.getObject("big", undefined, { direct: true });
    const reader = response.body!.getReader();
    let got = 0;
    while (got < 300) got += (await reader.read()).value!.length;
    const next = reader.read(); // the cut, then the rest asked for (answered 300 ms later)
    while (ranges.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    await reader.cancel();
    assert.equal((await next).done, true);
    await new Promise((resolve) => setTimeout(resolve, 700)); // the rest came, and was let go
    assert.deepEqual(ranges, [undefined, "bytes=300-999"]);
  });
});
