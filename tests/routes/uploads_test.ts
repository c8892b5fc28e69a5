import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { createSha256 } from "../../src/digest/sha256.ts";
import {
  errorCode,
  pushBlob,
  randomBytes,
  sha256Digest,
  tempRegistry,
} from "../helpers/registry.ts";
import {
  chunkedEncoding,
  codeOf,
  concat,
  ControlledBody,
  dataSizeOf,
  type Fetcher,
  hashStateOf,
  patch,
  rawRequest,
  sessionFile,
  startUpload,
  streamOf,
  waitFor,
} from "../helpers/uploads.ts";

const hex = (digest: string) => digest.slice("sha256:".length);
const blobPath = (dataDir: string, digest: string) =>
  join(dataDir, "blobs", "sha256", hex(digest).slice(0, 2), hex(digest));

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await listFiles(path));
    else out.push(path);
  }
  return out.sort();
}

/** GET status of a session: asserts 204 and returns its Range. */
async function statusRange(reg: Fetcher, location: string): Promise<string | null> {
  const res = await reg.fetch(location);
  await res.body?.cancel();
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("location"), location);
  return res.headers.get("range");
}

/** PUTs `?digest=` with an optional final chunk; returns status, headers and error code. */
async function put(reg: Fetcher, location: string, digest: string, body?: BodyInit) {
  const res = await reg.fetch(`${location}?digest=${digest}`, {
    method: "PUT",
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, code: codeOf(text) };
}

/** GETs a blob and returns its bytes (asserting 200). */
async function pull(reg: Fetcher, name: string, digest: string): Promise<Uint8Array> {
  const res = await reg.fetch(`/v2/${name}/blobs/${digest}`);
  assert.equal(res.status, 200);
  return new Uint8Array(await res.arrayBuffer());
}

Deno.test("PATCH appends a chunk: 202 with Location, Range 0-<last> and Docker-Upload-UUID", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "myorg/myimage");
  const res = await patch(reg, location, randomBytes(10240), "0-10239");
  assert.equal(res.status, 202);
  assert.equal(res.text, "");
  assert.equal(res.headers.get("location"), `/v2/myorg/myimage/blobs/uploads/${uuid}`);
  assert.equal(res.headers.get("range"), "0-10239");
  assert.equal(res.headers.get("docker-upload-uuid"), uuid);
  assert.equal(res.headers.get("docker-distribution-api-version"), "registry/2.0");
  assert.equal(await dataSizeOf(reg.dataDir, uuid), 10240);
});

Deno.test("sequential PATCHes append in order and PUT commits the digest of all bytes", async (t) => {
  await using reg = await tempRegistry();
  const parts = [randomBytes(10240), randomBytes(10240), randomBytes(777), randomBytes(65536)];
  const all = concat(...parts);
  const digest = await sha256Digest(all);
  const { location, uuid } = await startUpload(reg, "app");
  await t.step("each PATCH answers 202 with the running Range", async () => {
    let offset = 0;
    for (const part of parts) {
      const res = await patch(reg, location, part, `${offset}-${offset + part.length - 1}`);
      offset += part.length;
      assert.equal(res.status, 202);
      assert.equal(res.headers.get("range"), `0-${offset - 1}`);
    }
    assert.equal(await dataSizeOf(reg.dataDir, uuid), all.length);
  });
  await t.step(
    "PUT with an empty body is 201 with Location and Docker-Content-Digest",
    async () => {
      const res = await put(reg, location, digest);
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("location"), `/v2/app/blobs/${digest}`);
      assert.equal(res.headers.get("docker-content-digest"), digest);
    },
  );
  await t.step(
    "the stored blob holds exactly the bytes sent, and the session is gone",
    async () => {
      assert.deepEqual(await Deno.readFile(blobPath(reg.dataDir, digest)), all);
      assert.deepEqual(await pull(reg, "app", digest), all);
      await assert.rejects(Deno.stat(join(reg.dataDir, "uploads", uuid)), Deno.errors.NotFound);
    },
  );
});

Deno.test("Content-Range is accepted as 0-1023, bytes 1024-2047/* and bytes 2048-4095/4096", async () => {
  await using reg = await tempRegistry();
  const all = randomBytes(4096);
  const { location } = await startUpload(reg, "app");
  const cases: [string, Uint8Array, string][] = [
    ["0-1023", all.subarray(0, 1024), "0-1023"],
    ["bytes 1024-2047/*", all.subarray(1024, 2048), "0-2047"],
    ["bytes 2048-4095/4096", all.subarray(2048), "0-4095"],
  ];
  for (const [range, chunk, expected] of cases) {
    const res = await patch(reg, location, chunk.slice(), range);
    assert.equal(res.status, 202, range);
    assert.equal(res.headers.get("range"), expected, range);
  }
  const digest = await sha256Digest(all);
  assert.equal((await put(reg, location, digest)).status, 201);
  assert.deepEqual(await pull(reg, "app", digest), all);
});

Deno.test("out-of-order, overlapping and repeated chunks are 416 and the session stays usable", async (t) => {
  await using reg = await tempRegistry();
  const all = randomBytes(3072);
  const digest = await sha256Digest(all);
  const { location, uuid } = await startUpload(reg, "app");
  await t.step("a chunk that does not start at 0 on an empty session is 416", async () => {
    const res = await patch(reg, location, all.slice(1024, 2048), "1024-2047");
    assert.equal(res.status, 416);
    assert.equal(codeOf(res.text), "BLOB_UPLOAD_INVALID");
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(await statusRange(reg, location), "0-0");
    assert.equal(await dataSizeOf(reg.dataDir, uuid), 0);
  });
  await t.step("the first chunk is accepted", async () => {
    const res = await patch(reg, location, all.slice(0, 1024), "0-1023");
    assert.equal(res.status, 202);
  });
  const wrong: [string, string, Uint8Array<ArrayBuffer>][] = [
    ["out of order", "2048-3071", all.slice(2048, 3072)],
    ["overlapping", "512-1535", all.slice(512, 1536)],
    ["repeated", "0-1023", all.slice(0, 1024)],
    ["repeated, bytes form", "bytes 0-1023/3072", all.slice(0, 1024)],
  ];
  for (const [what, range, chunk] of wrong) {
    await t.step(
      `${what} (${range}) is 416 BLOB_UPLOAD_INVALID; status keeps Range 0-1023`,
      async () => {
        const res = await patch(reg, location, chunk, range);
        assert.equal(res.status, 416);
        assert.equal(codeOf(res.text), "BLOB_UPLOAD_INVALID");
        assert.equal(res.headers.get("range"), "0-1023");
        assert.equal(await statusRange(reg, location), "0-1023");
        assert.deepEqual(
          await Deno.readFile(sessionFile(reg.dataDir, uuid, "data")),
          all.subarray(0, 1024),
        );
        assert.equal((await hashStateOf(reg.dataDir, uuid)).length, 1024);
      },
    );
  }
  await t.step("the correct next chunk works and the upload completes", async () => {
    const res = await patch(reg, location, all.slice(1024, 2048), "1024-2047");
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), "0-2047");
    const done = await put(reg, location, digest, all.slice(2048));
    assert.equal(done.status, 201);
    assert.equal(done.headers.get("docker-content-digest"), digest);
    assert.deepEqual(await pull(reg, "app", digest), all);
  });
});

Deno.test("a malformed Content-Range is 416 BLOB_UPLOAD_INVALID and appends nothing", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "app");
  // The last three declare a complete length that the range itself exceeds (RFC 9110 14.4).
  const ranges = ["abc", "5-1", "-10", "0-", "bytes */10", "0-9/x", "0 - 9", "bytes 0-9/5"];
  for (const range of [...ranges, "bytes 0-9/9", "0-9/0"]) {
    const res = await patch(reg, location, randomBytes(10), range);
    assert.equal(res.status, 416, range);
    assert.equal(codeOf(res.text), "BLOB_UPLOAD_INVALID", range);
  }
  assert.equal(await dataSizeOf(reg.dataDir, uuid), 0);
  assert.equal(await statusRange(reg, location), "0-0");
});

Deno.test("a Content-Range disagreeing with Content-Length is 400 SIZE_INVALID, nothing appended", async () => {
  await using reg = await tempRegistry();
  const first = randomBytes(100);
  const { location, uuid } = await startUpload(reg, "app");
  assert.equal((await patch(reg, location, first, "0-99")).status, 202);
  for (const [range, length] of [["100-199", 50], ["100-149", 100], ["bytes 100-100/*", 2]]) {
    // fetch sets Content-Length from the body: `length` bytes against the declared range.
    const res = await patch(reg, location, randomBytes(length as number), range as string);
    assert.equal(res.status, 400, `${range} with ${length}`);
    assert.equal(codeOf(res.text), "SIZE_INVALID");
    assert.equal(await dataSizeOf(reg.dataDir, uuid), 100);
    assert.equal((await hashStateOf(reg.dataDir, uuid)).length, 100);
    assert.equal(await statusRange(reg, location), "0-99");
  }
  const rest = randomBytes(100);
  assert.equal((await patch(reg, location, rest, "100-199")).status, 202);
  const digest = await sha256Digest(concat(first, rest));
  assert.equal((await put(reg, location, digest)).status, 201);
});

Deno.test("a chunked body longer or shorter than its Content-Range is 400 SIZE_INVALID, nothing appended", async (t) => {
  await using reg = await tempRegistry();
  const first = randomBytes(1000);
  const { location, uuid } = await startUpload(reg, "app");
  assert.equal((await patch(reg, location, first, "0-999")).status, 202);
  const cases: [string, number, string][] = [
    ["longer", 600_000, "1000-1999"],
    ["one byte longer", 1001, "1000-1999"],
    ["shorter", 999, "1000-1999"],
  ];
  for (const [what, size, range] of cases) {
    await t.step(`${what} (${size} bytes for ${range})`, async () => {
      // A stream body: no Content-Length, chunked transfer encoding.
      const res = await patch(reg, location, streamOf(randomBytes(size), 4096), range);
      assert.equal(res.status, 400);
      assert.equal(codeOf(res.text), "SIZE_INVALID");
      assert.equal(await dataSizeOf(reg.dataDir, uuid), 1000);
      assert.equal((await hashStateOf(reg.dataDir, uuid)).length, 1000);
      assert.equal(await statusRange(reg, location), "0-999");
    });
  }
  await t.step("the session still completes", async () => {
    const rest = randomBytes(1000);
    assert.equal((await patch(reg, location, streamOf(rest, 100), "1000-1999")).status, 202);
    const digest = await sha256Digest(concat(first, rest));
    assert.equal((await put(reg, location, digest)).status, 201);
    assert.deepEqual(await pull(reg, "app", digest), concat(first, rest));
  });
});

Deno.test("a zero-length chunk is 202 and changes nothing", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "app");
  const empty = await patch(reg, location, new Uint8Array(0));
  assert.equal(empty.status, 202);
  assert.equal(empty.headers.get("range"), "0-0");
  const bytes = randomBytes(500);
  assert.equal((await patch(reg, location, bytes)).status, 202);
  const state = await Deno.readTextFile(sessionFile(reg.dataDir, uuid, "hashstate"));
  for (const body of [new Uint8Array(0), null, streamOf(new Uint8Array(0))]) {
    const res = await patch(reg, location, body);
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), "0-499");
  }
  assert.equal(await Deno.readTextFile(sessionFile(reg.dataDir, uuid, "hashstate")), state);
  assert.equal(await dataSizeOf(reg.dataDir, uuid), 500);
  assert.equal((await put(reg, location, await sha256Digest(bytes))).status, 201);
});

Deno.test("PATCH without Content-Range or Content-Length (chunked encoding) appends at the offset", async (t) => {
  await using reg = await tempRegistry();
  const parts = [randomBytes(300_000), randomBytes(12345), randomBytes(1)];
  const { location, uuid } = await startUpload(reg, "app");
  await t.step("a ReadableStream body from fetch", async () => {
    const res = await patch(reg, location, streamOf(parts[0], 7000));
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), "0-299999");
  });
  await t.step("a raw request with Transfer-Encoding: chunked and no length header", async () => {
    const res = await rawRequest(reg.url, "PATCH", location, {
      "Content-Type": "application/octet-stream",
      "Transfer-Encoding": "chunked",
    }, chunkedEncoding(parts[1].subarray(0, 5000), parts[1].subarray(5000)));
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), `0-${300_000 + 12345 - 1}`);
    assert.equal(res.headers.get("docker-upload-uuid"), uuid);
  });
  await t.step("a plain body with Content-Length only", async () => {
    const res = await patch(reg, location, parts[2]);
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), `0-${300_000 + 12345}`);
  });
  await t.step("PUT with an empty body completes with the digest of all bytes", async () => {
    const all = concat(...parts);
    const digest = await sha256Digest(all);
    const res = await put(reg, location, digest);
    assert.equal(res.status, 201);
    assert.deepEqual(await pull(reg, "app", digest), all);
  });
});

Deno.test("PUT may carry the final chunk, with or without Content-Range", async (t) => {
  await using reg = await tempRegistry();
  await t.step("final chunk in the PUT body", async () => {
    const [a, b] = [randomBytes(20480), randomBytes(5000)];
    const digest = await sha256Digest(concat(a, b));
    const { location } = await startUpload(reg, "app");
    assert.equal((await patch(reg, location, a, "0-20479")).status, 202);
    const res = await put(reg, location, digest, b);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("docker-content-digest"), digest);
    assert.deepEqual(await pull(reg, "app", digest), concat(a, b));
  });
  await t.step("final chunk with Content-Range", async () => {
    const [a, b] = [randomBytes(1024), randomBytes(1024)];
    const digest = await sha256Digest(concat(a, b));
    const { location } = await startUpload(reg, "app");
    assert.equal((await patch(reg, location, a, "0-1023")).status, 202);
    const res = await reg.fetch(`${location}?digest=${digest}`, {
      method: "PUT",
      headers: { "Content-Range": "1024-2047" },
      body: b,
    });
    await res.body?.cancel();
    assert.equal(res.status, 201);
    assert.deepEqual(await pull(reg, "app", digest), concat(a, b));
  });
  await t.step("final chunk streamed with chunked encoding", async () => {
    const [a, b] = [randomBytes(1024), randomBytes(100_000)];
    const digest = await sha256Digest(concat(a, b));
    const { location } = await startUpload(reg, "app");
    assert.equal((await patch(reg, location, a)).status, 202);
    assert.equal((await put(reg, location, digest, streamOf(b, 3000))).status, 201);
    assert.deepEqual(await pull(reg, "app", digest), concat(a, b));
  });
  await t.step("empty PUT: no body, and an explicit zero-length body", async () => {
    for (const body of [undefined, new Uint8Array(0)]) {
      const a = randomBytes(4000);
      const digest = await sha256Digest(a);
      const { location } = await startUpload(reg, "app");
      assert.equal((await patch(reg, location, a)).status, 202);
      assert.equal((await put(reg, location, digest, body)).status, 201);
      assert.deepEqual(await pull(reg, "app", digest), a);
    }
  });
  await t.step("an empty blob: POST then PUT with nothing", async () => {
    const digest = await sha256Digest(new Uint8Array(0));
    const { location } = await startUpload(reg, "app");
    const res = await put(reg, location, digest);
    assert.equal(res.status, 201);
    assert.deepEqual(await pull(reg, "app", digest), new Uint8Array(0));
  });
});

Deno.test("a PUT whose final chunk does not continue the data is 416 and the session stays", async () => {
  await using reg = await tempRegistry();
  const [a, b] = [randomBytes(1024), randomBytes(1024)];
  const digest = await sha256Digest(concat(a, b));
  const { location, uuid } = await startUpload(reg, "app");
  assert.equal((await patch(reg, location, a, "0-1023")).status, 202);
  const wrong = await reg.fetch(`${location}?digest=${digest}`, {
    method: "PUT",
    headers: { "Content-Range": "0-1023" },
    body: b,
  });
  assert.equal(wrong.status, 416);
  assert.equal(await errorCode(wrong), "BLOB_UPLOAD_INVALID");
  assert.equal(await dataSizeOf(reg.dataDir, uuid), 1024);
  assert.equal(await statusRange(reg, location), "0-1023");
  assert.deepEqual(await listFiles(join(reg.dataDir, "blobs")), []);
  const res = await put(reg, location, digest, b);
  assert.equal(res.status, 201);
  assert.deepEqual(await pull(reg, "app", digest), concat(a, b));
});

Deno.test("a digest mismatch after chunks is 400 DIGEST_INVALID and no blob is stored under either digest", async () => {
  await using reg = await tempRegistry();
  const [a, b] = [randomBytes(2048), randomBytes(2048)];
  const actual = await sha256Digest(concat(a, b));
  const claimed = await sha256Digest(randomBytes(16));
  const { location } = await startUpload(reg, "app");
  assert.equal((await patch(reg, location, a, "0-2047")).status, 202);
  assert.equal((await patch(reg, location, b, "2048-4095")).status, 202);
  const res = await put(reg, location, claimed);
  assert.equal(res.status, 400);
  assert.equal(res.code, "DIGEST_INVALID");
  assert.deepEqual(await listFiles(join(reg.dataDir, "blobs")), []);
  for (const digest of [actual, claimed]) {
    const head = await reg.fetch(`/v2/app/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 404, digest);
  }
  await assert.rejects(Deno.stat(join(reg.dataDir, "repositories", "app", "_layers", "sha256")));
});

Deno.test("a PATCH the client abandons midway appends nothing and the session stays usable", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "app");
  const first = randomBytes(1000);
  assert.equal((await patch(reg, location, first)).status, 202);
  const body = new ControlledBody();
  const abort = new AbortController();
  const abandoned = reg.fetch(location, {
    method: "PATCH",
    body: body.stream,
    signal: abort.signal,
  })
    .then(() => "answered", () => "aborted");
  for (let i = 0; i < 6; i++) await body.push(randomBytes(1024 * 1024));
  await waitFor(async () => (await dataSizeOf(reg.dataDir, uuid)) > 1000, "bytes on disk");
  abort.abort();
  assert.equal(await abandoned, "aborted");
  await waitFor(async () => (await dataSizeOf(reg.dataDir, uuid)) === 1000, "the rollback");
  assert.equal(await statusRange(reg, location), "0-999");
  assert.equal((await hashStateOf(reg.dataDir, uuid)).length, 1000);
  const rest = randomBytes(2000);
  assert.equal((await patch(reg, location, rest, "1000-2999")).status, 202);
  assert.equal((await put(reg, location, await sha256Digest(concat(first, rest)))).status, 201);
});

Deno.test("GET on a session is 204 with Location, Docker-Upload-UUID and Range (0-0 when empty)", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "myorg/team/image");
  const empty = await reg.fetch(location);
  assert.equal(empty.status, 204);
  assert.equal(await empty.text(), "");
  assert.equal(empty.headers.get("location"), `/v2/myorg/team/image/blobs/uploads/${uuid}`);
  assert.equal(empty.headers.get("docker-upload-uuid"), uuid);
  assert.equal(empty.headers.get("range"), "0-0");
  assert.equal((await patch(reg, location, randomBytes(1))).status, 202);
  assert.equal(await statusRange(reg, location), "0-0");
  assert.equal((await patch(reg, location, randomBytes(1))).status, 202);
  assert.equal(await statusRange(reg, location), "0-1");
  assert.equal((await patch(reg, location, randomBytes(98), "2-99")).status, 202);
  assert.equal(await statusRange(reg, location), "0-99");
});

Deno.test("DELETE cancels a session: 204, folder gone, every later call 404 BLOB_UPLOAD_UNKNOWN", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "app");
  const bytes = randomBytes(5000);
  assert.equal((await patch(reg, location, bytes)).status, 202);
  const del = await reg.fetch(location, { method: "DELETE" });
  assert.equal(del.status, 204);
  assert.equal(await del.text(), "");
  await assert.rejects(Deno.stat(join(reg.dataDir, "uploads", uuid)), Deno.errors.NotFound);
  const digest = await sha256Digest(bytes);
  const later: [string, RequestInit][] = [
    ["GET", {}],
    ["PATCH", { method: "PATCH", body: randomBytes(10) }],
    ["PATCH with range", {
      method: "PATCH",
      body: randomBytes(10),
      headers: { "Content-Range": "5000-5009" },
    }],
    ["PUT", { method: "PUT" }],
    ["DELETE", { method: "DELETE" }],
  ];
  for (const [what, init] of later) {
    const path = what === "PUT" ? `${location}?digest=${digest}` : location;
    const res = await reg.fetch(path, init);
    assert.equal(res.status, 404, what);
    assert.equal(await errorCode(res), "BLOB_UPLOAD_UNKNOWN", what);
  }
  assert.deepEqual(await Array.fromAsync(Deno.readDir(join(reg.dataDir, "uploads"))), []);
  assert.deepEqual(await listFiles(join(reg.dataDir, "blobs")), []);
});

Deno.test("a session used under another repository name is 404 BLOB_UPLOAD_UNKNOWN", async () => {
  await using reg = await tempRegistry();
  const { uuid, location } = await startUpload(reg, "team/app");
  const bytes = randomBytes(1000);
  assert.equal((await patch(reg, location, bytes, "0-999")).status, 202);
  const digest = await sha256Digest(bytes);
  for (const other of ["team/other", "app", "team/app/sub"]) {
    const base = `/v2/${other}/blobs/uploads/${uuid}`;
    const calls: [string, string, RequestInit][] = [
      ["GET", base, {}],
      ["PATCH", base, {
        method: "PATCH",
        body: randomBytes(10),
        headers: { "Content-Range": "1000-1009" },
      }],
      ["PUT", `${base}?digest=${digest}`, { method: "PUT" }],
      ["DELETE", base, { method: "DELETE" }],
    ];
    for (const [what, path, init] of calls) {
      const res = await reg.fetch(path, init);
      assert.equal(res.status, 404, `${what} ${other}`);
      assert.equal(await errorCode(res), "BLOB_UPLOAD_UNKNOWN", `${what} ${other}`);
    }
  }
  // Untouched: the owner continues and completes.
  assert.equal(await dataSizeOf(reg.dataDir, uuid), 1000);
  assert.equal(await statusRange(reg, location), "0-999");
  assert.equal((await put(reg, location, digest)).status, 201);
  const head = await reg.fetch(`/v2/team/other/blobs/${digest}`, { method: "HEAD" });
  assert.equal(head.status, 404);
});

Deno.test("after every PATCH hashstate covers exactly the bytes received and startedat is RFC 3339 UTC", async () => {
  await using reg = await tempRegistry();
  const before = Date.now();
  const { location, uuid } = await startUpload(reg, "app");
  const names = (await Array.fromAsync(Deno.readDir(join(reg.dataDir, "uploads", uuid))))
    .map((e) => e.name).filter((n) => !n.startsWith(".")).sort();
  assert.deepEqual(names, ["data", "hashstate", "repository", "startedat"]);
  const startedAt = await Deno.readTextFile(sessionFile(reg.dataDir, uuid, "startedat"));
  assert.match(startedAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
  assert.ok(Date.parse(startedAt) >= before - 1000 && Date.parse(startedAt) <= Date.now());
  assert.equal((await hashStateOf(reg.dataDir, uuid)).length, 0);

  const received: Uint8Array[] = [];
  // Sizes around the 64-byte block boundary and across the store's 4 MiB write batches.
  for (const size of [1, 63, 64, 65, 1000, 4 * 1024 * 1024 + 3, 17]) {
    const chunk = randomBytes(size);
    const offset = received.reduce((n, p) => n + p.length, 0);
    const res = await patch(reg, location, chunk, `${offset}-${offset + size - 1}`);
    assert.equal(res.status, 202);
    received.push(chunk);
    const all = concat(...received);
    const state = await hashStateOf(reg.dataDir, uuid);
    assert.equal(state.length, all.length);
    assert.equal(await dataSizeOf(reg.dataDir, uuid), all.length);
    // The saved midstate resumes to the digest of exactly the bytes received.
    assert.equal(
      createSha256(state).digestHex(),
      createHash("sha256").update(all).digest("hex"),
    );
  }
  assert.equal(await Deno.readTextFile(sessionFile(reg.dataDir, uuid, "startedat")), startedAt);
});

Deno.test("two concurrent PATCHes on one session never interleave bytes", async () => {
  await using reg = await tempRegistry();
  const { location, uuid } = await startUpload(reg, "app");
  const a = randomBytes(8 * 1024 * 1024 + 5);
  const b = randomBytes(3 * 1024 * 1024 + 7);
  const slow = new ControlledBody();
  const first = patch(reg, location, slow.stream);
  // Half of A arrives (the server is writing it) before B is sent in full.
  const half = 6 * 1024 * 1024;
  for (let at = 0; at < half; at += 1024 * 1024) await slow.push(a.slice(at, at + 1024 * 1024));
  await waitFor(async () => (await dataSizeOf(reg.dataDir, uuid)) > 0, "A to reach the disk");
  const second = patch(reg, location, b);
  await new Promise((resolve) => setTimeout(resolve, 200));
  // A GET status while A is in flight reports only what is safely stored.
  assert.equal(await statusRange(reg, location), "0-0");
  await slow.push(a.slice(half));
  slow.close();
  const [ra, rb] = await Promise.all([first, second]);
  assert.equal(ra.status, 202);
  assert.equal(ra.headers.get("range"), `0-${a.length - 1}`);
  assert.equal(rb.status, 202);
  assert.equal(rb.headers.get("range"), `0-${a.length + b.length - 1}`);
  const all = concat(a, b);
  assert.ok(
    (await Deno.readFile(sessionFile(reg.dataDir, uuid, "data"))).every((x, i) => x === all[i]),
  );
  const digest = await sha256Digest(all);
  assert.equal((await put(reg, location, digest)).status, 201);
});

Deno.test("two concurrent Content-Range PATCHes for the same offset: one is 202, the other 416", async () => {
  await using reg = await tempRegistry();
  const { location } = await startUpload(reg, "app");
  const [a, b] = [randomBytes(100_000), randomBytes(100_000)];
  const results = await Promise.all([
    patch(reg, location, a, "0-99999"),
    patch(reg, location, b, "0-99999"),
  ]);
  assert.deepEqual(results.map((r) => r.status).sort(), [202, 416]);
  const winner = results[0].status === 202 ? a : b;
  assert.equal((await put(reg, location, await sha256Digest(winner))).status, 201);
});

Deno.test("POST ?mount&from mounts a blob the other repository has: 201, no copy", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(50_000);
  const digest = await pushBlob(reg, "base/image", bytes);
  const before = await Deno.stat(blobPath(reg.dataDir, digest));
  const files = await listFiles(join(reg.dataDir, "blobs"));
  const res = await reg.fetch(`/v2/team/app/blobs/uploads/?mount=${digest}&from=base/image`, {
    method: "POST",
  });
  assert.equal(res.status, 201);
  assert.equal(await res.text(), "");
  assert.equal(res.headers.get("location"), `/v2/team/app/blobs/${digest}`);
  assert.equal(res.headers.get("docker-content-digest"), digest);
  assert.equal(res.headers.get("docker-upload-uuid"), null);
  // The same file, not a copy; no session was opened.
  assert.deepEqual(await listFiles(join(reg.dataDir, "blobs")), files);
  const after = await Deno.stat(blobPath(reg.dataDir, digest));
  assert.equal(after.ino, before.ino);
  assert.equal(after.nlink, 1);
  assert.deepEqual(await Array.fromAsync(Deno.readDir(join(reg.dataDir, "uploads"))), []);
  assert.deepEqual(await pull(reg, "team/app", digest), bytes);
  // The source keeps it; deleting it from the target leaves the source intact.
  assert.equal((await reg.fetch(`/v2/team/app/blobs/${digest}`, { method: "DELETE" })).status, 202);
  assert.deepEqual(await pull(reg, "base/image", digest), bytes);
});

Deno.test("POST ?mount&from for a blob the other repository lacks is 202 with a normal session", async (t) => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(3000);
  // Stored in the registry, but linked only to "third": "base" must not leak it.
  const digest = await pushBlob(reg, "third", bytes);
  const unknown = await sha256Digest(randomBytes(8));
  for (
    const [what, query] of [
      ["a blob stored elsewhere", `mount=${digest}&from=base`],
      ["a blob stored nowhere", `mount=${unknown}&from=third`],
      ["an unknown source repository", `mount=${digest}&from=nothing/here`],
    ]
  ) {
    await t.step(what, async () => {
      const res = await reg.fetch(`/v2/app/blobs/uploads/?${query}`, { method: "POST" });
      await res.body?.cancel();
      assert.equal(res.status, 202);
      const uuid = res.headers.get("docker-upload-uuid") ?? "";
      assert.equal(res.headers.get("location"), `/v2/app/blobs/uploads/${uuid}`);
      assert.equal(res.headers.get("range"), "0-0");
      assert.equal(res.headers.get("docker-content-digest"), null);
      const head = await reg.fetch(`/v2/app/blobs/${digest}`, { method: "HEAD" });
      assert.equal(head.status, 404);
      // The session is a normal one: the blob can be pushed through it.
      assert.equal((await patch(reg, `/v2/app/blobs/uploads/${uuid}`, bytes)).status, 202);
      assert.equal((await put(reg, `/v2/app/blobs/uploads/${uuid}`, digest)).status, 201);
      assert.equal((await reg.fetch(`/v2/app/blobs/${digest}`, { method: "DELETE" })).status, 202);
    });
  }
  await t.step("DELETE of a session opened by a failed mount is 204 (podman)", async () => {
    const res = await reg.fetch(`/v2/app/blobs/uploads/?mount=${unknown}&from=third`, {
      method: "POST",
    });
    await res.body?.cancel();
    assert.equal(res.status, 202);
    const del = await reg.fetch(res.headers.get("location")!, { method: "DELETE" });
    await del.body?.cancel();
    assert.equal(del.status, 204);
  });
});

Deno.test("POST ?mount without from: 201 from any repository holding the blob when automatic mount is on", async () => {
  await using reg = await tempRegistry();
  const bytes = randomBytes(3000);
  const digest = await pushBlob(reg, "base", bytes);
  const res = await reg.fetch(`/v2/app/blobs/uploads/?mount=${digest}`, { method: "POST" });
  await res.body?.cancel();
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("location"), `/v2/app/blobs/${digest}`);
  assert.equal(res.headers.get("docker-content-digest"), digest);
  const get = await reg.fetch(`/v2/app/blobs/${digest}`);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
  const unknown = `sha256:${"1".repeat(64)}`;
  const none = await reg.fetch(`/v2/app/blobs/uploads/?mount=${unknown}`, { method: "POST" });
  await none.body?.cancel();
  assert.equal(none.status, 202, "a blob no repository holds opens a session");
});

Deno.test("POST ?mount without from is 202 with a normal session when automatic mount is off", async () => {
  await using reg = await tempRegistry({ config: { automaticMount: false } });
  const bytes = randomBytes(3000);
  const digest = await pushBlob(reg, "base", bytes);
  const res = await reg.fetch(`/v2/app/blobs/uploads/?mount=${digest}`, { method: "POST" });
  await res.body?.cancel();
  assert.equal(res.status, 202);
  const location = res.headers.get("location")!;
  assert.match(location, /^\/v2\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
  assert.equal(res.headers.get("range"), "0-0");
  assert.equal((await reg.fetch(`/v2/app/blobs/${digest}`, { method: "HEAD" })).status, 404);
  assert.equal(await statusRange(reg, location), "0-0");
});

Deno.test("purgeStale removes sessions older than the maximum age and keeps fresh ones", async (t) => {
  let now = new Date();
  const hour = 60 * 60 * 1000;
  await using reg = await tempRegistry({ config: { uploadMaxAgeMs: hour }, now: () => now });
  const old = await startUpload(reg, "app");
  const oldBytes = randomBytes(100);
  assert.equal((await patch(reg, old.location, oldBytes)).status, 202);
  now = new Date(now.getTime() + 2 * hour);
  const fresh = await startUpload(reg, "app");
  await t.step("half an hour in, nothing is purged", async () => {
    const later = now;
    now = new Date(later.getTime() - 1.5 * hour);
    assert.equal(await reg.app.services.uploads.purgeStale(), 0);
    now = later;
  });
  await t.step("past the maximum age only the old session is purged", async () => {
    assert.equal(await reg.app.services.uploads.purgeStale(), 1);
    await assert.rejects(Deno.stat(join(reg.dataDir, "uploads", old.uuid)), Deno.errors.NotFound);
    const gone = await reg.fetch(old.location);
    assert.equal(gone.status, 404);
    assert.equal(await errorCode(gone), "BLOB_UPLOAD_UNKNOWN");
  });
  await t.step("the fresh session is kept and still completes", async () => {
    assert.equal(await statusRange(reg, fresh.location), "0-0");
    const bytes = randomBytes(10);
    assert.equal((await patch(reg, fresh.location, bytes)).status, 202);
    assert.equal((await put(reg, fresh.location, await sha256Digest(bytes))).status, 201);
  });
});

Deno.test("stale sessions are purged periodically, without a call", async () => {
  let now = new Date();
  const hour = 60 * 60 * 1000;
  await using reg = await tempRegistry({
    config: { uploadMaxAgeMs: hour, purgeIntervalMs: 20 },
    now: () => now,
  });
  const old = await startUpload(reg, "app");
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(await statusRange(reg, old.location), "0-0");
  now = new Date(now.getTime() + 2 * hour);
  const fresh = await startUpload(reg, "app");
  await waitFor(async () => {
    const names = await Array.fromAsync(Deno.readDir(join(reg.dataDir, "uploads")));
    return !names.some((e) => e.name === old.uuid);
  }, "the timer to purge the old session");
  assert.equal(await statusRange(reg, fresh.location), "0-0");
});

Deno.test("purgeStale never removes a session with a PATCH in flight", async () => {
  let now = new Date();
  const hour = 60 * 60 * 1000;
  await using reg = await tempRegistry({ config: { uploadMaxAgeMs: hour }, now: () => now });
  const { location, uuid } = await startUpload(reg, "app");
  const body = new ControlledBody();
  const pending = patch(reg, location, body.stream);
  const a = randomBytes(5 * 1024 * 1024);
  await body.push(a);
  await waitFor(async () => (await dataSizeOf(reg.dataDir, uuid)) > 0, "the chunk to reach disk");
  now = new Date(now.getTime() + 3 * hour);
  assert.equal(await reg.app.services.uploads.purgeStale(), 0);
  const b = randomBytes(1000);
  await body.push(b);
  body.close();
  const res = await pending;
  assert.equal(res.status, 202);
  assert.equal((await put(reg, location, await sha256Digest(concat(a, b)))).status, 201);
});

Deno.test("sessions already stale when the registry starts are purged on start", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "registry-test-" });
  try {
    const hour = 60 * 60 * 1000;
    let kept: string;
    let purged: string;
    {
      await using reg = await tempRegistry({ dataDir, now: () => new Date(Date.now() - 3 * hour) });
      purged = (await startUpload(reg, "app")).uuid;
    }
    {
      await using reg = await tempRegistry({ dataDir });
      kept = (await startUpload(reg, "app")).uuid;
    }
    // Data written hours ago, and started hours ago.
    const past = new Date(Date.now() - 3 * hour);
    await Deno.utime(sessionFile(dataDir, purged, "data"), past, past);
    await using reg = await tempRegistry({ dataDir, config: { uploadMaxAgeMs: hour } });
    const names = (await Array.fromAsync(Deno.readDir(join(dataDir, "uploads")))).map((e) =>
      e.name
    );
    assert.deepEqual(names, [kept]);
    assert.equal(await statusRange(reg, `/v2/app/blobs/uploads/${kept}`), "0-0");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
