/**
 * Concurrency: many clients pushing the same layer, racing manifest PUTs on one tag, racing
 * PATCHes on one session, and deletes racing pulls. Nothing may fail, tear or answer 500.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkStore, listTree } from "../helpers/store_check.ts";
import {
  pushBlob,
  randomBytes,
  sha256Digest,
  type TempRegistry,
  tempRegistry,
} from "../helpers/registry.ts";
import { OCI_MANIFEST as MANIFEST_TYPE } from "../helpers/media_types.ts";

/** Pushes a blob with POST, one PATCH per piece (no Content-Range) and an empty PUT. */
async function pushChunked(
  reg: TempRegistry,
  name: string,
  bytes: Uint8Array<ArrayBuffer>,
  pieces: number,
): Promise<number> {
  const digest = await sha256Digest(bytes);
  const start = await reg.fetch(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  await start.body?.cancel();
  let location = start.headers.get("location")!;
  const size = Math.ceil(bytes.length / pieces);
  for (let at = 0; at < bytes.length; at += size) {
    const res = await reg.fetch(location, {
      method: "PATCH",
      body: bytes.slice(at, at + size),
    });
    await res.body?.cancel();
    if (res.status !== 202) return res.status;
    location = res.headers.get("location")!;
  }
  const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT" });
  await put.body?.cancel();
  return put.status;
}

async function pushWhole(reg: TempRegistry, name: string, bytes: Uint8Array<ArrayBuffer>) {
  const digest = await sha256Digest(bytes);
  const res = await reg.fetch(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: bytes,
  });
  await res.body?.cancel();
  return res.status;
}

async function blobFiles(root: string): Promise<string[]> {
  return (await listTree(join(root, "blobs"))).filter((p) => !p.endsWith("/"));
}

Deno.test("twenty clients pushing one layer to one repository and to twenty: one blob, all linked", async (t) => {
  await using reg = await tempRegistry();
  const layer = randomBytes(3 * 1024 * 1024 + 17);
  const digest = await sha256Digest(layer);
  const ways = [
    (name: string) => pushWhole(reg, name, layer),
    (name: string) => pushChunked(reg, name, layer, 3),
    async (name: string) => {
      try {
        await pushBlob(reg, name, layer);
        return 201;
      } catch (error) {
        return String(error);
      }
    },
  ];
  await t.step("same repository", async () => {
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ways[i % 3]("race/same")),
    );
    assert.deepEqual(statuses, Array(20).fill(201));
  });
  await t.step("different repositories", async () => {
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ways[i % 3](`race/r${i}`)),
    );
    assert.deepEqual(statuses, Array(20).fill(201));
  });
  await t.step("one blob file, every repository linked, no session left, store sound", async () => {
    assert.deepEqual(await blobFiles(reg.dataDir), [
      `sha256/${digest.slice(7, 9)}/${digest.slice(7)}`,
    ]);
    const report = await checkStore(reg.dataDir);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.uploads, []);
    assert.deepEqual(report.temporaries, []);
    for (const name of ["race/same", ...Array.from({ length: 20 }, (_, i) => `race/r${i}`)]) {
      assert.ok(report.layers.has(`${name}@${digest}`), name);
      const res = await reg.fetch(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), String(layer.length));
    }
    const got = new Uint8Array(
      await (await reg.fetch(`/v2/race/r7/blobs/${digest}`)).arrayBuffer(),
    );
    assert.equal(await sha256Digest(got), digest);
  });
});

Deno.test("concurrent PUTs of different manifests to one tag: the tag ends on one of them, the same after a restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "registry-tag-race-" });
  try {
    const manifests: { bytes: Uint8Array<ArrayBuffer>; digest: string }[] = [];
    const rounds: string[] = [];
    {
      await using reg = await tempRegistry({ dataDir });
      const config = await pushBlob(reg, "race/tag", new TextEncoder().encode("{}"));
      for (let i = 0; i < 20; i++) {
        const body = {
          schemaVersion: 2,
          mediaType: MANIFEST_TYPE,
          config: {
            mediaType: "application/vnd.oci.image.config.v1+json",
            digest: config,
            size: 2,
          },
          layers: [],
          // Different sizes, so a torn write would show as a wrong length or bad JSON.
          annotations: { i: String(i), pad: "x".repeat(i * 997) },
        };
        const bytes = new TextEncoder().encode(JSON.stringify(body));
        manifests.push({ bytes, digest: await sha256Digest(bytes) });
      }
      for (let round = 0; round < 20; round++) {
        const tag = `round${round}`;
        const statuses = await Promise.all(manifests.map(async ({ bytes }) => {
          const res = await reg.fetch(`/v2/race/tag/manifests/${tag}`, {
            method: "PUT",
            headers: { "Content-Type": MANIFEST_TYPE },
            body: bytes,
          });
          await res.body?.cancel();
          return res.status;
        }));
        assert.deepEqual(statuses, Array(20).fill(201));
        const res = await reg.fetch(`/v2/race/tag/manifests/${tag}`);
        assert.equal(res.status, 200);
        const got = new Uint8Array(await res.arrayBuffer());
        const digest = res.headers.get("docker-content-digest")!;
        const winner = manifests.find((m) => m.digest === digest);
        assert.ok(winner, `tag ${tag} points to ${digest}, which was never pushed`);
        assert.deepEqual(got, winner.bytes);
        const onDisk = await Deno.readTextFile(
          join(dataDir, "repositories/race/tag/_manifests/tags", tag),
        );
        assert.equal(onDisk.trim(), digest, "the served tag is the stored tag");
        rounds.push(digest);
      }
    }
    // A new process reads the tags from disk: they must be what the old one served.
    await using again = await tempRegistry({ dataDir });
    for (let round = 0; round < 20; round++) {
      const res = await again.fetch(`/v2/race/tag/manifests/round${round}`, { method: "HEAD" });
      assert.equal(res.headers.get("docker-content-digest"), rounds[round]);
    }
    assert.deepEqual((await checkStore(dataDir)).problems, []);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** A body that sends `bytes` in small pieces with pauses, so requests overlap on the wire. */
function slowBody(bytes: Uint8Array, piece: number, pauseMs: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    async pull(controller) {
      if (at >= bytes.length) return controller.close();
      if (at > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
  });
}

Deno.test("concurrent PATCHes on one session never interleave bytes", async (t) => {
  await using reg = await tempRegistry();
  await t.step("without Content-Range: each chunk lands whole, one after another", async () => {
    const start = await reg.fetch("/v2/race/patch/blobs/uploads/", { method: "POST" });
    const location = start.headers.get("location")!;
    const uuid = start.headers.get("docker-upload-uuid")!;
    const bodies = Array.from({ length: 5 }, (_, i) => new Uint8Array(40_000).fill(65 + i));
    const statuses = await Promise.all(bodies.map(async (bytes) => {
      const res = await reg.fetch(location, {
        method: "PATCH",
        body: slowBody(bytes, 4096, 2),
      });
      await res.body?.cancel();
      return res.status;
    }));
    assert.deepEqual(statuses, Array(5).fill(202));
    const data = await Deno.readFile(join(reg.dataDir, "uploads", uuid, "data"));
    assert.equal(data.length, 200_000);
    const order = Array.from({ length: 5 }, (_, i) => data[i * 40_000]);
    for (let i = 0; i < 5; i++) {
      assert.ok(data.subarray(i * 40_000, (i + 1) * 40_000).every((b) => b === order[i]));
    }
    assert.deepEqual([...order].sort(), [65, 66, 67, 68, 69], "each chunk exactly once");
    const digest = await sha256Digest(data);
    const put = await reg.fetch(`${location}?digest=${digest}`, { method: "PUT" });
    assert.equal(put.status, 201);
  });
  await t.step(
    "with the same Content-Range: one wins, the others get 416, data is the winner's",
    async () => {
      const start = await reg.fetch("/v2/race/patch/blobs/uploads/", { method: "POST" });
      const location = start.headers.get("location")!;
      const uuid = start.headers.get("docker-upload-uuid")!;
      const bodies = Array.from({ length: 5 }, (_, i) => new Uint8Array(30_000).fill(97 + i));
      const statuses = await Promise.all(bodies.map(async (bytes) => {
        const res = await reg.fetch(location, {
          method: "PATCH",
          headers: { "Content-Range": "0-29999", "Content-Length": "30000" },
          body: slowBody(bytes, 4096, 2),
        });
        await res.body?.cancel();
        return res.status;
      }));
      assert.equal(statuses.filter((s) => s === 202).length, 1, `statuses ${statuses}`);
      assert.equal(statuses.filter((s) => s === 416).length, 4, `statuses ${statuses}`);
      const data = await Deno.readFile(join(reg.dataDir, "uploads", uuid, "data"));
      assert.equal(data.length, 30_000);
      assert.ok(data.every((b) => b === 97 + statuses.indexOf(202)));
      const status = await reg.fetch(location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get("range"), "0-29999");
    },
  );
});

Deno.test("deleting tags, manifests and blobs while they are pulled never yields a 500", async () => {
  await using reg = await tempRegistry();
  const name = "race/pull";
  const layerBytes = randomBytes(2 * 1024 * 1024);
  const layer = await pushBlob(reg, name, layerBytes);
  const config = await pushBlob(reg, name, new TextEncoder().encode("{}"));
  const manifests = await Promise.all(Array.from({ length: 3 }, async (_, i) => {
    const bytes = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config, size: 2 },
      layers: [{
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: layer,
        size: layerBytes.length,
      }],
      annotations: { i: String(i) },
    }));
    return { bytes, digest: await sha256Digest(bytes) };
  }));
  const statuses = new Map<string, number>();
  const count = (what: string, status: number) => {
    const key = `${what} ${status}`;
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
  };
  const deadline = Date.now() + 2500;
  const writer = async () => {
    while (Date.now() < deadline) {
      const m = manifests[Math.floor(Math.random() * 3)];
      const put = await reg.fetch(`/v2/${name}/manifests/latest`, {
        method: "PUT",
        headers: { "Content-Type": MANIFEST_TYPE },
        body: m.bytes,
      });
      await put.body?.cancel();
      count("PUT", put.status);
      const del = await reg.fetch(
        `/v2/${name}/manifests/${Math.random() < 0.5 ? "latest" : m.digest}`,
        { method: "DELETE" },
      );
      await del.body?.cancel();
      count("DELETE manifest", del.status);
      if (Math.random() < 0.2) {
        const unlink = await reg.fetch(`/v2/${name}/blobs/${layer}`, { method: "DELETE" });
        await unlink.body?.cancel();
        count("DELETE blob", unlink.status);
        const relink = await reg.fetch(
          `/v2/${name}/blobs/uploads/?mount=${layer}&from=race/keep`,
          { method: "POST" },
        );
        await relink.body?.cancel();
        count("mount", relink.status);
      }
    }
  };
  await pushBlob(reg, "race/keep", layerBytes);
  const reader = async () => {
    while (Date.now() < deadline) {
      const ref = Math.random() < 0.5 ? "latest" : manifests[Math.floor(Math.random() * 3)].digest;
      const res = await reg.fetch(`/v2/${name}/manifests/${ref}`);
      count("GET manifest", res.status);
      if (res.status === 200) {
        const bytes = new Uint8Array(await res.arrayBuffer());
        assert.equal(await sha256Digest(bytes), res.headers.get("docker-content-digest"));
      } else {
        const body = await res.json();
        assert.ok(["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].includes(body.errors[0].code));
      }
      const head = await reg.fetch(`/v2/${name}/manifests/${ref}`, { method: "HEAD" });
      count("HEAD manifest", head.status);
      const blob = await reg.fetch(`/v2/${name}/blobs/${layer}`, {
        headers: Math.random() < 0.5 ? { Range: "bytes=1000-" } : {},
      });
      count("GET blob", blob.status);
      if (blob.status === 200) {
        assert.equal(await sha256Digest(new Uint8Array(await blob.arrayBuffer())), layer);
      } else await blob.body?.cancel();
      const tags = await reg.fetch(`/v2/${name}/tags/list`);
      await tags.body?.cancel();
      count("GET tags", tags.status);
    }
  };
  await Promise.all([writer(), writer(), reader(), reader(), reader(), reader()]);
  const fivexx = [...statuses].filter(([key]) => / 5[0-9][0-9]$/.test(key));
  assert.deepEqual(fivexx, [], `statuses: ${JSON.stringify([...statuses])}`);
  assert.ok((statuses.get("GET manifest 200") ?? 0) > 0, "some pulls overlapped the deletes");
  assert.deepEqual((await checkStore(reg.dataDir)).problems, []);
  assert.deepEqual(reg.logs.filter((l) => l.includes("unexpected")), []);
});
