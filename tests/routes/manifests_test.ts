import assert from "node:assert/strict";
import { join } from "node:path";
import { jsonBytes, ociManifest, pushImageBlobs, putManifest } from "../helpers/manifests.ts";
import { errorCode, randomBytes, sha256Digest, tempRegistry } from "../helpers/registry.ts";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";

Deno.test("PUT by tag: 201, Location by digest, Docker-Content-Digest, exact bytes stored", async (t) => {
  await using reg = await tempRegistry();
  const parts = await pushImageBlobs(reg, "myorg/app", { layers: 2 });
  const { bytes, digest } = await ociManifest(parts);
  const put = await putManifest(reg, "myorg/app", "v1.0", bytes);
  await t.step("201 with the story's headers", async () => {
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("location"), `/v2/myorg/app/manifests/${digest}`);
    assert.equal(put.headers.get("docker-content-digest"), digest);
    assert.equal(put.headers.get("oci-subject"), null);
    await put.body?.cancel();
  });
  await t.step("GET by tag and by digest return the exact bytes and the media type", async () => {
    for (const reference of ["v1.0", digest]) {
      const get = await reg.fetch(`/v2/myorg/app/manifests/${reference}`);
      assert.equal(get.status, 200);
      assert.equal(get.headers.get("content-type"), OCI_MANIFEST);
      assert.equal(get.headers.get("docker-content-digest"), digest);
      assert.equal(get.headers.get("content-length"), String(bytes.length));
      assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
    }
  });
  await t.step("HEAD carries the same headers and no body", async () => {
    const head = await reg.fetch(`/v2/myorg/app/manifests/v1.0`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), OCI_MANIFEST);
    assert.equal(head.headers.get("content-length"), String(bytes.length));
    assert.equal(head.headers.get("docker-content-digest"), digest);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });
  await t.step("revision and tag on disk", async () => {
    const repo = join(reg.dataDir, "repositories", "myorg", "app", "_manifests");
    const tag = await Deno.readTextFile(join(repo, "tags", "v1.0"));
    assert.equal(tag, digest);
    assert.ok((await Deno.stat(join(repo, "revisions", "sha256", digest.slice(7)))).isFile);
  });
});

Deno.test("GET returns the stored media type whatever Accept says, uncompressed", async () => {
  await using reg = await tempRegistry();
  const { bytes } = await ociManifest(await pushImageBlobs(reg, "app"));
  (await putManifest(reg, "app", "latest", bytes)).body?.cancel();
  for (const accept of [null, DOCKER_MANIFEST, "*/*", "text/html"]) {
    const headers: Record<string, string> = { "accept-encoding": "gzip" };
    if (accept) headers.accept = accept;
    const get = await reg.fetch("/v2/app/manifests/latest", { headers });
    assert.equal(get.status, 200, String(accept));
    assert.equal(get.headers.get("content-type"), OCI_MANIFEST);
    assert.equal(get.headers.get("content-encoding"), null);
    assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
  }
});

Deno.test("the four media types of story 008 are accepted", async (t) => {
  await using reg = await tempRegistry();
  await t.step("Docker schema2 manifest", async () => {
    const parts = await pushImageBlobs(reg, "app", {
      configType: "application/vnd.docker.container.image.v1+json",
      layerType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    });
    const { bytes, digest } = await jsonBytes({
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: parts.config,
      layers: parts.layers,
    });
    const put = await putManifest(reg, "app", "docker", bytes, DOCKER_MANIFEST);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("docker-content-digest"), digest);
    const get = await reg.fetch("/v2/app/manifests/docker");
    assert.equal(get.headers.get("content-type"), DOCKER_MANIFEST);
    await get.body?.cancel();
  });
  const child = await ociManifest(await pushImageBlobs(reg, "app"));
  (await putManifest(reg, "app", child.digest, child.bytes)).body?.cancel();
  for (const [mediaType, tag] of [[OCI_INDEX, "index"], [DOCKER_LIST, "list"]]) {
    await t.step(mediaType, async () => {
      const { bytes, digest } = await jsonBytes({
        schemaVersion: 2,
        mediaType,
        manifests: [{
          mediaType: mediaType === OCI_INDEX ? OCI_MANIFEST : DOCKER_MANIFEST,
          digest: child.digest,
          size: child.bytes.length,
          platform: { architecture: "amd64", os: "linux" },
        }],
      });
      const put = await putManifest(reg, "app", tag, bytes, mediaType);
      assert.equal(put.status, 201);
      assert.equal(put.headers.get("docker-content-digest"), digest);
      const get = await reg.fetch(`/v2/app/manifests/${tag}`);
      assert.equal(get.headers.get("content-type"), mediaType);
      assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
    });
  }
  await t.step("OCI image manifest", async () => {
    const { bytes } = await ociManifest(await pushImageBlobs(reg, "app"));
    const put = await putManifest(reg, "app", "oci", bytes, `${OCI_MANIFEST}; charset=utf-8`);
    assert.equal(put.status, 201);
    await put.body?.cancel();
  });
});

Deno.test("an OCI artifact with subject answers OCI-Subject; the subject need not exist", async () => {
  await using reg = await tempRegistry();
  const emptyConfig = new TextEncoder().encode("{}");
  const parts = await pushImageBlobs(reg, "app");
  const configDigest = await sha256Digest(emptyConfig);
  await reg.fetch(`/v2/app/blobs/uploads/?digest=${configDigest}`, {
    method: "POST",
    body: emptyConfig,
  }).then((r) => r.body?.cancel());
  const subject = await sha256Digest(randomBytes(8));
  const { bytes, digest } = await ociManifest({
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: configDigest, size: 2 },
    layers: parts.layers,
  }, {
    artifactType: "application/vnd.example.sbom",
    subject: { mediaType: OCI_MANIFEST, digest: subject, size: 123 },
  });
  const put = await putManifest(reg, "app", digest, bytes);
  assert.equal(put.status, 201);
  assert.equal(put.headers.get("oci-subject"), subject);
  await put.body?.cancel();
});

Deno.test("a tag may move between media types", async () => {
  await using reg = await tempRegistry();
  const oci = await ociManifest(await pushImageBlobs(reg, "app"));
  (await putManifest(reg, "app", oci.digest, oci.bytes)).body?.cancel();
  const index = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ mediaType: OCI_MANIFEST, digest: oci.digest, size: oci.bytes.length }],
  });
  const first = await putManifest(reg, "app", "latest", oci.bytes);
  assert.equal(first.status, 201);
  const second = await putManifest(reg, "app", "latest", index.bytes, OCI_INDEX);
  assert.equal(second.status, 201);
  const get = await reg.fetch("/v2/app/manifests/latest");
  assert.equal(get.headers.get("content-type"), OCI_INDEX);
  assert.equal(get.headers.get("docker-content-digest"), index.digest);
  await get.body?.cancel();
});

Deno.test("conditional manifest GET and HEAD by tag and digest: If-None-Match 304 while the tag stays, 200 once it moves; If-Match 412", async () => {
  await using reg = await tempRegistry();
  const first = await ociManifest(await pushImageBlobs(reg, "app"));
  const second = await ociManifest(await pushImageBlobs(reg, "app"));
  assert.notEqual(first.digest, second.digest);
  (await putManifest(reg, "app", "latest", first.bytes)).body?.cancel();
  const etag = `"${first.digest}"`;
  const ask = async (reference: string, headers: Record<string, string>, method = "GET") => {
    const res = await reg.fetch(`/v2/app/manifests/${reference}`, { method, headers });
    return { res, body: new Uint8Array(await res.arrayBuffer()) };
  };
  for (const method of ["GET", "HEAD"]) {
    for (const reference of ["latest", first.digest]) {
      for (const value of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
        const { res, body } = await ask(reference, { "If-None-Match": value }, method);
        assert.equal(res.status, 304, `${method} ${reference} If-None-Match: ${value}`);
        assert.equal(res.headers.get("etag"), etag);
        assert.equal(res.headers.get("docker-content-digest"), first.digest);
        assert.equal(res.headers.get("content-type"), null);
        assert.equal(body.length, 0);
      }
      const fresh = await ask(reference, { "If-None-Match": '"other"' }, method);
      assert.equal(fresh.res.status, 200);
      if (method === "GET") assert.deepEqual(fresh.body, first.bytes);
      for (const value of ['"nope"', `W/${etag}`]) {
        const { res } = await ask(reference, { "If-Match": value }, method);
        assert.equal(res.status, 412, `${method} ${reference} If-Match: ${value}`);
        assert.equal(res.headers.get("etag"), etag);
      }
      assert.equal((await ask(reference, { "If-Match": etag }, method)).res.status, 200);
    }
  }
  // the tag moves: the client's copy is stale, the new manifest comes whole
  (await putManifest(reg, "app", "latest", second.bytes)).body?.cancel();
  const moved = await ask("latest", { "If-None-Match": etag });
  assert.equal(moved.res.status, 200);
  assert.equal(moved.res.headers.get("etag"), `"${second.digest}"`);
  assert.deepEqual(moved.body, second.bytes);
  assert.equal((await ask("latest", { "If-Match": etag })).res.status, 412);
  // a precondition on a manifest that is not there: still 404
  const missing = await ask("nothing", { "If-None-Match": "*" });
  assert.equal(missing.res.status, 404);
});

Deno.test("invalid manifests are 400 MANIFEST_INVALID", async () => {
  await using reg = await tempRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const enc = (v: unknown) =>
    new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
  const cases: [string, Uint8Array<ArrayBuffer>, string][] = [
    ["not JSON", enc("{nope"), OCI_MANIFEST],
    ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), OCI_MANIFEST],
    [
      "a valid manifest after a byte order mark (Go's encoding/json refuses it)",
      new Uint8Array([0xef, 0xbb, 0xbf, ...enc({ schemaVersion: 2, ...parts })]),
      OCI_MANIFEST,
    ],
    ["an array", enc([1, 2]), OCI_MANIFEST],
    ["schemaVersion 1", enc({ schemaVersion: 1, ...parts }), OCI_MANIFEST],
    ["no config", enc({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }), OCI_MANIFEST],
    [
      "layers not an array",
      enc({ schemaVersion: 2, config: parts.config, layers: {} }),
      OCI_MANIFEST,
    ],
    [
      "bad descriptor digest",
      enc({ schemaVersion: 2, config: { ...parts.config, digest: "sha256:xyz" }, layers: [] }),
      OCI_MANIFEST,
    ],
    [
      "negative size",
      enc({ schemaVersion: 2, config: { ...parts.config, size: -1 }, layers: [] }),
      OCI_MANIFEST,
    ],
    [
      "Content-Type disagrees with mediaType",
      enc({ schemaVersion: 2, mediaType: OCI_MANIFEST, ...parts }),
      DOCKER_MANIFEST,
    ],
    ["unknown media type", enc({ schemaVersion: 2, ...parts }), "application/x-foo"],
    ["index without manifests", enc({ schemaVersion: 2, mediaType: OCI_INDEX }), OCI_INDEX],
  ];
  for (const [what, bytes, contentType] of cases) {
    const put = await putManifest(reg, "app", "bad", bytes, contentType);
    assert.equal(put.status, 400, what);
    assert.equal(await errorCode(put), "MANIFEST_INVALID", what);
  }
  const tags = await reg.fetch("/v2/app/tags/list");
  assert.deepEqual((await tags.json()).tags, []);
});

Deno.test("a manifest naming a missing blob or child is MANIFEST_BLOB_UNKNOWN with the digest", async () => {
  await using reg = await tempRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const missing = await sha256Digest(randomBytes(16));
  const layer = { ...parts.layers[0], digest: missing };
  const { bytes } = await ociManifest({ config: parts.config, layers: [layer] });
  const put = await putManifest(reg, "app", "x", bytes);
  assert.equal(put.status, 400);
  const body = await put.json();
  assert.equal(body.errors[0].code, "MANIFEST_BLOB_UNKNOWN");
  assert.deepEqual(body.errors[0].detail, { digest: missing });
  // A blob of another repository is not enough.
  const other = await pushImageBlobs(reg, "other");
  const foreign = await ociManifest({ config: other.config, layers: parts.layers });
  const put2 = await putManifest(reg, "app", "y", foreign.bytes);
  assert.equal(put2.status, 400);
  assert.equal(await errorCode(put2), "MANIFEST_BLOB_UNKNOWN");
  const index = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ mediaType: OCI_MANIFEST, digest: missing, size: 10 }],
  });
  const put3 = await putManifest(reg, "app", "z", index.bytes, OCI_INDEX);
  assert.equal(put3.status, 400);
  assert.equal(await errorCode(put3), "MANIFEST_BLOB_UNKNOWN");
});

Deno.test("a descriptor whose size is not its content's is MANIFEST_INVALID; nothing is stored", async () => {
  await using reg = await tempRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const layer = parts.layers[0]!;
  const cases = [
    { what: "layer", config: parts.config, layers: [{ ...layer, size: layer.size + 1 }] },
    { what: "config", config: { ...parts.config, size: parts.config.size - 1 }, layers: [layer] },
  ];
  for (const { what, config, layers } of cases) {
    const { bytes } = await ociManifest({ config, layers });
    const put = await putManifest(reg, "app", what, bytes);
    assert.equal(put.status, 400, what);
    const body = await put.json();
    assert.equal(body.errors[0].code, "MANIFEST_INVALID", what);
    const wrong = what === "layer" ? layers[0]! : config;
    assert.deepEqual(body.errors[0].detail, {
      digest: wrong.digest,
      size: wrong.size,
      stored: what === "layer" ? layer.size : parts.config.size,
    });
    assert.equal((await reg.fetch(`/v2/app/manifests/${what}`)).status, 404, what);
  }
  // the same with the right sizes is stored; an index is held to its children's sizes
  const good = await ociManifest(parts);
  assert.equal((await putManifest(reg, "app", "good", good.bytes)).status, 201);
  const child = { mediaType: OCI_MANIFEST, digest: good.digest, size: good.bytes.length };
  for (const size of [child.size + 7, child.size]) {
    const index = await jsonBytes({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ ...child, size }],
    });
    const put = await putManifest(reg, "app", "all", index.bytes, OCI_INDEX);
    if (size === child.size) assert.equal(put.status, 201);
    else {
      assert.equal(put.status, 400);
      const error = (await put.json()).errors[0];
      assert.equal(error.code, "MANIFEST_INVALID");
      assert.deepEqual(error.detail, { digest: child.digest, size, stored: child.size });
    }
  }
  const tags = await reg.fetch("/v2/app/tags/list");
  assert.deepEqual((await tags.json()).tags.sort(), ["all", "good"]);
});

Deno.test("PUT by a digest the body does not have is 400 DIGEST_INVALID", async () => {
  await using reg = await tempRegistry();
  const { bytes } = await ociManifest(await pushImageBlobs(reg, "app"));
  const wrong = await sha256Digest(randomBytes(4));
  const put = await putManifest(reg, "app", wrong, bytes);
  assert.equal(put.status, 400);
  assert.equal(await errorCode(put), "DIGEST_INVALID");
  const get = await reg.fetch(`/v2/app/manifests/${wrong}`);
  assert.equal(get.status, 404);
  await get.body?.cancel();
});

Deno.test("a body over the manifest cap is 413", async () => {
  await using reg = await tempRegistry({ config: { maxManifestBytes: 1024 } });
  const parts = await pushImageBlobs(reg, "app");
  const { bytes } = await ociManifest(parts, { annotations: { pad: "x".repeat(2000) } });
  const put = await putManifest(reg, "app", "big", bytes);
  assert.equal(put.status, 413);
  assert.ok((await errorCode(put)).length > 0);
});

Deno.test("unknown manifests, tags and repositories are 404; references that cannot name a manifest 404 on reads, 400 on PUT, never 500", async () => {
  await using reg = await tempRegistry();
  const { bytes } = await ociManifest(await pushImageBlobs(reg, "app"));
  (await putManifest(reg, "app", "v1", bytes)).body?.cancel();
  const cases: [string, number, string][] = [
    ["/v2/app/manifests/nope", 404, "MANIFEST_UNKNOWN"],
    [`/v2/app/manifests/sha256:${"0".repeat(64)}`, 404, "MANIFEST_UNKNOWN"],
    ["/v2/ghost/manifests/v1", 404, "NAME_UNKNOWN"],
    ["/v2/app/manifests/sha256:totallywrong", 400, "DIGEST_INVALID"],
    ["/v2/app/manifests/-bad-tag", 404, "MANIFEST_UNKNOWN"],
    ["/v2/app/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN"],
    [`/v2/app/manifests/${"t".repeat(129)}`, 404, "MANIFEST_UNKNOWN"],
    ["/v2/App/manifests/v1", 400, "NAME_INVALID"],
  ];
  for (const [path, status, code] of cases) {
    const get = await reg.fetch(path);
    assert.equal(get.status, status, path);
    assert.equal(await errorCode(get), code, path);
    const head = await reg.fetch(path, { method: "HEAD" });
    assert.equal(head.status, status, `HEAD ${path}`);
    await head.body?.cancel();
  }
  for (const reference of ["-bad-tag", ".INVALID_MANIFEST_NAME", "t".repeat(129)]) {
    const del = await reg.fetch(`/v2/app/manifests/${reference}`, { method: "DELETE" });
    assert.equal(del.status, 404, `DELETE ${reference}`);
    assert.equal(await errorCode(del), "MANIFEST_UNKNOWN");
    const put = await putManifest(reg, "app", reference, bytes);
    assert.equal(put.status, 400, `PUT ${reference}`);
    assert.equal(await errorCode(put), "MANIFEST_INVALID");
  }
});

Deno.test("DELETE of a tag untags; the manifest stays reachable by digest", async () => {
  await using reg = await tempRegistry();
  const { bytes, digest } = await ociManifest(await pushImageBlobs(reg, "app"));
  (await putManifest(reg, "app", "v1", bytes)).body?.cancel();
  (await putManifest(reg, "app", "v2", bytes)).body?.cancel();
  const del = await reg.fetch("/v2/app/manifests/v1", { method: "DELETE" });
  assert.equal(del.status, 202);
  await del.body?.cancel();
  const gone = await reg.fetch("/v2/app/manifests/v1");
  assert.equal(gone.status, 404);
  assert.equal(await errorCode(gone), "MANIFEST_UNKNOWN");
  const byDigest = await reg.fetch(`/v2/app/manifests/${digest}`);
  assert.equal(byDigest.status, 200);
  await byDigest.body?.cancel();
  assert.deepEqual((await (await reg.fetch("/v2/app/tags/list")).json()).tags, ["v2"]);
  const again = await reg.fetch("/v2/app/manifests/v1", { method: "DELETE" });
  assert.equal(again.status, 404);
  assert.equal(await errorCode(again), "MANIFEST_UNKNOWN");
});

Deno.test("DELETE by digest removes the revision and every tag pointing to it", async () => {
  await using reg = await tempRegistry();
  const parts = await pushImageBlobs(reg, "app");
  const a = await ociManifest(parts);
  const b = await ociManifest(parts, { annotations: { v: "b" } });
  (await putManifest(reg, "app", "a1", a.bytes)).body?.cancel();
  (await putManifest(reg, "app", "a2", a.bytes)).body?.cancel();
  (await putManifest(reg, "app", "b1", b.bytes)).body?.cancel();
  const del = await reg.fetch(`/v2/app/manifests/${a.digest}`, { method: "DELETE" });
  assert.equal(del.status, 202);
  await del.body?.cancel();
  for (const ref of [a.digest, "a1", "a2"]) {
    const get = await reg.fetch(`/v2/app/manifests/${ref}`);
    assert.equal(get.status, 404, ref);
    assert.equal(await errorCode(get), "MANIFEST_UNKNOWN");
  }
  assert.deepEqual((await (await reg.fetch("/v2/app/tags/list")).json()).tags, ["b1"]);
  const still = await reg.fetch("/v2/app/manifests/b1");
  assert.equal(still.status, 200);
  await still.body?.cancel();
});

Deno.test("a manifest PUT by sha512 digest is stored and served by that digest", async () => {
  await using reg = await tempRegistry();
  const { bytes } = await ociManifest(await pushImageBlobs(reg, "app"));
  const { createHash } = await import("node:crypto");
  const digest = `sha512:${createHash("sha512").update(bytes).digest("hex")}`;
  const put = await putManifest(reg, "app", digest, bytes);
  assert.equal(put.status, 201);
  assert.equal(put.headers.get("docker-content-digest"), digest);
  const get = await reg.fetch(`/v2/app/manifests/${digest}`);
  assert.equal(get.status, 200);
  assert.deepEqual(new Uint8Array(await get.arrayBuffer()), bytes);
});
