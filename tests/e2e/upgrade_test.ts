/**
 * A data root written by an earlier version (no `format.json`; revision records without their
 * references; an upload session in progress) opens unchanged: its content pulls, the session
 * resumes, the consistency rules hold for its old manifests, and the root is marked format 1.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { randomBytes, sha256Digest, tempRegistry } from "../helpers/registry.ts";

/** Writes `text` at `path` under `root`, creating the folders. */
async function write(root: string, path: string, content: string | Uint8Array) {
  const full = join(root, path);
  await Deno.mkdir(join(full, ".."), { recursive: true });
  if (typeof content === "string") await Deno.writeTextFile(full, content);
  else await Deno.writeFile(full, content);
}

const hexOf = (digest: string) => digest.slice("sha256:".length);

Deno.test("a data root of the earlier layout opens, pulls, resumes and keeps its rules", async () => {
  const root = await Deno.makeTempDir({ prefix: "registry-upgrade-" });
  try {
    // The layout as the registry wrote it before format.json and revision references.
    const layer = randomBytes(4096);
    const config = new TextEncoder().encode('{"architecture":"amd64","os":"linux"}');
    const [layerDigest, configDigest] = [await sha256Digest(layer), await sha256Digest(config)];
    const manifest = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: [{ mediaType: OCI_LAYER, digest: layerDigest, size: layer.length }],
    }));
    const manifestDigest = await sha256Digest(manifest);
    for (const [digest, bytes] of [[layerDigest, layer], [configDigest, config]] as const) {
      const hex = hexOf(digest);
      await write(root, `blobs/sha256/${hex.slice(0, 2)}/${hex}`, bytes);
      await write(root, `repositories/old/app/_layers/sha256/${hex}`, digest);
    }
    const mhex = hexOf(manifestDigest);
    await write(root, `blobs/sha256/${mhex.slice(0, 2)}/${mhex}`, manifest);
    await write(
      root,
      `repositories/old/app/_manifests/revisions/sha256/${mhex}`,
      JSON.stringify({ mediaType: OCI_MANIFEST, size: manifest.length }),
    );
    await write(root, "repositories/old/app/_manifests/tags/v1", manifestDigest);
    const uuid = "0b7e7c1a-2f3d-4c5b-8a9e-112233445566";
    const first = randomBytes(1000);
    await write(root, `uploads/${uuid}/data`, first);
    await write(root, `uploads/${uuid}/repository`, "old/app");
    await write(root, `uploads/${uuid}/startedat`, new Date().toISOString());
    // no hashstate: the registry re-hashes the data it holds

    await using reg = await tempRegistry({ dataDir: root });
    const pulled = await reg.fetch("/v2/old/app/manifests/v1");
    assert.equal(pulled.status, 200);
    assert.deepEqual(new Uint8Array(await pulled.arrayBuffer()), manifest);
    const blob = await reg.fetch(`/v2/old/app/blobs/${layerDigest}`);
    assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), layer);
    const catalog = await (await reg.fetch("/v2/_catalog")).json();
    assert.deepEqual(catalog.repositories, ["old/app"]);

    const status = await reg.fetch(`/v2/old/app/blobs/uploads/${uuid}`);
    await status.body?.cancel();
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), "0-999");
    const rest = randomBytes(500);
    const whole = new Uint8Array([...first, ...rest]);
    const digest = `sha256:${createHash("sha256").update(whole).digest("hex")}`;
    const put = await reg.fetch(`/v2/old/app/blobs/uploads/${uuid}?digest=${digest}`, {
      method: "PUT",
      body: rest,
    });
    await put.body?.cancel();
    assert.equal(put.status, 201, "the session resumed and completed");

    const unlink = await reg.fetch(`/v2/old/app/blobs/${layerDigest}`, { method: "DELETE" });
    assert.equal(unlink.status, 405, "an old record still protects its layer");
    assert.equal((await unlink.json()).errors[0].detail.manifest, manifestDigest);
    const record = JSON.parse(
      await Deno.readTextFile(
        join(root, `repositories/old/app/_manifests/revisions/sha256/${mhex}`),
      ),
    );
    assert.deepEqual(record.refs, [configDigest, layerDigest], "its references were filled in");
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(root, "format.json"))), { format: 1 });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
