/**
 * The key mapper (`src/storage/keys.ts`): the exact key of every function for sample digests
 * (sha256 and sha512), nested repository names, tags and upload ids, and a property that every
 * key made from valid branded values passes the drivers' `checkKey` and has no `.`, `..` or
 * empty part.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { isDigest } from "../../src/digest/digest.ts";
import { checkKey } from "../../src/storage/driver.ts";
import {
  AREAS,
  blobKey,
  FORMAT_KEY,
  layerKey,
  referrerKey,
  referrersKey,
  repositoryKey,
  revisionKey,
  revisionsKey,
  tagKey,
  tagsKey,
  uploadFileKey,
  uploadKey,
} from "../../src/storage/keys.ts";
import { isRepositoryName, isTag, isUploadId } from "../../src/types/names.ts";
import type { Digest, RepositoryName, Tag, UploadId } from "../../src/types/oci.ts";

const HEX256 = "ab" + "0123456789abcdef".repeat(3) + "0123456789abcd";
const HEX512 = "cd" + "fedcba9876543210".repeat(7) + "fedcba98765432";
const SHA256 = `sha256:${HEX256}` as Digest;
const SHA512 = `sha512:${HEX512}` as Digest;
const NAME = "myorg/team/app" as RepositoryName;
const TAG = "v1.2.3-rc_1" as Tag;
const UPLOAD = "0f0e0d0c-0b0a-4098-8776-655443322110" as UploadId;

Deno.test("the sample values are valid branded values", () => {
  assert.equal(HEX256.length, 64);
  assert.equal(HEX512.length, 128);
  assert.ok(isDigest(SHA256) && isDigest(SHA512));
  assert.ok(isRepositoryName(NAME) && isTag(TAG) && isUploadId(UPLOAD));
});

Deno.test("format key and top-level areas", () => {
  assert.equal(FORMAT_KEY, "format.json");
  assert.deepEqual({ ...AREAS }, {
    blobs: "blobs",
    uploads: "uploads",
    repositories: "repositories",
  });
});

Deno.test("blobKey: algorithm, two-character fan-out, then the whole hex", () => {
  assert.equal(blobKey(SHA256), `blobs/sha256/ab/${HEX256}`);
  assert.equal(blobKey(SHA512), `blobs/sha512/cd/${HEX512}`);
});

Deno.test("uploadKey and uploadFileKey: one folder per session, one object per file", () => {
  assert.equal(uploadKey(UPLOAD), `uploads/${UPLOAD}`);
  for (const file of ["data", "startedat", "hashstate", "repository"] as const) {
    assert.equal(uploadFileKey(UPLOAD, file), `uploads/${UPLOAD}/${file}`);
  }
});

Deno.test("repositoryKey keeps the slashes of a nested name", () => {
  assert.equal(repositoryKey("app" as RepositoryName), "repositories/app");
  assert.equal(repositoryKey(NAME), "repositories/myorg/team/app");
});

Deno.test("layerKey: _layers/<alg>/<hex> under the repository, no fan-out", () => {
  assert.equal(layerKey(NAME, SHA256), `repositories/myorg/team/app/_layers/sha256/${HEX256}`);
  assert.equal(layerKey(NAME, SHA512), `repositories/myorg/team/app/_layers/sha512/${HEX512}`);
});

Deno.test("revisionsKey and revisionKey: _manifests/revisions/<alg>/<hex>", () => {
  assert.equal(revisionsKey(NAME), "repositories/myorg/team/app/_manifests/revisions");
  assert.equal(
    revisionKey(NAME, SHA256),
    `repositories/myorg/team/app/_manifests/revisions/sha256/${HEX256}`,
  );
  assert.equal(
    revisionKey(NAME, SHA512),
    `repositories/myorg/team/app/_manifests/revisions/sha512/${HEX512}`,
  );
});

Deno.test("tagsKey and tagKey: _manifests/tags/<tag>, the tag unchanged", () => {
  assert.equal(tagsKey(NAME), "repositories/myorg/team/app/_manifests/tags");
  assert.equal(tagKey(NAME, TAG), "repositories/myorg/team/app/_manifests/tags/v1.2.3-rc_1");
  assert.equal(
    tagKey(NAME, "_Latest" as Tag),
    "repositories/myorg/team/app/_manifests/tags/_Latest",
  );
});

Deno.test("referrersKey and referrerKey: subject folder, referrer named <alg>-<hex>", () => {
  assert.equal(
    referrersKey(NAME, SHA256),
    `repositories/myorg/team/app/_referrers/sha256/${HEX256}`,
  );
  assert.equal(
    referrerKey(NAME, SHA256, SHA512),
    `repositories/myorg/team/app/_referrers/sha256/${HEX256}/sha512-${HEX512}`,
  );
  assert.equal(
    referrerKey(NAME, SHA512, SHA256),
    `repositories/myorg/team/app/_referrers/sha512/${HEX512}/sha256-${HEX256}`,
  );
});

Deno.test("keys of different kinds in one repository never collide", () => {
  const keys = [
    repositoryKey(NAME),
    layerKey(NAME, SHA256),
    revisionKey(NAME, SHA256),
    tagKey(NAME, HEX256 as Tag),
    referrersKey(NAME, SHA256),
    referrerKey(NAME, SHA256, SHA256),
  ];
  assert.equal(new Set(keys).size, keys.length);
});

// Arbitraries of valid branded values, built from the grammars and checked by the predicates.
const component = fc.stringMatching(/^[a-z0-9]{1,6}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,6}){0,3}$/);
const repositoryName = fc.array(component, { minLength: 1, maxLength: 6 })
  .map((parts) => parts.join("/"))
  .filter(isRepositoryName);
const tag = fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/).filter(isTag);
const digest = fc.oneof(
  fc.stringMatching(/^[0-9a-f]{64}$/).map((hex) => `sha256:${hex}`),
  fc.stringMatching(/^[0-9a-f]{128}$/).map((hex) => `sha512:${hex}`),
).filter(isDigest);
const uploadId = fc.uuid().filter(isUploadId);
const uploadFile = fc.constantFrom("data", "startedat", "hashstate", "repository" as const);

/** Every key the mapper can make from one set of values. */
function allKeys(
  name: RepositoryName,
  tagValue: Tag,
  a: Digest,
  b: Digest,
  id: UploadId,
  file: "data" | "startedat" | "hashstate" | "repository",
): string[] {
  return [
    FORMAT_KEY,
    ...Object.values(AREAS),
    blobKey(a),
    uploadKey(id),
    uploadFileKey(id, file),
    repositoryKey(name),
    layerKey(name, a),
    revisionsKey(name),
    revisionKey(name, a),
    tagsKey(name),
    tagKey(name, tagValue),
    referrersKey(name, a),
    referrerKey(name, a, b),
  ];
}

Deno.test("property: every key from valid values passes checkKey, with no '.', '..' or empty part", () => {
  fc.assert(
    fc.property(
      repositoryName,
      tag,
      digest,
      digest,
      uploadId,
      uploadFile,
      (name, tagValue, a, b, id, file) => {
        for (const key of allKeys(name, tagValue, a, b, id, file)) {
          checkKey(key); // throws InvalidKey
          assert.ok(!key.includes("//"), key);
          assert.ok(!key.startsWith("/") && !key.endsWith("/"), key);
          for (const part of key.split("/")) {
            assert.ok(part !== "" && part !== "." && part !== "..", key);
            assert.ok(!part.startsWith("."), key);
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("property: keys made without tags never contain '..' at all", () => {
  fc.assert(
    fc.property(repositoryName, digest, digest, uploadId, uploadFile, (name, a, b, id, file) => {
      for (const key of allKeys(name, "latest" as Tag, a, b, id, file)) {
        assert.ok(!key.includes(".."), key);
        assert.ok(!key.includes("//"), key);
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("a valid tag may contain '..' inside its part, which stays one safe key part", () => {
  // `v1..2` matches the tag grammar; the key holds `..` only inside a part, never as one.
  const tagValue = "v1..2" as Tag;
  assert.ok(isTag(tagValue));
  const key = tagKey(NAME, tagValue);
  assert.equal(key, "repositories/myorg/team/app/_manifests/tags/v1..2");
  checkKey(key);
  assert.ok(!key.split("/").includes(".."));
});

Deno.test("property: distinct values give distinct keys", () => {
  fc.assert(
    fc.property(repositoryName, repositoryName, tag, tag, (n1, n2, t1, t2) => {
      fc.pre(n1 !== n2 || t1 !== t2);
      assert.notEqual(tagKey(n1, t1), tagKey(n2, t2));
    }),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(digest, digest, (a, b) => {
      fc.pre(a !== b);
      assert.notEqual(blobKey(a), blobKey(b));
      assert.notEqual(revisionKey(NAME, a), revisionKey(NAME, b));
      assert.notEqual(layerKey(NAME, a), layerKey(NAME, b));
    }),
    { numRuns: 200 },
  );
});
