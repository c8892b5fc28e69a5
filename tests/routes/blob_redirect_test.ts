/**
 * Blob GETs on a driver that presigns (as S3 does, `signedUrl`): 307 to the driver's URL, from
 * which the bytes come (whole or a Range); HEAD answered by the registry without reading the
 * bytes and without a redirect; `storage.redirect.disable` streams them (with Range) instead;
 * an unknown or unlinked blob is still 404. The presigning driver here is the memory driver
 * with a small local file server standing for the bucket.
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import type { ObjectReader, Span } from "../../src/storage/driver.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { memoryRegistry, pushBlob, randomBytes, sha256Digest } from "../helpers/registry.ts";

/** The memory driver with presigned URLs served by a local server; counts byte reads. */
class PresigningDriver extends MemoryDriver {
  reads = 0;
  signed: { key: string; expires: number }[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor() {
    super();
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const key = decodeURIComponent(new URL(req.url).pathname.slice(1));
      const bytes = await this.get(key); // not counted: the "bucket" serving the bytes
      if (bytes === null) return new Response("no such key", { status: 404 });
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get("range") ?? "");
      if (!m) return new Response(bytes);
      return new Response(bytes.slice(Number(m[1]), Number(m[2]) + 1), { status: 206 });
    });
  }

  readonly signedUrl = (key: string, expiresInSeconds: number): Promise<string> => {
    this.signed.push({ key, expires: expiresInSeconds });
    return Promise.resolve(
      `http://127.0.0.1:${this.#server.addr.port}/${encodeURIComponent(key)}?sig=test`,
    );
  };

  override read(key: string, span?: Span): Promise<ObjectReader | null> {
    if (key.startsWith("blobs/")) this.reads++;
    return super.read(key, span);
  }

  close(): Promise<void> {
    return this.#server.shutdown();
  }
}

Deno.test("a blob GET redirects to the driver's presigned URL; HEAD reads no bytes", async () => {
  const driver = new PresigningDriver();
  try {
    await using reg = await memoryRegistry({ driver });
    const bytes = randomBytes(50_000);
    const digest = await pushBlob(reg, "team/app", bytes);
    driver.reads = 0;
    const head = await reg.fetch(`/v2/team/app/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("location"), null);
    assert.equal(head.headers.get("content-length"), String(bytes.length));
    assert.equal(head.headers.get("docker-content-digest"), digest);
    const get = await reg.fetch(`/v2/team/app/blobs/${digest}`, {
      headers: { range: "bytes=100-199" },
    });
    assert.equal(get.status, 307);
    await get.body?.cancel();
    assert.equal(get.headers.get("docker-content-digest"), digest);
    // conditions are the bucket's to answer: still the redirect (RFC 9110 §13.2.1)
    const conditional = await reg.fetch(`/v2/team/app/blobs/${digest}`, {
      headers: { "if-none-match": `"${digest}"` },
    });
    await conditional.body?.cancel();
    assert.equal(conditional.status, 307);
    driver.signed.pop();
    assert.equal(driver.reads, 0, "neither HEAD nor the redirect read the blob");
    assert.deepEqual(driver.signed.map((s) => s.expires), [1200]);
    assert.match(driver.signed[0].key, new RegExp(`${digest.slice(7)}`));
    const location = get.headers.get("location")!;
    const whole = await fetch(location);
    assert.equal(await sha256Digest(new Uint8Array(await whole.arrayBuffer())), digest);
    const part = await fetch(location, { headers: { range: "bytes=100-199" } });
    assert.equal(part.status, 206);
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.slice(100, 200));
    // unknown here: no redirect, no URL signed
    const other = await pushBlob(reg, "team/other", randomBytes(10));
    const unknown = await reg.fetch(`/v2/team/app/blobs/${other}`);
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
    assert.equal(driver.signed.length, 1);
  } finally {
    await driver.close();
  }
});

Deno.test("storage.redirect.disable streams the blob, with Range, on a presigning driver", async () => {
  const driver = new PresigningDriver();
  try {
    await using reg = await memoryRegistry({
      driver,
      config: { ...DEFAULTS, redirectDisabled: true },
    });
    const bytes = randomBytes(20_000);
    const digest = await pushBlob(reg, "team/app", bytes);
    const get = await reg.fetch(`/v2/team/app/blobs/${digest}`);
    assert.equal(get.status, 200);
    assert.equal(await sha256Digest(new Uint8Array(await get.arrayBuffer())), digest);
    const part = await reg.fetch(`/v2/team/app/blobs/${digest}`, {
      headers: { range: "bytes=1000-1999" },
    });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 1000-1999/${bytes.length}`);
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.slice(1000, 2000));
    assert.deepEqual(driver.signed, []);
  } finally {
    await driver.close();
  }
});

Deno.test("with metrics on, the timed driver still presigns (the redirect stays)", async () => {
  const driver = new PresigningDriver();
  try {
    await using reg = await memoryRegistry({
      driver,
      config: { ...DEFAULTS, metrics: { enabled: true, path: "/metrics" } },
    });
    const digest = await pushBlob(reg, "team/app", randomBytes(1000));
    const get = await reg.fetch(`/v2/team/app/blobs/${digest}`);
    assert.equal(get.status, 307);
    await get.body?.cancel();
    assert.equal(driver.signed.length, 1);
  } finally {
    await driver.close();
  }
});
