/**
 * The upload service over `memoryRegistry()`, called directly: start, append (a chunk must
 * continue the data; a declared length must match what arrives, and a chunk that breaks a
 * rule leaves the session at its last good offset), status, complete (sha256 and sha512;
 * a digest mismatch removes the session and stores nothing), whole uploads, cancel, the
 * session's repository, and recovery after a restart (bytes past the saved state are cut, a
 * lost state is rebuilt, stale and broken sessions purged) and the stale-session purge.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RegistryError } from "../../src/errors.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { uploadFileKey } from "../../src/storage/keys.ts";
import type { Chunk } from "../../src/services/uploads.ts";
import type { Digest, RepositoryName, UploadId } from "../../src/types/oci.ts";
import { sourceOf } from "../helpers/byte_sources.ts";
import { memoryRegistry, randomBytes, sha256Digest } from "../helpers/registry.ts";

const APP = "myorg/app" as RepositoryName;
const encoder = new TextEncoder();

/** A chunk of `bytes` with an optional Content-Range and a Content-Length (default: exact). */
function chunk(
  bytes: Uint8Array,
  options: { range?: [number, number]; contentLength?: number | null } = {},
): Chunk {
  return {
    body: sourceOf(bytes),
    range: options.range ? { start: options.range[0], end: options.range[1] } : null,
    contentLength: options.contentLength === undefined ? bytes.length : options.contentLength,
  };
}

const NO_BODY: Chunk = { body: null, range: null, contentLength: null };

async function digestOf(bytes: Uint8Array<ArrayBuffer>): Promise<Digest> {
  return (await sha256Digest(bytes)) as Digest;
}

function sha512Of(bytes: Uint8Array): Digest {
  return `sha512:${createHash("sha512").update(bytes).digest("hex")}` as Digest;
}

/** A predicate for assert.rejects: a RegistryError with this code (and status). */
function registryError(code: string, status?: number) {
  return (error: unknown) => {
    assert.ok(error instanceof RegistryError, String(error));
    assert.equal(error.code, code);
    if (status !== undefined) assert.equal(error.status, status);
    return true;
  };
}

Deno.test("start opens an empty session in the repository", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const session = await uploads.start(APP);
  assert.equal(session.size, 0);
  assert.match(session.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.deepEqual(await uploads.status(APP, session.id), { id: session.id, size: 0 });
  const repository = await reg.driver.get(uploadFileKey(session.id, "repository"));
  assert.equal(new TextDecoder().decode(repository!), APP);
});

Deno.test("appended chunks grow the session; status reports the size", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  assert.equal((await uploads.append(APP, id, chunk(encoder.encode("abc")))).size, 3);
  assert.equal(
    (await uploads.append(APP, id, chunk(encoder.encode("defg"), { range: [3, 6] }))).size,
    7,
  );
  assert.equal((await uploads.status(APP, id)).size, 7);
  const data = await reg.driver.get(uploadFileKey(id, "data"));
  assert.equal(new TextDecoder().decode(data!), "abcdefg");
});

Deno.test("complete with the right digest commits and links the blob and ends the session", async () => {
  await using reg = await memoryRegistry();
  const { uploads, blobs } = reg.app.services;
  const bytes = randomBytes(3000);
  const digest = await digestOf(bytes);
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(bytes.subarray(0, 1000)));
  assert.equal(await uploads.complete(APP, id, digest, chunk(bytes.subarray(1000))), digest);
  assert.equal(await blobs.size(APP, digest), 3000);
  await assert.rejects(uploads.status(APP, id), registryError("BLOB_UPLOAD_UNKNOWN", 404));
  assert.deepEqual(await reg.driver.list("uploads"), []);
});

Deno.test("complete without a final chunk verifies what the session holds", async () => {
  await using reg = await memoryRegistry();
  const { uploads, blobs } = reg.app.services;
  const bytes = randomBytes(500);
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(bytes));
  const digest = await digestOf(bytes);
  await uploads.complete(APP, id, digest, NO_BODY);
  assert.equal(await blobs.size(APP, digest), 500);
});

Deno.test("an empty blob can be completed with no chunk at all", async () => {
  await using reg = await memoryRegistry();
  const { uploads, blobs } = reg.app.services;
  const digest = await digestOf(new Uint8Array(0));
  const { id } = await uploads.start(APP);
  await uploads.complete(APP, id, digest, NO_BODY);
  assert.equal(await blobs.size(APP, digest), 0);
});

Deno.test("complete with a sha512 digest verifies the sha512 of the bytes", async () => {
  await using reg = await memoryRegistry();
  const { uploads, blobs } = reg.app.services;
  const bytes = randomBytes(700);
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(bytes));
  await uploads.complete(APP, id, sha512Of(bytes), NO_BODY);
  assert.equal(await blobs.size(APP, sha512Of(bytes)), 700);
});

Deno.test("a digest mismatch is DIGEST_INVALID, removes the session and stores nothing", async () => {
  await using reg = await memoryRegistry();
  const { uploads, blobs } = reg.app.services;
  const bytes = randomBytes(100);
  const wrong = await digestOf(randomBytes(100));
  const { id } = await uploads.start(APP);
  await assert.rejects(uploads.complete(APP, id, wrong, chunk(bytes)), (error) => {
    assert.ok(error instanceof RegistryError);
    assert.equal(error.code, "DIGEST_INVALID");
    assert.deepEqual(error.detail, { expected: wrong, actual: sha256Hex(bytes) });
    return true;
  });
  await assert.rejects(blobs.size(APP, wrong), registryError("BLOB_UNKNOWN"));
  assert.deepEqual(await reg.driver.list("uploads"), []);
  assert.deepEqual(await reg.driver.list("blobs"), []);
});

function sha256Hex(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

Deno.test("a chunk not starting at the session's size is 416 with the current Range", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(encoder.encode("0123456789")));
  for (const start of [0, 5, 11]) {
    await assert.rejects(
      uploads.append(APP, id, chunk(encoder.encode("xy"), { range: [start, start + 1] })),
      (error) => {
        assert.ok(error instanceof RegistryError);
        assert.equal(error.code, "BLOB_UPLOAD_INVALID");
        assert.equal(error.status, 416);
        assert.deepEqual(error.headers, { Range: "0-9" });
        return true;
      },
    );
  }
  assert.equal((await uploads.status(APP, id)).size, 10);
});

Deno.test("a first chunk not starting at 0 is 416 with Range 0-0", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  await assert.rejects(
    uploads.append(APP, id, chunk(encoder.encode("x"), { range: [1, 1] })),
    (error) => error instanceof RegistryError && error.headers.Range === "0-0",
  );
});

Deno.test("a Content-Length disagreeing with Content-Range is SIZE_INVALID", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  await assert.rejects(
    uploads.append(APP, id, chunk(encoder.encode("abcd"), { range: [0, 3], contentLength: 5 })),
    registryError("SIZE_INVALID", 400),
  );
  assert.equal((await uploads.status(APP, id)).size, 0);
});

Deno.test("a body longer than declared is SIZE_INVALID and the session stays at its offset", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(encoder.encode("good")));
  await assert.rejects(
    uploads.append(APP, id, chunk(encoder.encode("too long"), { contentLength: 3 })),
    registryError("SIZE_INVALID"),
  );
  assert.equal((await uploads.status(APP, id)).size, 4);
  const data = await reg.driver.get(uploadFileKey(id, "data"));
  assert.equal(new TextDecoder().decode(data!), "good");
});

Deno.test("a body shorter than declared is SIZE_INVALID and the session stays at its offset", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(encoder.encode("good")));
  await assert.rejects(
    uploads.append(APP, id, chunk(encoder.encode("short"), { range: [4, 13] })),
    registryError("SIZE_INVALID"),
  );
  assert.equal((await uploads.status(APP, id)).size, 4);
  const data = await reg.driver.get(uploadFileKey(id, "data"));
  assert.equal(new TextDecoder().decode(data!), "good");
  // The session goes on from there.
  assert.equal(
    (await uploads.append(APP, id, chunk(encoder.encode("!"), { range: [4, 4] }))).size,
    5,
  );
});

Deno.test("a session is unknown in any other repository", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  const other = "myorg/other" as RepositoryName;
  await assert.rejects(uploads.status(other, id), registryError("BLOB_UPLOAD_UNKNOWN", 404));
  await assert.rejects(
    uploads.append(other, id, chunk(encoder.encode("x"))),
    registryError("BLOB_UPLOAD_UNKNOWN"),
  );
  await assert.rejects(uploads.cancel(other, id), registryError("BLOB_UPLOAD_UNKNOWN"));
  assert.equal((await uploads.status(APP, id)).size, 0, "untouched");
});

Deno.test("cancel removes the session; later requests on it are BLOB_UPLOAD_UNKNOWN", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  await uploads.append(APP, id, chunk(encoder.encode("abc")));
  await uploads.cancel(APP, id);
  assert.deepEqual(await reg.driver.list("uploads"), []);
  await assert.rejects(uploads.status(APP, id), registryError("BLOB_UPLOAD_UNKNOWN"));
  await assert.rejects(uploads.cancel(APP, id), registryError("BLOB_UPLOAD_UNKNOWN"));
});

Deno.test("uploadWhole stores a blob in one call and leaves no session", async () => {
  await using reg = await memoryRegistry();
  const { uploads, blobs } = reg.app.services;
  const bytes = randomBytes(1234);
  const digest = await digestOf(bytes);
  assert.equal(await uploads.uploadWhole(APP, digest, chunk(bytes)), digest);
  assert.equal(await blobs.size(APP, digest), 1234);
  assert.deepEqual(await reg.driver.list("uploads"), []);
});

Deno.test("uploadWhole with a wrong digest leaves no session and no blob", async () => {
  await using reg = await memoryRegistry();
  const { uploads } = reg.app.services;
  const wrong = await digestOf(randomBytes(10));
  await assert.rejects(
    uploads.uploadWhole(APP, wrong, chunk(randomBytes(10))),
    registryError("DIGEST_INVALID"),
  );
  assert.deepEqual(await reg.driver.list("uploads"), []);
  assert.deepEqual(await reg.driver.list("blobs"), []);
});

Deno.test("after a restart, bytes past the saved state are cut and the upload completes", async () => {
  const driver = new MemoryDriver();
  const bytes = randomBytes(200);
  let id: UploadId;
  {
    await using first = await memoryRegistry({ driver });
    ({ id } = await first.app.services.uploads.start(APP));
    await first.app.services.uploads.append(APP, id, chunk(bytes.subarray(0, 120)));
  }
  // A chunk that was being written when the process died: its bytes, but no new state.
  const w = await driver.append(uploadFileKey(id, "data"), 120);
  await w.write(randomBytes(50));
  w.close();
  await using reg = await memoryRegistry({ driver });
  assert.ok(reg.logs.some((line) => line.includes("resumable=1")), reg.logs.join("\n"));
  assert.equal((await driver.stat(uploadFileKey(id, "data")))?.size, 120);
  const { uploads } = reg.app.services;
  assert.equal((await uploads.status(APP, id)).size, 120);
  const digest = await digestOf(bytes);
  await uploads.complete(APP, id, digest, chunk(bytes.subarray(120), { range: [120, 199] }));
  assert.equal(await reg.app.services.blobs.size(APP, digest), 200);
});

Deno.test("after a restart, a lost hash state is rebuilt from the data", async () => {
  const driver = new MemoryDriver();
  const bytes = randomBytes(300);
  let id: UploadId;
  {
    await using first = await memoryRegistry({ driver });
    ({ id } = await first.app.services.uploads.start(APP));
    await first.app.services.uploads.append(APP, id, chunk(bytes.subarray(0, 100)));
  }
  await driver.put(uploadFileKey(id, "hashstate"), "garbage");
  await using reg = await memoryRegistry({ driver });
  const { uploads } = reg.app.services;
  assert.equal((await uploads.status(APP, id)).size, 100);
  const digest = await digestOf(bytes);
  await uploads.complete(APP, id, digest, chunk(bytes.subarray(100)));
  assert.equal(await reg.app.services.blobs.size(APP, digest), 300);
});

Deno.test("at start, stale sessions and sessions without their files are purged; foreign folders kept", async () => {
  const DAY = 86_400_000;
  let clock = Date.now() - 10 * DAY; // the clock of the registry and of the driver's mtimes
  const driver = new MemoryDriver(() => clock);
  const now = () => new Date(clock);
  const config = { uploadMaxAgeMs: 7 * DAY };
  {
    await using old = await memoryRegistry({ driver, now, config });
    await old.app.services.uploads.start(APP);
  }
  clock += 6 * DAY; // the first session is 6 days old: kept at this start
  let fresh: UploadId;
  let broken: UploadId;
  {
    await using first = await memoryRegistry({ driver, now, config });
    ({ id: fresh } = await first.app.services.uploads.start(APP));
    ({ id: broken } = await first.app.services.uploads.start(APP));
  }
  await driver.delete(uploadFileKey(broken, "repository"));
  await driver.put("uploads/not-a-session/data", "x");
  clock += 2 * DAY; // now 8 days old
  await using reg = await memoryRegistry({ driver, now, config });
  assert.ok(reg.logs.some((line) => line.includes("resumable=1 purged=2")), reg.logs.join("\n"));
  assert.deepEqual(await driver.list("uploads"), [fresh, "not-a-session"].sort());
});

Deno.test("purgeStale removes sessions idle longer than the maximum age, and only those", async () => {
  let clock = Date.now();
  const driver = new MemoryDriver(() => clock);
  await using reg = await memoryRegistry({
    driver,
    now: () => new Date(clock),
    config: { uploadMaxAgeMs: 60_000 },
  });
  const { uploads } = reg.app.services;
  const { id: old } = await uploads.start(APP);
  assert.equal(await uploads.purgeStale(), 0);
  clock += 50_000;
  const { id: young } = await uploads.start(APP);
  clock += 20_000; // `old` is 70 s old, `young` 20 s
  assert.equal(await uploads.purgeStale(), 1);
  assert.deepEqual(await driver.list("uploads"), [young]);
  await assert.rejects(uploads.status(APP, old), registryError("BLOB_UPLOAD_UNKNOWN"));
});

Deno.test("writing to a session keeps it from being purged", async () => {
  let clock = Date.now();
  const driver = new MemoryDriver(() => clock);
  await using reg = await memoryRegistry({
    driver,
    now: () => new Date(clock),
    config: { uploadMaxAgeMs: 60_000 },
  });
  const { uploads } = reg.app.services;
  const { id } = await uploads.start(APP);
  clock += 50_000;
  await uploads.append(APP, id, chunk(encoder.encode("still here")));
  clock += 50_000; // started 100 s ago, written 50 s ago
  assert.equal(await uploads.purgeStale(), 0);
  assert.equal((await uploads.status(APP, id)).size, 10);
});
