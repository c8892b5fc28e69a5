/**
 * The MD5 of S3 request bodies (`Content-MD5`), hashed off the JavaScript thread by libcrypto:
 * the same digests as node:crypto's, whole or fed in pieces, on both sides of the size below
 * which it stays on the JS thread.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createMd5, md5Base64 } from "../../src/digest/md5.ts";

const reference = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("base64");
const pattern = (length: number) => new Uint8Array(length).map((_, i) => (i * 31 + (i >> 9)) % 251);

Deno.test("md5: RFC 1321's digests of the empty string and of abc", async () => {
  assert.equal(await md5Base64(new Uint8Array(0)), "1B2M2Y8AsgTpgAmY7PhCfg==");
  assert.equal(await md5Base64(new TextEncoder().encode("abc")), "kAFQmDzST7DWlj99KOF/cg==");
});

Deno.test("md5: whole bodies on both sides of the small-body size give node:crypto's digest", async () => {
  for (const length of [1, 65535, 65536, 65537, 3 * 1024 * 1024 + 7]) {
    const bytes = pattern(length);
    assert.equal(await md5Base64(bytes), reference(bytes), `${length} bytes`);
  }
});

Deno.test("md5: a body fed in pieces of any sizes gives the digest of the whole", async () => {
  const bytes = pattern(2 * 1024 * 1024 + 333);
  const hash = createMd5();
  for (
    const [from, to] of [[0, 1], [1, 64], [64, 300_001], [300_001, 300_001], [
      300_001,
      bytes.length,
    ]]
  ) {
    await hash.update(bytes.subarray(from, to));
  }
  assert.equal(hash.digest(), reference(bytes));
});

Deno.test("md5: a digest taken part-way leaves the hash going on to the digest of the whole", async () => {
  const bytes = pattern(300_000);
  const hash = createMd5();
  await hash.update(bytes.subarray(0, 100_000));
  assert.equal(hash.digest(), reference(bytes.subarray(0, 100_000)));
  assert.equal(hash.digest(), reference(bytes.subarray(0, 100_000)));
  await hash.update(bytes.subarray(100_000));
  assert.equal(hash.digest(), reference(bytes));
});
