/**
 * The integrity check (`src/maintenance/fsck.ts`) over a real data root: clean on a store
 * the registry built, and each kind of corruption found, exactly, at its key.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkStore, type Finding } from "../../src/maintenance/fsck.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { sha256Digest, tempRegistry } from "../helpers/registry.ts";
import { OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";
import { buildStore, type BuiltStore } from "./fixtures.ts";

/** A data root holding the fixture store, the registry stopped; removed on dispose. */
async function builtRoot(): Promise<{ root: string; built: BuiltStore } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "registry-fsck-" });
  const root = await Deno.realPath(dir);
  let built: BuiltStore;
  {
    await using reg = await tempRegistry({ dataDir: root });
    built = await buildStore(reg);
  }
  return { root, built, [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }) };
}

function blobPath(root: string, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(root, "blobs", "sha256", hex.slice(0, 2), hex);
}

function revisionPath(root: string, name: string, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(root, "repositories", name, "_manifests", "revisions", "sha256", hex);
}

async function findings(root: string, live = false): Promise<string[]> {
  const report = await checkStore(new FsDriver(root), { root, live });
  return report.findings.map((f: Finding) => `${f.kind} ${f.key}`).sort();
}

Deno.test("fsck: a store the registry built is sound", async () => {
  await using store = await builtRoot();
  const report = await checkStore(new FsDriver(store.root), { root: store.root });
  assert.deepEqual(report.findings, []);
  assert.deepEqual(report.checked, {
    blobs: 15, // app: 6 + 4 manifests; other: 2; app/sub: 3
    repositories: 3,
    manifests: 6, // app: 2 images, the index, the referrer; other and app/sub: 1 each
    tags: 4, // app: v1, multi; other: latest; app/sub: v1
    links: 10, // app: 6; other: 2; app/sub: 2
    referrers: 1,
    uploads: 0,
  });
});

Deno.test("fsck: a flipped byte in a blob", async () => {
  await using store = await builtRoot();
  const path = blobPath(store.root, store.built.app.image1.layers[0].digest);
  const bytes = await Deno.readFile(path);
  bytes[500] ^= 0x01;
  await Deno.writeFile(path, bytes);
  const report = await checkStore(new FsDriver(store.root), { root: store.root });
  assert.equal(report.findings.length, 1);
  const [finding] = report.findings;
  assert.equal(finding.kind, "blob-digest");
  assert.equal(finding.key, path.slice(store.root.length + 1));
  assert.match(finding.detail, /^bytes hash to sha256:[0-9a-f]{64}$/);
});

Deno.test("fsck: a blob a manifest needs is missing", async () => {
  await using store = await builtRoot();
  const layer = store.built.app.image2.layers[0].digest;
  await Deno.remove(blobPath(store.root, layer));
  const hex = layer.slice("sha256:".length);
  assert.deepEqual(await findings(store.root), [
    `blob-missing repositories/app/_manifests/revisions/sha256/${
      store.built.app.image2.digest.slice(7)
    }`,
    `link-dangling repositories/app/_layers/sha256/${hex}`,
  ]);
});

Deno.test("fsck: manifests stored with another size for a layer, a config or a child", async () => {
  await using store = await builtRoot();
  const { image1, image2 } = store.built.app;
  // Stored as an older registry stored them: the bytes as a blob, the revision's record.
  const plant = async (manifest: unknown) => {
    const bytes = new TextEncoder().encode(JSON.stringify(manifest));
    const digest = await sha256Digest(bytes);
    await Deno.mkdir(join(blobPath(store.root, digest), ".."), { recursive: true });
    await Deno.writeFile(blobPath(store.root, digest), bytes);
    const mediaType = (manifest as { mediaType: string }).mediaType;
    await Deno.writeTextFile(
      revisionPath(store.root, "app", digest),
      JSON.stringify({ mediaType, size: bytes.length }),
    );
    return `descriptor-size repositories/app/_manifests/revisions/sha256/${digest.slice(7)}`;
  };
  const layer = image1.layers[0]!;
  const wrongLayer = await plant({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: image1.config,
    layers: [{ ...layer, size: layer.size + 1 }],
  });
  const wrongConfig = await plant({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { ...image2.config, size: image2.config.size - 1 },
    layers: image2.layers,
  });
  const wrongChild = await plant({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ mediaType: OCI_MANIFEST, digest: image2.digest, size: image2.bytes.length + 3 }],
  });
  const report = await checkStore(new FsDriver(store.root), { root: store.root });
  assert.deepEqual(
    report.findings.map((f: Finding) => `${f.kind} ${f.key}`).sort(),
    [wrongLayer, wrongConfig, wrongChild].sort(),
  );
  const details = report.findings.map((f: Finding) => f.detail).sort();
  assert.deepEqual(details, [
    `gives its child ${image2.digest} ${image2.bytes.length + 3} bytes, not ${image2.bytes.length}`,
    `gives its config ${image2.config.digest} ${
      image2.config.size - 1
    } bytes, not ${image2.config.size}`,
    `gives its layer ${layer.digest} ${layer.size + 1} bytes, not ${layer.size}`,
  ]);
});

Deno.test("fsck: a manifest whose bytes are missing, or unparsable", async () => {
  await using store = await builtRoot();
  await Deno.remove(blobPath(store.root, store.built.other.digest));
  // A revision record naming a layer's bytes, which are no manifest.
  const layer = store.built.sub.layers[0];
  await Deno.writeTextFile(
    revisionPath(store.root, "app/sub", layer.digest),
    JSON.stringify({ mediaType: "application/vnd.oci.image.manifest.v1+json", size: layer.size }),
  );
  assert.deepEqual(await findings(store.root), [
    `manifest-invalid repositories/app/sub/_manifests/revisions/sha256/${layer.digest.slice(7)}`,
    `manifest-missing repositories/other/_manifests/revisions/sha256/${
      store.built.other.digest.slice(7)
    }`,
  ]);
});

Deno.test("fsck: a tag pointing to a missing revision, and a tag holding no digest", async () => {
  await using store = await builtRoot();
  const tags = join(store.root, "repositories", "other", "_manifests", "tags");
  await Deno.writeTextFile(join(tags, "ghost"), store.built.app.image2.digest); // app's, not other's
  await Deno.writeTextFile(join(tags, "junk"), "not a digest");
  assert.deepEqual(await findings(store.root), [
    "tag-dangling repositories/other/_manifests/tags/ghost",
    "tag-invalid repositories/other/_manifests/tags/junk",
  ]);
});

Deno.test("fsck: an index child that is not a revision", async () => {
  await using store = await builtRoot();
  await Deno.remove(revisionPath(store.root, "app", store.built.app.image2.digest));
  assert.deepEqual(await findings(store.root), [
    `index-child-missing repositories/app/_manifests/revisions/sha256/${
      store.built.app.index.digest.slice(7)
    }`,
  ]);
});

Deno.test("fsck: a dangling referrer entry, and a referrer without its entry", async () => {
  await using store = await builtRoot();
  const { image1, referrer } = store.built.app;
  const entry = `repositories/app/_referrers/sha256/${image1.digest.slice(7)}/sha256-${
    referrer.digest.slice(7)
  }`;
  await Deno.remove(revisionPath(store.root, "app", referrer.digest));
  assert.deepEqual(await findings(store.root), [`referrer-dangling ${entry}`]);

  await using again = await builtRoot();
  const again1 = again.built.app;
  await Deno.remove(
    join(
      again.root,
      `repositories/app/_referrers/sha256/${again1.image1.digest.slice(7)}/sha256-${
        again1.referrer.digest.slice(7)
      }`,
    ),
  );
  assert.deepEqual(await findings(again.root), [
    `referrer-missing repositories/app/_manifests/revisions/sha256/${
      again1.referrer.digest.slice(7)
    }`,
  ]);
});

Deno.test("fsck: an unlinked config, a leftover temporary file, an incomplete upload", async () => {
  await using store = await builtRoot();
  const config = store.built.other.config.digest;
  await Deno.remove(join(store.root, "repositories/other/_layers/sha256", config.slice(7)));
  await Deno.writeTextFile(join(store.root, "repositories/app/_manifests/tags/.tmp-1234"), "x");
  const session = join(store.root, "uploads", crypto.randomUUID());
  await Deno.mkdir(session);
  await Deno.writeFile(join(session, "data"), new Uint8Array(5));
  await Deno.writeTextFile(join(session, "repository"), "app");
  assert.deepEqual(await findings(store.root), [
    `blob-unlinked repositories/other/_manifests/revisions/sha256/${
      store.built.other.digest.slice(7)
    }`,
    "temp-file repositories/app/_manifests/tags/.tmp-1234",
    `upload-incomplete uploads/${session.slice(session.lastIndexOf("/") + 1)}`,
  ]);
  // While a registry runs, a temporary file or a session this young is a write in progress.
  assert.deepEqual(await findings(store.root, true), [
    `blob-unlinked repositories/other/_manifests/revisions/sha256/${
      store.built.other.digest.slice(7)
    }`,
  ]);
});

Deno.test("fsck: a misnamed blob and an unreadable format record", async () => {
  await using store = await builtRoot();
  const misplaced = join(store.root, "blobs", "sha256", "00", "f".repeat(64));
  await Deno.mkdir(join(store.root, "blobs", "sha256", "00"), { recursive: true });
  await Deno.writeTextFile(misplaced, "x");
  await Deno.writeTextFile(join(store.root, "format.json"), "{");
  assert.deepEqual(await findings(store.root), [
    "blob-name blobs/sha256/00/" + "f".repeat(64),
    "format format.json",
  ]);
});

Deno.test("fsck: both hash backends verify the same bytes", async () => {
  await using store = await builtRoot();
  const path = blobPath(store.root, store.built.shared.digest);
  const bytes = await Deno.readFile(path);
  bytes[0] ^= 0xff;
  await Deno.writeFile(path, bytes);
  for (const hashBackend of ["portable", "native"] as const) {
    const report = await checkStore(new FsDriver(store.root), { root: store.root, hashBackend });
    assert.deepEqual(report.findings.map((f) => f.kind), ["blob-digest"], hashBackend);
  }
});

Deno.test("fsck: a repository that cannot be read is a finding, the others are still checked", async () => {
  await using store = await builtRoot();
  // A planted symbolic link: the driver refuses to follow it.
  await Deno.symlink("/etc/hostname", join(store.root, "repositories/other/_manifests/tags/evil"));
  const tags = join(store.root, "repositories/app/sub/_manifests/tags");
  await Deno.writeTextFile(join(tags, "ghost"), store.built.other.digest);
  const report = await checkStore(new FsDriver(store.root), { root: store.root });
  assert.deepEqual(report.findings.map((f) => `${f.kind} ${f.key}`).sort(), [
    "tag-dangling repositories/app/sub/_manifests/tags/ghost",
    "unreadable repositories/other",
  ]);
  assert.match(report.findings.find((f) => f.kind === "unreadable")!.detail, /symbolic link/);
});
