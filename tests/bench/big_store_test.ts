/**
 * The big-store scenario's generator (bench/big_store.ts) writes what a push through the API
 * writes: a small store of its making is sound by the offline checker, and the registry
 * serves every repository, tag and manifest of it, with the manifests' blobs.
 */

import assert from "node:assert/strict";
import { BIG_REPOSITORY, repositoriesOf, writeStore } from "../../bench/big_store.ts";
import { checkStore } from "../helpers/store_check.ts";
import { sha256Digest, tempRegistry } from "../helpers/registry.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

Deno.test("a generated big store is sound and served whole", async () => {
  const root = await Deno.makeTempDir({ prefix: "big-store-test-" });
  try {
    const plan = { manifests: 130, repositories: 12, bigTags: 30 };
    const { every } = writeStore(root, plan, "ours");
    const report = await checkStore(root);
    assert.deepEqual(report.problems, []);
    assert.equal(report.revisions.size, 130);
    assert.equal(report.tags.size, 130);

    await using reg = await tempRegistry({ dataDir: root });
    const repos = repositoriesOf(plan);
    const catalog = await (await reg.fetch("/v2/_catalog")).json();
    assert.deepEqual(catalog.repositories, repos.map((r) => r.name).sort());
    const tags = await (await reg.fetch(`/v2/${BIG_REPOSITORY}/tags/list`)).json();
    assert.equal(tags.tags.length, 30);
    assert.equal(every.length, repos.length);
    for (const repo of repos) {
      for (let j = 0; j < repo.manifests; j += 7) {
        const res = await reg.fetch(`/v2/${repo.name}/manifests/v${j}`, {
          headers: { Accept: OCI_MANIFEST },
        });
        assert.equal(res.status, 200, `${repo.name}:v${j}`);
        const bytes = new Uint8Array(await res.arrayBuffer());
        assert.equal(res.headers.get("docker-content-digest"), await sha256Digest(bytes));
        const manifest = JSON.parse(new TextDecoder().decode(bytes));
        for (const blob of [manifest.config, ...manifest.layers]) {
          const got = await reg.fetch(`/v2/${repo.name}/blobs/${blob.digest}`);
          const blobBytes = new Uint8Array(await got.arrayBuffer());
          assert.equal(got.status, 200);
          assert.equal(await sha256Digest(blobBytes), blob.digest);
        }
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
