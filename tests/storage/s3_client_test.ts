/**
 * The S3 client's retries, against a scripted fake server on a raw socket: idempotent
 * requests are sent again after 5xx, 429 and connection resets (with the same body), others
 * are not; a 4xx is never retried; bodies carry a Content-MD5 the server can check.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { S3Client, S3Error } from "../../src/storage/drivers/s3_client.ts";

/** What the fake does with one request: answer a status, or reset the connection. */
type Action = number | "reset";

interface Seen {
  readonly method: string;
  readonly target: string;
  readonly headers: Map<string, string>;
  readonly body: Uint8Array;
}

/** A fake S3 server answering each request with the next action; 200 when none is left. */
async function withFake(
  actions: Action[],
  fn: (client: S3Client, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Seen[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      try {
        const request = await readRequest(conn);
        if (request === null) continue;
        seen.push(request);
        const action = actions.shift() ?? 200;
        if (action === "reset") continue; // closed in finally, no reply
        const body = action === 200
          ? ""
          : `<?xml version="1.0"?><Error><Code>Fake${action}</Code></Error>`;
        const reply = `HTTP/1.1 ${action} X\r\ncontent-length: ${body.length}\r\n` +
          `etag: "e"\r\nconnection: close\r\n\r\n${body}`;
        await conn.write(new TextEncoder().encode(reply));
      } finally {
        conn.close();
      }
    }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  const client = new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    bucket: "b",
    accessKey: "ak",
    secretKey: "sk",
    region: "us-east-1",
    attempts: 4,
  });
  try {
    await fn(client, seen);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
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

Deno.test("s3 client: retries stop after the last attempt and the error is reported", async () => {
  await withFake([503, 503, 503, 503, 503], async (client, seen) => {
    await assert.rejects(client.headObject("k"), (e) => e instanceof S3Error && e.status === 503);
    assert.equal(seen.length, 4);
  });
  await withFake(["reset", "reset", "reset", "reset"], async (client, seen) => {
    await assert.rejects(client.headObject("k"), TypeError);
    assert.equal(seen.length, 4);
  });
});

Deno.test("s3 client: a 4xx and a non-idempotent request are not retried", async () => {
  await withFake([403], async (client, seen) => {
    await assert.rejects(client.headObject("k"), (e) => e instanceof S3Error && e.status === 403);
    assert.equal(seen.length, 1);
  });
  await withFake([503], async (client, seen) => {
    await assert.rejects(
      client.createMultipart("k"),
      (e) => e instanceof S3Error && e.status === 503,
    );
    assert.equal(seen.length, 1, "CreateMultipartUpload is sent once");
  });
});
