/**
 * The pipeline's steps as a client sees them, over the app without a socket: the access log
 * line and what it never contains, the request id, `http.headers`, absolute `Location`s from
 * `http.host` or a trusted proxy, read-only mode and disabled deletes.
 */

import assert from "node:assert/strict";
import type { Config } from "../../src/config/mod.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { logFields } from "../helpers/clients.ts";
import { memoryRegistry, randomBytes, sha256Digest } from "../helpers/registry.ts";
import { StorageUnavailable } from "../../src/storage/driver.ts";
import { errorOf, pushImage, status } from "../services/fixtures.ts";

Deno.test("access log: one line per request with route, repository, status, sizes, duration; no credentials", async () => {
  await using reg = await memoryRegistry({ config: { logRequests: true } });
  const bytes = randomBytes(1234);
  const before = reg.logs.length;
  const start = await reg.fetch("/v2/team/app/blobs/uploads/", {
    method: "POST",
    headers: { Authorization: "Basic c2VjcmV0OnNlY3JldA==", "User-Agent": "tester/1.0" },
  });
  await start.body?.cancel();
  const location = start.headers.get("location")!;
  const patch = await reg.fetch(location, { method: "PATCH", body: bytes });
  await patch.body?.cancel();
  const lines = reg.logs.slice(before);
  const entries = lines.map(logFields).filter((f) => f.msg === "request");
  assert.equal(entries.length, 2, lines.join("\n"));
  const [post, chunk] = entries;
  assert.equal(post.method, "POST");
  assert.equal(post.route, "blob_upload");
  assert.equal(post.repository, "team/app");
  assert.equal(post.status, "202");
  assert.equal(post.user_agent, "tester/1.0");
  assert.equal(post.request_id, start.headers.get("x-request-id"));
  assert.match(post.duration_ms, /^[0-9.]+$/);
  assert.equal(chunk.route, "blob_upload_chunk");
  assert.equal(chunk.bytes_in, "1234");
  assert.ok(!lines.join("\n").includes("c2VjcmV0"), "the Authorization value is never logged");
  const mark = reg.logs.length;
  const tokenInQuery = await reg.fetch("/v2/team/app/tags/list?n=5&access_token=s3cr3t");
  await tokenInQuery.body?.cancel();
  const logged = reg.logs.slice(mark).map(logFields).find((f) => f.msg === "request")!;
  assert.equal(logged.path, "/v2/team/app/tags/list?n=5&access_token=***");
});

Deno.test("access log: JSON lines when log.formatter is json; nothing when disabled", async () => {
  {
    await using reg = await memoryRegistry({ config: { logRequests: true, logFormat: "json" } });
    const before = reg.logs.length;
    assert.equal(await status(reg, "/v2/nope/tags/list"), 404);
    const entry = JSON.parse(reg.logs[before]);
    assert.equal(entry.msg, "request");
    assert.equal(entry.route, "tags");
    assert.equal(entry.status, 404);
    assert.equal(entry.level, "info");
  }
  {
    await using reg = await memoryRegistry({ config: { logRequests: false } });
    const before = reg.logs.length;
    assert.equal(await status(reg, "/v2/"), 200);
    assert.equal(reg.logs.length, before);
  }
});

Deno.test("every reply carries a fresh X-Request-Id and the configured http.headers", async () => {
  const config: Partial<Config> = {
    responseHeaders: { "X-Content-Type-Options": ["nosniff"], "X-Extra": ["a", "b"] },
  };
  await using reg = await memoryRegistry({ config });
  const one = await reg.fetch("/v2/");
  const two = await reg.fetch("/v2/missing/manifests/x");
  await one.body?.cancel();
  await two.body?.cancel();
  assert.match(one.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);
  assert.notEqual(one.headers.get("x-request-id"), two.headers.get("x-request-id"));
  assert.equal(two.headers.get("x-content-type-options"), "nosniff");
  assert.equal(two.headers.get("x-extra"), "a, b");
});

Deno.test("Location is absolute under http.host, relative otherwise", async () => {
  {
    await using reg = await memoryRegistry({
      config: { publicUrl: "https://registry.example.com/" },
    });
    const res = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
    await res.body?.cancel();
    assert.match(
      res.headers.get("location")!,
      /^https:\/\/registry\.example\.com\/v2\/app\/blobs\/uploads\/[0-9a-f-]{36}$/,
    );
  }
  {
    await using reg = await memoryRegistry();
    const res = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
    await res.body?.cancel();
    assert.match(res.headers.get("location")!, /^\/v2\/app\/blobs\/uploads\//);
  }
});

Deno.test("behind a trusted proxy, Location uses the scheme and host the client used", async () => {
  await using reg = await memoryRegistry({ config: { trustedProxies: ["10.0.0.0/8"] } });
  const ask = (remoteAddress: string) =>
    reg.app.handle({
      method: "POST",
      // as a transport makes it: the host of the URL is the Host field's
      url: "http://registry.example.com/v2/app/blobs/uploads/",
      headers: new Headers({
        Host: "registry.example.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "198.51.100.7",
      }),
      remoteAddress,
    }, null);
  const viaProxy = await ask("10.1.2.3");
  const location = viaProxy.headers.find(([k]) => k.toLowerCase() === "location")![1];
  assert.match(location, /^https:\/\/registry\.example\.com\/v2\/app\/blobs\/uploads\//);
  const direct = await ask("203.0.113.1");
  const plain = direct.headers.find(([k]) => k.toLowerCase() === "location")![1];
  assert.match(plain, /^\/v2\/app\/blobs\/uploads\//, "an untrusted peer's headers are ignored");
});

Deno.test("read-only mode: pushes and deletes answer 405 UNSUPPORTED saying why; pulls work", async () => {
  const driver = new MemoryDriver();
  {
    await using writable = await memoryRegistry({ driver });
    await pushImage(writable, "app", { reference: "v1" });
  }
  await using reg = await memoryRegistry({ driver, config: { readOnly: true } });
  assert.equal(await status(reg, "/v2/app/manifests/v1"), 200);
  assert.equal(await status(reg, "/v2/app/tags/list"), 200);
  for (
    const [method, path, allow] of [
      ["POST", "/v2/app/blobs/uploads/", ""],
      ["PUT", "/v2/app/manifests/v2", "GET, HEAD"],
      ["DELETE", "/v2/app/manifests/v1", "GET, HEAD"],
      ["PATCH", "/v2/app/blobs/uploads/00000000-0000-4000-8000-000000000000", "GET, HEAD"],
    ]
  ) {
    const res = await reg.fetch(path, { method, body: "{}" });
    assert.equal(res.status, 405, `${method} ${path}`);
    // what the resource still answers (RFC 9110 §15.5.6)
    assert.equal(res.headers.get("allow"), allow, `${method} ${path}`);
    const error = await errorOf(res);
    assert.equal(error.code, "UNSUPPORTED");
    assert.match(error.message, /read-only/);
  }
  assert.equal(await status(reg, "/v2/app/manifests/v1"), 200, "nothing was deleted");
});

Deno.test("deletes disabled: manifest, tag and blob DELETE answer 405; cancelling an upload works", async () => {
  await using reg = await memoryRegistry({ config: { deleteEnabled: false } });
  const image = await pushImage(reg, "app", { reference: "v1" });
  for (
    const [path, allow] of [
      ["/v2/app/manifests/v1", "PUT, GET, HEAD"],
      [`/v2/app/manifests/${image.digest}`, "PUT, GET, HEAD"],
      [`/v2/app/blobs/${image.layers[0].digest}`, "HEAD, GET"],
    ]
  ) {
    const res = await reg.fetch(path, { method: "DELETE" });
    assert.equal(res.status, 405, path);
    assert.equal(res.headers.get("allow"), allow, path);
    const error = await errorOf(res);
    assert.equal(error.code, "UNSUPPORTED");
    assert.match(error.message, /[Dd]eletes are disabled/);
  }
  const start = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
  await start.body?.cancel();
  assert.equal(await status(reg, start.headers.get("location")!, { method: "DELETE" }), 204);
  assert.equal(await status(reg, "/v2/app/manifests/v1"), 200);
});

/** A memory driver whose every call fails as an unreachable storage service while `down`. */
class OutageDriver extends MemoryDriver {
  down = false;

  override stat(key: string) {
    if (this.down) return Promise.reject(new StorageUnavailable("S3: 503 SlowDown, 4 attempts"));
    return super.stat(key);
  }

  override put(key: string, bytes: Uint8Array | string) {
    if (this.down) return Promise.reject(new StorageUnavailable("S3: connection reset"));
    return super.put(key, bytes);
  }
}

Deno.test("an unavailable storage service gives 503 with Retry-After and an OCI error, then heals", async () => {
  const driver = new OutageDriver();
  await using reg = await memoryRegistry({ driver });
  const bytes = randomBytes(100);
  const digest = await sha256Digest(bytes);
  const push = await reg.fetch(`/v2/team/app/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: bytes,
  });
  assert.equal(push.status, 201, await push.text());
  driver.down = true;
  const head = await reg.fetch(`/v2/team/app/blobs/${digest}`, { method: "HEAD" });
  assert.equal(head.status, 503);
  assert.equal(head.headers.get("retry-after"), "1");
  const put = await reg.fetch(`/v2/team/app/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: bytes,
  });
  assert.equal(put.status, 503);
  assert.equal(put.headers.get("retry-after"), "1");
  const body = await put.json();
  assert.equal(body.errors[0].code, "UNKNOWN");
  assert.match(body.errors[0].message, /unavailable/);
  assert.ok(!JSON.stringify(body).includes("SlowDown"), "the cause stays in the log");
  driver.down = false;
  const again = await reg.fetch(`/v2/team/app/blobs/${digest}`, { method: "HEAD" });
  assert.equal(again.status, 200);
  assert.equal(again.headers.get("content-length"), "100");
});
