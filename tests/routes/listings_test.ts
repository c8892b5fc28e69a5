import assert from "node:assert/strict";
import { ociManifest, pushImageBlobs, putManifest } from "../helpers/manifests.ts";
import {
  errorCode,
  pushBlob,
  randomBytes,
  sha256Digest,
  tempRegistry,
} from "../helpers/registry.ts";

Deno.test("tags/list pages in lexical order with n, last and Link", async (t) => {
  await using reg = await tempRegistry();
  const { bytes } = await ociManifest(await pushImageBlobs(reg, "org/app"));
  const tags = ["v10", "v2", "latest", "V1", "a_b", "1.0"];
  for (const tag of tags) (await putManifest(reg, "org/app", tag, bytes)).body?.cancel();
  const sorted = [...tags].sort();
  await t.step("whole list, sorted", async () => {
    const res = await reg.fetch("/v2/org/app/tags/list");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(res.headers.get("link"), null);
    assert.deepEqual(await res.json(), { name: "org/app", tags: sorted });
  });
  await t.step("n cuts the list and Link points to the next page", async () => {
    const res = await reg.fetch("/v2/org/app/tags/list?n=2");
    assert.deepEqual((await res.json()).tags, sorted.slice(0, 2));
    assert.equal(
      res.headers.get("link"),
      `</v2/org/app/tags/list?n=2&last=${sorted[1]}>; rel="next"`,
    );
  });
  await t.step("following Link walks the whole list", async () => {
    const seen: string[] = [];
    let path: string | null = "/v2/org/app/tags/list?n=4";
    while (path) {
      const res: Response = await reg.fetch(path);
      seen.push(...(await res.json()).tags);
      path = /<([^>]+)>/.exec(res.headers.get("link") ?? "")?.[1] ?? null;
    }
    assert.deepEqual(seen, sorted);
  });
  await t.step(
    "last starts strictly after; exactly n when n remain; none after the end",
    async () => {
      const res = await reg.fetch(`/v2/org/app/tags/list?n=3&last=${sorted[2]}`);
      assert.deepEqual((await res.json()).tags, sorted.slice(3, 6));
      assert.equal(res.headers.get("link"), null);
      const after = await reg.fetch(`/v2/org/app/tags/list?last=${sorted[5]}`);
      assert.deepEqual((await after.json()).tags, []);
      const between = await reg.fetch("/v2/org/app/tags/list?last=b");
      assert.deepEqual((await between.json()).tags, sorted.filter((x) => x > "b"));
    },
  );
  await t.step("n=0 gives an empty list and no Link", async () => {
    const res = await reg.fetch("/v2/org/app/tags/list?n=0");
    assert.deepEqual((await res.json()).tags, []);
    assert.equal(res.headers.get("link"), null);
  });
  await t.step("a bad n is 400", async () => {
    for (const n of ["-1", "abc", "1e9", "", "1.5"]) {
      const res = await reg.fetch(`/v2/org/app/tags/list?n=${n}`);
      assert.equal(res.status, 400, n);
      assert.ok((await errorCode(res)).length > 0);
    }
  });
});

Deno.test("HEAD answers from GET where a route has no HEAD of its own", async () => {
  await using reg = await tempRegistry();
  const base = await reg.fetch("/v2/", { method: "HEAD" });
  assert.equal(base.status, 200);
  assert.equal(base.headers.get("content-length"), "2");
  assert.equal(base.headers.get("docker-distribution-api-version"), "registry/2.0");
  assert.equal((await base.arrayBuffer()).byteLength, 0);
  const tags = await reg.fetch("/v2/ghost/tags/list", { method: "HEAD" });
  assert.equal(tags.status, 404);
  assert.equal((await tags.arrayBuffer()).byteLength, 0);
});

Deno.test("tags/list of an unknown repository is 404 NAME_UNKNOWN; of a repo with blobs only, []", async () => {
  await using reg = await tempRegistry();
  const res = await reg.fetch("/v2/ghost/tags/list");
  assert.equal(res.status, 404);
  assert.equal(await errorCode(res), "NAME_UNKNOWN");
  await pushBlob(reg, "blobsonly", randomBytes(3));
  const blobsOnly = await reg.fetch("/v2/blobsonly/tags/list");
  assert.equal(blobsOnly.status, 200);
  assert.deepEqual(await blobsOnly.json(), { name: "blobsonly", tags: [] });
});

Deno.test("_catalog lists repositories sorted, pages with n/last/Link", async () => {
  await using reg = await tempRegistry();
  const names = ["zeta", "alpha/one", "alpha", "mid/a/b"];
  for (const name of names) await pushBlob(reg, name, randomBytes(4));
  const all = await reg.fetch("/v2/_catalog");
  assert.equal(all.status, 200);
  assert.deepEqual(await all.json(), { repositories: [...names].sort() });
  const page = await reg.fetch("/v2/_catalog?n=2");
  assert.deepEqual((await page.json()).repositories, ["alpha", "alpha/one"]);
  assert.equal(page.headers.get("link"), `</v2/_catalog?n=2&last=alpha%2Fone>; rel="next"`);
  const next = await reg.fetch("/v2/_catalog?n=2&last=alpha%2Fone");
  assert.deepEqual((await next.json()).repositories, ["mid/a/b", "zeta"]);
  assert.equal(next.headers.get("link"), null);
  const bad = await reg.fetch("/v2/_catalog?n=-1");
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
});

Deno.test("_catalog of a restarted registry finds the repositories already on disk", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    {
      await using reg = await tempRegistry({ dataDir });
      await pushBlob(reg, "b/c", randomBytes(4));
      await pushBlob(reg, "a", randomBytes(4));
    }
    await using again = await tempRegistry({ dataDir });
    const res = await again.fetch("/v2/_catalog");
    assert.deepEqual(await res.json(), { repositories: ["a", "b/c"] });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("referrers lists manifests whose subject is the digest, filters by artifactType", async (t) => {
  await using reg = await tempRegistry();
  const image = await ociManifest(await pushImageBlobs(reg, "app"));
  (await putManifest(reg, "app", "v1", image.bytes)).body?.cancel();
  const emptyConfig = new TextEncoder().encode("{}");
  const emptyDigest = await pushBlob(reg, "app", emptyConfig);
  const layer = (await pushImageBlobs(reg, "app")).layers;
  const subject = {
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: image.digest,
    size: image.bytes.length,
  };
  const sbom = await ociManifest({
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: emptyDigest, size: 2 },
    layers: layer,
  }, {
    artifactType: "application/vnd.example.sbom",
    subject,
    annotations: { "org.opencontainers.image.created": "2026-01-01T00:00:00Z", x: "1" },
  });
  const sig = await ociManifest({
    config: { mediaType: "application/vnd.example.sig.config", digest: emptyDigest, size: 2 },
    layers: layer,
  }, { subject });
  for (const m of [sbom, sig]) {
    const put = await putManifest(reg, "app", m.digest, m.bytes);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("oci-subject"), image.digest);
  }
  await t.step("both referrers with artifactType and annotations", async () => {
    const res = await reg.fetch(`/v2/app/referrers/${image.digest}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/vnd.oci.image.index.v1+json");
    assert.equal(res.headers.get("oci-filters-applied"), null);
    const index = await res.json();
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    const byDigest = Object.fromEntries(
      index.manifests.map((d: { digest: string }) => [d.digest, d]),
    );
    assert.deepEqual(byDigest[sbom.digest], {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: sbom.digest,
      size: sbom.bytes.length,
      artifactType: "application/vnd.example.sbom",
      annotations: { "org.opencontainers.image.created": "2026-01-01T00:00:00Z", x: "1" },
    });
    assert.deepEqual(byDigest[sig.digest], {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: sig.digest,
      size: sig.bytes.length,
      artifactType: "application/vnd.example.sig.config",
    });
    assert.equal(index.manifests.length, 2);
  });
  await t.step("artifactType filter and OCI-Filters-Applied", async () => {
    const res = await reg.fetch(
      `/v2/app/referrers/${image.digest}?artifactType=application/vnd.example.sbom`,
    );
    assert.equal(res.headers.get("oci-filters-applied"), "artifactType");
    const index = await res.json();
    assert.deepEqual(index.manifests.map((d: { digest: string }) => d.digest), [sbom.digest]);
  });
  await t.step("a deleted referrer disappears", async () => {
    const del = await reg.fetch(`/v2/app/manifests/${sbom.digest}`, { method: "DELETE" });
    assert.equal(del.status, 202);
    await del.body?.cancel();
    const index = await (await reg.fetch(`/v2/app/referrers/${image.digest}`)).json();
    assert.deepEqual(index.manifests.map((d: { digest: string }) => d.digest), [sig.digest]);
  });
  await t.step("no referrers, or an unknown subject or repository: 200 with []", async () => {
    for (
      const path of [
        `/v2/app/referrers/${sbom.digest}`,
        `/v2/app/referrers/${await sha256Digest(randomBytes(3))}`,
        `/v2/ghost/referrers/${image.digest}`,
      ]
    ) {
      const res = await reg.fetch(path);
      assert.equal(res.status, 200, path);
      assert.deepEqual((await res.json()).manifests, [], path);
    }
  });
  await t.step("an invalid digest is 400", async () => {
    const res = await reg.fetch("/v2/app/referrers/sha256:nope");
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), "DIGEST_INVALID");
  });
});
