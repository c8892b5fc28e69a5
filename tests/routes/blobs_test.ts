import assert from "node:assert/strict";
import { join } from "node:path";
import {
  errorCode,
  pushBlob,
  randomBytes,
  sha256Digest,
  tempRegistry,
} from "../helpers/registry.ts";

const hex = (digest: string) => digest.slice("sha256:".length);

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await listFiles(path));
    else out.push(path);
  }
  return out;
}

Deno.test("GET /v2/ answers 200 {} with the API version header", async () => {
  await using reg = await tempRegistry();
  const res = await reg.fetch("/v2/");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("docker-distribution-api-version"), "registry/2.0");
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.deepEqual(await res.json(), {});
});

Deno.test("POST starts a session: 202, Location, Docker-Upload-UUID, Range 0-0, folder on disk", async () => {
  await using reg = await tempRegistry();
  const res = await reg.fetch("/v2/myorg/myimage/blobs/uploads/", { method: "POST" });
  assert.equal(res.status, 202);
  const uuid = res.headers.get("docker-upload-uuid") ?? "";
  assert.match(uuid, /^[0-9a-f-]{36}$/);
  assert.equal(res.headers.get("location"), `/v2/myorg/myimage/blobs/uploads/${uuid}`);
  assert.equal(res.headers.get("range"), "0-0");
  assert.equal(res.headers.get("docker-distribution-api-version"), "registry/2.0");
  assert.ok((await Deno.stat(join(reg.dataDir, "uploads", uuid))).isDirectory);
});

Deno.test("monolithic PUT stores the blob by digest, links it and ends the session", async (t) => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(300_000);
  const digest = await sha256Digest(bytes);
  const start = await reg.fetch("/v2/myorg/myimage/blobs/uploads/", { method: "POST" });
  const location = start.headers.get("location")!;
  const uuid = start.headers.get("docker-upload-uuid")!;
  const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT", body: bytes });
  await t.step("201 with Location and Docker-Content-Digest", () => {
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("location"), `/v2/myorg/myimage/blobs/${digest}`);
    assert.equal(put.headers.get("docker-content-digest"), digest);
  });
  await t.step("bytes at blobs/sha256/<xx>/<hex>, link in the repository, no session", async () => {
    const stored = await Deno.readFile(
      join(reg.dataDir, "blobs", "sha256", hex(digest).slice(0, 2), hex(digest)),
    );
    assert.deepEqual(stored, bytes);
    const link = join(
      reg.dataDir,
      "repositories",
      "myorg",
      "myimage",
      "_layers",
      "sha256",
      hex(digest),
    );
    assert.ok((await Deno.stat(link)).isFile);
    await assert.rejects(Deno.stat(join(reg.dataDir, "uploads", uuid)), Deno.errors.NotFound);
  });
  await t.step("the session is gone: a second PUT is 404 BLOB_UPLOAD_UNKNOWN", async () => {
    const again = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT", body: bytes });
    assert.equal(again.status, 404);
    assert.equal(await errorCode(again), "BLOB_UPLOAD_UNKNOWN");
  });
});

Deno.test("a digest mismatch is 400 DIGEST_INVALID and stores nothing", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(1000);
  const wrong = await sha256Digest(randomBytes(10));
  const start = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
  await start.body?.cancel();
  const put = await reg.fetch(`${start.headers.get("location")}?digest=${wrong}`, {
    method: "PUT",
    body: bytes,
  });
  assert.equal(put.status, 400);
  assert.equal(await errorCode(put), "DIGEST_INVALID");
  assert.deepEqual(await listFiles(join(reg.dataDir, "blobs")), []);
  const head = await reg.fetch(`/v2/app/blobs/${await sha256Digest(bytes)}`, { method: "HEAD" });
  assert.equal(head.status, 404);
});

Deno.test("PUT without digest, or with a malformed one, is 400 DIGEST_INVALID", async () => {
  await using reg = await tempRegistry();
  for (const query of ["", "?digest=sha256:abc", "?digest=md5:00", "?digest="]) {
    const start = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
    await start.body?.cancel();
    const put = await reg.fetch(`${start.headers.get("location")}${query}`, {
      method: "PUT",
      body: "x",
    });
    assert.equal(put.status, 400, query);
    assert.equal(await errorCode(put), "DIGEST_INVALID", query);
  }
});

Deno.test("an unknown upload id is 404 BLOB_UPLOAD_UNKNOWN", async () => {
  await using reg = await tempRegistry();
  const digest = await sha256Digest(new Uint8Array([1]));
  for (const id of ["3f2c1b9e-0000-4000-8000-000000000000", "not-a-uuid", "x%2e%2e", "A"]) {
    const res = await reg.fetch(`/v2/app/blobs/uploads/${id}?digest=${digest}`, {
      method: "PUT",
      body: new Uint8Array([1]),
    });
    assert.equal(res.status, 404, id);
    assert.equal(await errorCode(res), "BLOB_UPLOAD_UNKNOWN", id);
  }
  for (const id of ["..", "%2e%2e"]) {
    const status = await rawStatus(reg.url, "PUT", `/v2/app/blobs/uploads/${id}?digest=${digest}`);
    assert.equal(status, 404, id);
  }
});

Deno.test("POST ?digest= with a body stores the whole blob in one request", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(70_000);
  const digest = await sha256Digest(bytes);
  const res = await reg.fetch(`/v2/a/b/c/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: bytes,
  });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("location"), `/v2/a/b/c/blobs/${digest}`);
  assert.equal(res.headers.get("docker-content-digest"), digest);
  const get = await reg.fetch(`/v2/a/b/c/blobs/${digest}`);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(join(reg.dataDir, "uploads"))), []);
});

Deno.test("HEAD of a missing blob or manifest: 404 with the length GET's error body has, and no body", async () => {
  await using reg = await tempRegistry();
  const missing = await sha256Digest(randomBytes(8));
  for (const path of [`/v2/app/blobs/${missing}`, "/v2/app/manifests/nope"]) {
    const get = await reg.fetch(path);
    const body = new Uint8Array(await get.arrayBuffer());
    assert.equal(get.status, 404);
    assert.ok(body.length > 0);
    assert.equal(get.headers.get("content-length"), String(body.length));
    const head = await reg.fetch(path, { method: "HEAD" });
    assert.equal(head.status, 404);
    assert.equal(head.headers.get("content-length"), String(body.length), path);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  }
});

Deno.test("HEAD and GET of a blob: exact headers and bytes; HEAD has no body", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(12345);
  const digest = await pushBlob(reg, "myorg/team/image", bytes);
  const head = await reg.fetch(`/v2/myorg/team/image/blobs/${digest}`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), "12345");
  assert.equal(head.headers.get("content-type"), "application/octet-stream");
  assert.equal(head.headers.get("docker-content-digest"), digest);
  assert.equal((await head.arrayBuffer()).byteLength, 0);
  const get = await reg.fetch(`/v2/myorg/team/image/blobs/${digest}`);
  assert.equal(get.status, 200);
  assert.equal(get.headers.get("content-length"), "12345");
  assert.equal(get.headers.get("content-type"), "application/octet-stream");
  assert.equal(get.headers.get("docker-content-digest"), digest);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
});

Deno.test("blob bytes are never compressed, even when the client accepts gzip", async () => {
  await using reg = await tempRegistry();
  const bytes = new TextEncoder().encode("a".repeat(100_000));
  const digest = await pushBlob(reg, "app", bytes);
  const get = await reg.fetch(`/v2/app/blobs/${digest}`, {
    headers: { "accept-encoding": "gzip, deflate, br" },
  });
  assert.equal(get.headers.get("content-encoding"), null);
  assert.equal(get.headers.get("content-length"), "100000");
  await get.body?.cancel();
});

Deno.test("Range requests give 206 with Content-Range; unsatisfiable ones 416", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(1000);
  const digest = await pushBlob(reg, "app", bytes);
  const cases: [string, number, number][] = [
    ["bytes=0-99", 0, 99],
    ["bytes=900-", 900, 999],
    ["bytes=-10", 990, 999],
    ["bytes=500-5000", 500, 999],
    ["bytes=999-999", 999, 999],
  ];
  for (const [range, start, end] of cases) {
    const res = await reg.fetch(`/v2/app/blobs/${digest}`, { headers: { range } });
    assert.equal(res.status, 206, range);
    assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/1000`, range);
    assert.equal(res.headers.get("content-length"), String(end - start + 1), range);
    assert.equal(res.headers.get("docker-content-digest"), digest);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes.subarray(start, end + 1));
  }
  for (const range of ["bytes=1000-", "bytes=5000-6000", "bytes=-0"]) {
    const res = await reg.fetch(`/v2/app/blobs/${digest}`, { headers: { range } });
    assert.equal(res.status, 416, range);
    assert.equal(res.headers.get("content-range"), "bytes */1000", range);
    assert.ok((await errorCode(res)).length > 0);
  }
});

Deno.test("malformed Range headers are ignored: 200 with the whole blob", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(100);
  const digest = await pushBlob(reg, "app", bytes);
  for (const range of ["bytes=abc", "items=0-1", "bytes=5-2", "bytes=0-1,3-4", "bytes=-", "0-10"]) {
    const res = await reg.fetch(`/v2/app/blobs/${digest}`, { headers: { range } });
    assert.equal(res.status, 200, range);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes, range);
  }
});

Deno.test("a blob is visible only in repositories that link it", async () => {
  await using reg = await tempRegistry();
  const digest = await pushBlob(reg, "one", randomBytes(10));
  for (const method of ["HEAD", "GET"]) {
    const res = await reg.fetch(`/v2/two/blobs/${digest}`, { method });
    assert.equal(res.status, 404, method);
    if (method === "GET") assert.equal(await errorCode(res), "BLOB_UNKNOWN");
    else await res.body?.cancel();
  }
});

Deno.test("DELETE unlinks a blob from one repository; the bytes stay for others", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(500);
  const digest = await pushBlob(reg, "one", bytes);
  await pushBlob(reg, "two", bytes);
  const del = await reg.fetch(`/v2/one/blobs/${digest}`, { method: "DELETE" });
  assert.equal(del.status, 202);
  await del.body?.cancel();
  const gone = await reg.fetch(`/v2/one/blobs/${digest}`);
  assert.equal(gone.status, 404);
  assert.equal(await errorCode(gone), "BLOB_UNKNOWN");
  const other = await reg.fetch(`/v2/two/blobs/${digest}`);
  assert.deepEqual(new Uint8Array(await other.arrayBuffer()), bytes);
  const again = await reg.fetch(`/v2/one/blobs/${digest}`, { method: "DELETE" });
  assert.equal(again.status, 404);
  assert.equal(await errorCode(again), "BLOB_UNKNOWN");
});

Deno.test("a known path with the wrong method is 405 with Allow", async () => {
  await using reg = await tempRegistry();
  const digest = await sha256Digest(new Uint8Array(1));
  const res = await reg.fetch(`/v2/app/blobs/${digest}`, { method: "POST" });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "HEAD, GET, DELETE");
  assert.equal(await errorCode(res), "UNSUPPORTED");
  const unknown = await reg.fetch("/v3/whatever");
  assert.equal(unknown.status, 404);
  assert.ok((await errorCode(unknown)).length > 0);
});

Deno.test("hostile names get 400 NAME_INVALID and write nothing outside the data root", async () => {
  const parent = await Deno.makeTempDir({ prefix: "registry-parent-" });
  await using reg = await tempRegistry({ dataDir: join(parent, "data") });
  const before = (await Array.fromAsync(Deno.readDir(parent))).map((e) => e.name).sort();
  const names = [
    "..",
    "a/../../b",
    "%2e%2e",
    "a/%2e%2e/b",
    "a%2fb",
    "UPPER",
    "app/",
    "/app",
    "a//b",
    "a".repeat(300),
    "a\\b",
    "a%00b",
    "-a",
    "a.",
    "_layers",
  ];
  for (const name of names) {
    for (
      const [method, path] of [
        ["POST", `/v2/${name}/blobs/uploads/`],
        ["HEAD", `/v2/${name}/blobs/sha256:${"a".repeat(64)}`],
        ["GET", `/v2/${name}/tags/list`],
      ]
    ) {
      // fetch would normalize "..": send the raw target with a plain socket.
      const status = await rawStatus(reg.url, method, path);
      assert.ok(status === 400 || status === 404, `${method} ${path} gave ${status}`);
    }
    // fetch itself rewrites "..", "%2e" and "\\" into other, valid names: the raw requests
    // above are the real check for those.
    const normalizedByFetch = name.includes("..") || name.includes("%2e") || name.includes("\\");
    if (!normalizedByFetch && !name.startsWith("/") && !name.includes("//")) {
      const res = await reg.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
      assert.equal(res.status, 400, name);
      assert.equal(await errorCode(res), "NAME_INVALID", name);
    }
  }
  const after = (await Array.fromAsync(Deno.readDir(parent))).map((e) => e.name).sort();
  assert.deepEqual(after, before);
  assert.deepEqual(after, ["data"]);
  assert.deepEqual(await listFiles(join(reg.dataDir, "uploads")), []);
  assert.deepEqual(await listFiles(join(reg.dataDir, "repositories")), []);
  await Deno.remove(parent, { recursive: true });
});

Deno.test("hostile digests get 400 DIGEST_INVALID", async () => {
  await using reg = await tempRegistry();
  const digests = [
    "sha256:abc",
    `sha256:${"A".repeat(64)}`,
    `sha256:${"a".repeat(65)}`,
    `md5:${"a".repeat(32)}`,
    `sha256-${"a".repeat(64)}`,
    `SHA256:${"a".repeat(64)}`,
    "sha256:..",
  ];
  for (const digest of digests) {
    for (const method of ["GET", "DELETE"]) {
      const res = await reg.fetch(`/v2/app/blobs/${digest}`, { method });
      assert.equal(res.status, 400, `${method} ${digest}`);
      assert.equal(await errorCode(res), "DIGEST_INVALID", `${method} ${digest}`);
    }
    const head = await reg.fetch(`/v2/app/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 400, `HEAD ${digest}`);
    await head.body?.cancel();
  }
});

/** Sends a request line as given (no URL normalization) and returns the status. */
async function rawStatus(base: string, method: string, path: string): Promise<number> {
  const { hostname, port } = new URL(base);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    const request = `${method} ${path} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n` +
      `Content-Length: 0\r\n\r\n`;
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return Number(text.split(" ")[1]);
  } finally {
    conn.close();
  }
}

Deno.test("a sha512 digest is accepted for a blob upload and read back", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(5000);
  const { createHash } = await import("node:crypto");
  const digest = `sha512:${createHash("sha512").update(bytes).digest("hex")}`;
  const start = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
  await start.body?.cancel();
  const put = await reg.fetch(`${start.headers.get("location")}?digest=${digest}`, {
    method: "PUT",
    body: bytes,
  });
  assert.equal(put.status, 201);
  assert.equal(put.headers.get("docker-content-digest"), digest);
  const get = await reg.fetch(`/v2/app/blobs/${digest}`);
  assert.equal(get.status, 200);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
  const wrong = `sha512:${"0".repeat(128)}`;
  const start2 = await reg.fetch("/v2/app/blobs/uploads/", { method: "POST" });
  await start2.body?.cancel();
  const bad = await reg.fetch(`${start2.headers.get("location")}?digest=${wrong}`, {
    method: "PUT",
    body: bytes,
  });
  assert.equal(bad.status, 400);
  assert.equal(await errorCode(bad), "DIGEST_INVALID");
});

Deno.test("conditional blob GET and HEAD: If-None-Match 304, If-Match 412, If-Range sends the whole blob unless it is the blob's tag", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(1000);
  const digest = await pushBlob(reg, "app", bytes);
  const path = `/v2/app/blobs/${digest}`;
  const etag = `"${digest}"`;
  const get = async (headers: Record<string, string>, method = "GET") => {
    const res = await reg.fetch(path, { method, headers });
    return { res, body: new Uint8Array(await res.arrayBuffer()) };
  };
  for (const method of ["GET", "HEAD"]) {
    for (const value of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const { res, body } = await get({ "If-None-Match": value }, method);
      assert.equal(res.status, 304, `${method} If-None-Match: ${value}`);
      assert.equal(res.headers.get("etag"), etag);
      assert.equal(res.headers.get("content-type"), null);
      assert.equal(body.length, 0);
    }
    assert.equal((await get({ "If-None-Match": '"other"' }, method)).res.status, 200);
    for (const value of ['"nope"', `W/${etag}`]) {
      const { res } = await get({ "If-Match": value }, method);
      assert.equal(res.status, 412, `${method} If-Match: ${value}`);
    }
    for (const value of [etag, "*", `"nope", ${etag}`]) {
      assert.equal((await get({ "If-Match": value }, method)).res.status, 200, value);
    }
  }
  const ranged = await get({ Range: "bytes=0-9", "If-Range": etag });
  assert.equal(ranged.res.status, 206);
  assert.deepEqual(ranged.body, bytes.subarray(0, 10));
  for (const value of ['"nope"', `W/${etag}`, "Sat, 05 Dec 2026 18:00:00 GMT"]) {
    const whole = await get({ Range: "bytes=0-9", "If-Range": value });
    assert.equal(whole.res.status, 200, `If-Range: ${value}`);
    assert.deepEqual(whole.body, bytes);
  }
  // a precondition on a blob that is not there: still 404
  const missing = await reg.fetch(`/v2/app/blobs/${await sha256Digest(randomBytes(8))}`, {
    headers: { "If-None-Match": "*" },
  });
  await missing.body?.cancel();
  assert.equal(missing.status, 404);
});
