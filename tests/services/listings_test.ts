/**
 * Listings: `paginate` (with a fast-check property that following `next` walks a sorted list
 * exactly once), and over `memoryRegistry()` the tag list (lexical order, pages, 404 for an
 * unknown repository), the catalog (nested names, pages, a repository leaving when its last
 * object goes) and the referrers of a digest (every manifest with that subject, the
 * artifactType filter, the config media type standing in for a missing artifactType).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { RegistryError } from "../../src/errors.ts";
import { type PageResult, paginate } from "../../src/services/listings.ts";
import type { Digest, RepositoryName } from "../../src/types/oci.ts";
import { ociManifest } from "../helpers/manifests.ts";
import { OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";
import { memoryRegistry, pushBlob, randomBytes } from "../helpers/registry.ts";
import {
  errorOf,
  type PushedImage,
  pushImage,
  pushImageBlobs,
  putManifest,
  status,
} from "./fixtures.ts";

const repo = (value: string) => value as RepositoryName;
const ALL = { n: null, last: null };

Deno.test("paginate without n gives everything after last, and no next", () => {
  const list = ["a", "b", "c", "d"];
  assert.deepEqual(paginate(list, ALL), { items: list, next: null });
  assert.deepEqual(paginate(list, { n: null, last: "b" }), { items: ["c", "d"], next: null });
  assert.deepEqual(paginate(list, { n: null, last: "bb" }), { items: ["c", "d"], next: null });
  assert.deepEqual(paginate(list, { n: null, last: "z" }), { items: [], next: null });
  assert.deepEqual(paginate(list, { n: null, last: "0" }), { items: list, next: null });
});

Deno.test("paginate with n cuts the page and names its last item as next while more remain", () => {
  const list = ["a", "b", "c", "d", "e"];
  assert.deepEqual(paginate(list, { n: 2, last: null }), { items: ["a", "b"], next: "b" });
  assert.deepEqual(paginate(list, { n: 2, last: "b" }), { items: ["c", "d"], next: "d" });
  assert.deepEqual(paginate(list, { n: 2, last: "d" }), { items: ["e"], next: null });
  assert.deepEqual(paginate(list, { n: 5, last: null }), { items: list, next: null });
  assert.deepEqual(paginate(list, { n: 0, last: null }), { items: [], next: null });
});

Deno.test("property: following next walks a sorted list exactly once, whatever n", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.stringMatching(/^[a-z0-9._-]{1,8}$/), { maxLength: 40 }),
      fc.integer({ min: 1, max: 12 }),
      (values, n) => {
        const sorted = [...values].sort();
        const seen: string[] = [];
        let last: string | null = null;
        for (let pages = 0; pages <= sorted.length + 1; pages++) {
          const { items, next }: PageResult<string> = paginate(sorted, { n, last });
          assert.ok(items.length <= n);
          seen.push(...items);
          if (next === null) break;
          assert.equal(next, items[items.length - 1]);
          last = next;
        }
        assert.deepEqual(seen, sorted);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("tags lists a repository's tags in lexical (byte) order", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "app");
  for (const tag of ["v10", "v2", "latest", "V1", "_x", "1.0"]) {
    (await putManifest(reg, "app", tag, image.bytes)).body?.cancel();
  }
  const { items, next } = await reg.app.services.listings.tags(repo("app"), ALL);
  assert.deepEqual(items, ["1.0", "V1", "_x", "latest", "v10", "v2"]);
  assert.equal(next, null);
});

Deno.test("tags pages with n and last, and the route links to the next page", async () => {
  await using reg = await memoryRegistry();
  const image = await pushImage(reg, "org/app");
  for (const tag of ["a", "b", "c", "d", "e"]) {
    (await putManifest(reg, "org/app", tag, image.bytes)).body?.cancel();
  }
  const { listings } = reg.app.services;
  assert.deepEqual(await listings.tags(repo("org/app"), { n: 2, last: "a" }), {
    items: ["b", "c"],
    next: "c",
  });
  const res = await reg.fetch("/v2/org/app/tags/list?n=2&last=a");
  assert.deepEqual(await res.json(), { name: "org/app", tags: ["b", "c"] });
  assert.equal(res.headers.get("link"), `</v2/org/app/tags/list?n=2&last=c>; rel="next"`);
  const end = await reg.fetch("/v2/org/app/tags/list?n=2&last=c");
  assert.deepEqual((await end.json()).tags, ["d", "e"]);
  assert.equal(end.headers.get("link"), null);
});

Deno.test("tags of an unknown repository is NAME_UNKNOWN; of one with only blobs, empty", async () => {
  await using reg = await memoryRegistry();
  await assert.rejects(
    reg.app.services.listings.tags(repo("nowhere"), ALL),
    (error) => error instanceof RegistryError && error.code === "NAME_UNKNOWN",
  );
  const res = await reg.fetch("/v2/nowhere/tags/list");
  assert.equal(res.status, 404);
  assert.deepEqual((await errorOf(res)).detail, { name: "nowhere" });
  await pushBlob(reg, "blobs-only", randomBytes(4));
  assert.deepEqual(await reg.app.services.listings.tags(repo("blobs-only"), ALL), {
    items: [],
    next: null,
  });
});

Deno.test("a bad page size is 400 on tags and catalog", async () => {
  await using reg = await memoryRegistry();
  await pushImage(reg, "app", { reference: "v1" });
  for (const path of ["/v2/app/tags/list?n=-1", "/v2/_catalog?n=abc"]) {
    const res = await reg.fetch(path);
    assert.equal(res.status, 400, path);
    assert.equal((await errorOf(res)).code, "UNSUPPORTED");
  }
});

Deno.test("catalog lists nested repository names in lexical order", async () => {
  await using reg = await memoryRegistry();
  for (const name of ["zeta", "a/b/c", "a", "a/b-c", "m/n"]) {
    await pushBlob(reg, name, randomBytes(4));
  }
  const { items, next } = await reg.app.services.listings.catalog(ALL);
  assert.deepEqual(items, ["a", "a/b-c", "a/b/c", "m/n", "zeta"]);
  assert.equal(next, null);
  const res = await reg.fetch("/v2/_catalog");
  assert.deepEqual(await res.json(), { repositories: items });
});

Deno.test("catalog pages follow Link to the end", async () => {
  await using reg = await memoryRegistry();
  const names = ["r1", "r2", "r3", "r4", "r5", "r6", "r7"];
  for (const name of names) await pushBlob(reg, name, randomBytes(4));
  const seen: string[] = [];
  let path: string | null = "/v2/_catalog?n=3";
  let pages = 0;
  while (path !== null) {
    const res: Response = await reg.fetch(path);
    seen.push(...(await res.json()).repositories);
    path = /<([^>]+)>; rel="next"/.exec(res.headers.get("link") ?? "")?.[1] ?? null;
    pages++;
  }
  assert.deepEqual(seen, names);
  assert.equal(pages, 3);
});

Deno.test("catalog drops a repository when its last object goes and adds one on its first", async () => {
  await using reg = await memoryRegistry();
  const { listings } = reg.app.services;
  const digest = await pushBlob(reg, "temp", randomBytes(4));
  await pushBlob(reg, "kept", randomBytes(4));
  assert.deepEqual((await listings.catalog(ALL)).items, ["kept", "temp"]);
  assert.equal(await status(reg, `/v2/temp/blobs/${digest}`, { method: "DELETE" }), 202);
  assert.deepEqual((await listings.catalog(ALL)).items, ["kept"]);
  await pushBlob(reg, "new", randomBytes(4));
  assert.deepEqual((await listings.catalog(ALL)).items, ["kept", "new"]);
});

/** Puts an artifact with `subject` into `name`; returns its digest. */
async function pushReferrer(
  reg: Awaited<ReturnType<typeof memoryRegistry>>,
  name: string,
  subject: PushedImage,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const parts = await pushImageBlobs(reg, name);
  const { bytes, digest } = await ociManifest(parts, {
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.bytes.length },
    ...extra,
  });
  const put = await putManifest(reg, name, digest, bytes);
  await put.body?.cancel();
  assert.equal(put.status, 201);
  return digest;
}

interface ReferrerList {
  schemaVersion: number;
  mediaType: string;
  manifests: { digest: string; artifactType?: string; annotations?: Record<string, string> }[];
}

Deno.test("referrers lists every manifest of the repository with that subject, as an index", async () => {
  await using reg = await memoryRegistry();
  const subject = await pushImage(reg, "app");
  const sig = await pushReferrer(reg, "app", subject, { artifactType: "application/sig" });
  const sbom = await pushReferrer(reg, "app", subject, {
    artifactType: "application/sbom",
    annotations: { "org.example": "yes" },
  });
  const list = JSON.parse(
    await reg.app.services.listings.referrers(repo("app"), subject.digest as Digest, null),
  ) as ReferrerList;
  assert.equal(list.schemaVersion, 2);
  assert.equal(list.mediaType, OCI_INDEX);
  assert.deepEqual(list.manifests.map((m) => m.digest), [sig, sbom].sort());
  const withAnnotations = list.manifests.find((m) => m.digest === sbom);
  assert.deepEqual(withAnnotations?.annotations, { "org.example": "yes" });
});

Deno.test("referrers filters by artifactType and says so", async () => {
  await using reg = await memoryRegistry();
  const subject = await pushImage(reg, "app");
  const sig = await pushReferrer(reg, "app", subject, { artifactType: "application/sig" });
  await pushReferrer(reg, "app", subject, { artifactType: "application/sbom" });
  const res = await reg.fetch(`/v2/app/referrers/${subject.digest}?artifactType=application/sig`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("oci-filters-applied"), "artifactType");
  assert.equal(res.headers.get("content-type"), OCI_INDEX);
  const list = await res.json() as ReferrerList;
  assert.deepEqual(list.manifests.map((m) => m.digest), [sig]);
  const none = await reg.app.services.listings.referrers(
    repo("app"),
    subject.digest as Digest,
    "application/none",
  );
  assert.deepEqual(JSON.parse(none).manifests, []);
  const unfiltered = await reg.fetch(`/v2/app/referrers/${subject.digest}`);
  assert.equal(unfiltered.headers.get("oci-filters-applied"), null);
  await unfiltered.body?.cancel();
});

Deno.test("a referrer without artifactType is listed with its config's media type", async () => {
  await using reg = await memoryRegistry();
  const subject = await pushImage(reg, "app");
  const digest = await pushReferrer(reg, "app", subject);
  const list = JSON.parse(
    await reg.app.services.listings.referrers(repo("app"), subject.digest as Digest, null),
  ) as ReferrerList;
  assert.deepEqual(list.manifests.map((m) => [m.digest, m.artifactType]), [[
    digest,
    "application/vnd.oci.image.config.v1+json",
  ]]);
});

Deno.test("referrers are per repository; an unknown subject or repository gives an empty list", async () => {
  await using reg = await memoryRegistry();
  const subject = await pushImage(reg, "app");
  await pushReferrer(reg, "app", subject, { artifactType: "application/sig" });
  const { listings } = reg.app.services;
  for (
    const [name, digest] of [
      ["other", subject.digest],
      ["app", `sha256:${"9".repeat(64)}`],
    ]
  ) {
    const list = JSON.parse(await listings.referrers(repo(name), digest as Digest, null));
    assert.deepEqual(list.manifests, [], `${name} ${digest}`);
  }
});
