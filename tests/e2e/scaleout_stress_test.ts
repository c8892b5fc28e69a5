/**
 * Concurrency against two scale-out replicas (`main.ts` over one Ceph RGW bucket and one
 * PostgreSQL database) behind a round-robin proxy, every request going to the other replica
 * than the last:
 *
 * - the seeded stress test of `stress_test.ts` (reduced: 96 operations in batches of 24 over 4
 *   clients, a collection alone after the 4th batch), its invariants checked after every batch
 *   through the proxy (the replicas stream blob GETs themselves, `storage.redirect.disable`:
 *   the model checks their headers) and against the shared state itself, instead of the data
 *   root's files: the database's tables (links, revisions, tags, referrers; a repository row
 *   exactly while it holds something) and the bucket's objects (every blob's bytes hashed to
 *   its name, every revision's bytes stored at its size, no upload session left), the
 *   collection run alone held to the model of a collection;
 * - collections on replica A (`POST /admin/gc?wait=true`, grace 12 s) one after another while
 *   two clients push images sharing base layers through the proxy, HEADing each blob first
 *   as real clients do, some of their images deleted at once so that the collector has work:
 *   no push may fail, and afterwards every tag pulls whole (each blob hashed).
 *
 * Outside CI the tests are ignored when RGW or PostgreSQL cannot come up; in CI they fail.
 */

import assert from "node:assert/strict";
import { type StoreListing, stressSuite } from "./stress_test.ts";
import { IN_CI } from "../helpers/clients.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { randomBytes, sha256Digest } from "../helpers/registry.ts";
import {
  replicaTest,
  scaleOutBackend,
  scaleOutUnavailable,
  twoReplicas,
} from "../helpers/replicas.ts";
import type { TestBucket } from "../helpers/s3.ts";
import { connect } from "../../src/storage/postgres/client.ts";

const unavailable = await scaleOutUnavailable();

/** A digest from a blob's object name `blobs/<alg>/<xx>/<hex>` (null: not one). */
function blobDigest(key: string): string | null {
  const m = /^blobs\/(sha256)\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m && m[3].startsWith(m[2]) ? `${m[1]}:${m[3]}` : null;
}

/** Reads the shared state: the database's tables and the bucket's objects. */
async function listShared(
  bucket: TestBucket,
  databaseUrl: string,
  repos: readonly string[],
): Promise<StoreListing> {
  const problems: string[] = [];
  const blobs = new Set<string>();
  const sizes = new Map<string, number>();
  for (const object of await bucket.client.listAll("blobs/")) {
    const digest = blobDigest(object.key);
    if (digest === null) {
      problems.push(`unexpected object ${object.key}`);
      continue;
    }
    const response = await bucket.client.getObject(object.key);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const actual = await sha256Digest(bytes);
    if (actual !== digest) problems.push(`blob ${digest} holds bytes of ${actual}`);
    blobs.add(digest);
    sizes.set(digest, bytes.length);
  }
  const uploads = new Set<string>();
  for (const prefix of ["uploads/", ".multipart/uploads/"]) {
    for (const object of await bucket.client.listAll(prefix)) {
      uploads.add(object.key.slice(prefix.length).split("/")[0]);
    }
  }
  const sql = connect(databaseUrl, { max: 1 });
  try {
    const layers = new Set<string>();
    for (const row of await sql`select repository, digest from layer_links`) {
      layers.add(`${row.repository}@${row.digest}`);
      if (!blobs.has(row.digest)) {
        problems.push(`layer link ${row.repository}@${row.digest} names no stored blob`);
      }
    }
    const revisions = new Set<string>();
    for (const row of await sql`select repository, digest, size from revisions`) {
      revisions.add(`${row.repository}@${row.digest}`);
      if (sizes.get(row.digest) !== Number(row.size)) {
        problems.push(
          `revision ${row.repository}@${row.digest} of ${row.size} bytes: stored ` +
            `${sizes.get(row.digest) ?? "no blob"}`,
        );
      }
    }
    const tags = new Map<string, string>();
    for (const row of await sql`select repository, tag, digest from tags`) {
      tags.set(`${row.repository}:${row.tag}`, row.digest);
      if (!revisions.has(`${row.repository}@${row.digest}`)) {
        problems.push(`tag ${row.repository}:${row.tag} names no revision (${row.digest})`);
      }
    }
    const referrers = new Map<string, Set<string>>(repos.map((r) => [r, new Set<string>()]));
    for (const row of await sql`select repository, subject, referrer from referrers`) {
      if (!referrers.has(row.repository)) referrers.set(row.repository, new Set());
      referrers.get(row.repository)!.add(`${row.subject} ${row.referrer}`);
      if (!revisions.has(`${row.repository}@${row.referrer}`)) {
        problems.push(`referrers entry ${row.repository} ${row.referrer} names no revision`);
      }
    }
    for (const row of await sql`select name from repositories order by name`) {
      const holds = [...layers, ...revisions].some((e) => e.startsWith(`${row.name}@`)) ||
        [...tags.keys()].some((e) => e.startsWith(`${row.name}:`)) ||
        (referrers.get(row.name)?.size ?? 0) > 0;
      if (!holds) problems.push(`repository row ${row.name} holds nothing`);
    }
    return { problems, blobs, revisions, tags, layers, uploads: [...uploads].sort(), referrers };
  } finally {
    await sql.end();
  }
}

/** The bucket and database of each registry the stress suite opened. */
const backends = new WeakMap<object, { bucket: TestBucket; databaseUrl: string }>();

/** Registers the stress test (reduced counts) against a new pair of replicas. */
function stressOnReplicas(collectionModel: boolean, ignore: boolean): void {
  stressSuite({
    label: "two replicas: ",
    ops: 96,
    batch: 24,
    clients: 4,
    collectionModel,
    ignore: ignore || (unavailable !== null && !IN_CI),
    storeName: "the bucket and database",
    registry: async () => {
      if (unavailable !== null) throw new Error(unavailable);
      const backend = await scaleOutBackend();
      try {
        const replicas = await twoReplicas({
          backend,
          env: {
            // The model checks the registry's headers on blob GETs: no redirect to the bucket.
            REGISTRY_STORAGE_REDIRECT_DISABLE: "true",
            REGISTRY_STORAGE_GC_GRACE: "0s",
            REGISTRY_STORAGE_GC_DELETEORPHANREFERRERS: "false",
            REGISTRY_STORAGE_GC_RETENTION: '[{repositories: ["**"], untaggedafter: 0s}]',
          },
        });
        const reg = {
          logs: replicas.logs,
          fetch: replicas.fetch,
          async [Symbol.asyncDispose]() {
            try {
              assert.deepEqual(replicas.errors(), [], "the replicas logged errors");
              const sent = replicas.forwarded.map((r) => r.backend);
              assert.ok(sent.includes(replicas.a.url) && sent.includes(replicas.b.url));
            } finally {
              await replicas[Symbol.asyncDispose]();
              await backend[Symbol.asyncDispose]();
            }
          },
        };
        backends.set(reg, backend);
        return reg;
      } catch (error) {
        await backend[Symbol.asyncDispose]();
        throw error;
      }
    },
    store: (reg, repos) => {
      const backend = backends.get(reg);
      if (!backend) throw new Error("a registry this suite did not open");
      return listShared(backend.bucket, backend.databaseUrl, repos);
    },
  });
}

// Every invariant, the lone collection held to the model of a collection included (the
// collector reads links and push times through the metadata store, PostgreSQL in this mode).
stressOnReplicas(true, false);

/** How long the pushes go on while replica A collects. */
const PUSH_SECONDS = 30;

await replicaTest(
  "two replicas: collections on A one after another while two clients push images sharing " +
    "layers through both: no push fails, every tag pulls whole",
  async () => {
    // Grace: longer than the slowest push here (~4 s while collections run) plus the 5 s within
    // which a replica's touches reach the journal the collecting replica reads.
    await using replicas = await twoReplicas({ env: { REGISTRY_STORAGE_GC_GRACE: "12s" } });
    const f = replicas.fetch;
    const base = [randomBytes(300_000), randomBytes(50_000)];
    const failures: string[] = [];
    const fail = (what: string, r: Response, body: string) =>
      failures.push(`${what}: ${r.status} ${body.slice(0, 300)}`);

    /** A client's blob push: HEAD, and when missing, POST + PUT (or POST + PATCH + PUT). */
    const pushBlob = async (repo: string, bytes: Uint8Array<ArrayBuffer>, chunked: boolean) => {
      const digest = await sha256Digest(bytes);
      const head = await f(`/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
      await head.body?.cancel();
      if (head.status === 200) return digest;
      if (head.status !== 404) throw new Error(`HEAD ${repo} blob: ${head.status}`);
      const start = await f(`/v2/${repo}/blobs/uploads/`, { method: "POST" });
      let location = start.headers.get("location");
      const startBody = await start.text();
      if (start.status !== 202 || !location) throw new Error(`POST: ${start.status} ${startBody}`);
      let rest = bytes;
      if (chunked) {
        const half = bytes.length >> 1;
        const patch = await f(location, {
          method: "PATCH",
          headers: { "content-type": "application/octet-stream", "content-range": `0-${half - 1}` },
          body: bytes.slice(0, half),
        });
        location = patch.headers.get("location");
        const patchBody = await patch.text();
        if (patch.status !== 202 || !location) {
          throw new Error(`PATCH: ${patch.status} ${patchBody}`);
        }
        rest = bytes.slice(half);
      }
      const put = await f(`${location}${location.includes("?") ? "&" : "?"}digest=${digest}`, {
        method: "PUT",
        headers: { "content-type": "application/octet-stream" },
        body: rest,
      });
      const putBody = await put.text();
      if (put.status !== 201) throw new Error(`PUT blob: ${put.status} ${putBody}`);
      return digest;
    };

    /** Pushes an image (the base layers and one of its own) as `repo:tag`; its blobs. */
    const pushImage = async (repo: string, tag: string, round: number) => {
      const own = randomBytes(20_000 + round);
      const config = new TextEncoder().encode(JSON.stringify({
        architecture: "amd64",
        os: "linux",
        nonce: crypto.randomUUID(),
      }));
      const layers = [...base, own];
      const digests: string[] = [];
      for (const [i, layer] of layers.entries()) {
        digests.push(await pushBlob(repo, layer, i === 2 && round % 2 === 0));
      }
      const manifest = new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: OCI_CONFIG,
          digest: await pushBlob(repo, config, false),
          size: config.length,
        },
        layers: layers.map((l, i) => ({
          mediaType: OCI_LAYER,
          digest: digests[i],
          size: l.length,
        })),
      }));
      const put = await f(`/v2/${repo}/manifests/${tag}`, {
        method: "PUT",
        headers: { "content-type": OCI_MANIFEST },
        body: manifest,
      });
      const body = await put.text();
      if (put.status !== 201) {
        fail(`PUT manifest ${repo}:${tag}`, put, body);
        return null;
      }
      return {
        digest: await sha256Digest(manifest),
        blobs: [await sha256Digest(config), ...digests],
      };
    };

    const pushed = new Map<string, { digest: string; blobs: string[] }>();
    let pushes = 0;
    let deleted = 0;
    const deadline = Date.now() + PUSH_SECONDS * 1000;
    let stop = false;
    const pusher = async (client: number) => {
      for (let round = 0; !stop && Date.now() < deadline; round++) {
        const repo = `gc/client-${client}-${round % 3}`;
        const tag = `r${round}`;
        try {
          const image = await pushImage(repo, tag, round);
          pushes++;
          if (image === null) continue;
          if (round % 3 === 2) {
            // Deleted at once: its own layer and config become garbage for the collector.
            const r = await f(`/v2/${repo}/manifests/${image.digest}`, { method: "DELETE" });
            await r.body?.cancel();
            if (r.status !== 202) failures.push(`DELETE ${repo}@${image.digest}: ${r.status}`);
            deleted++;
          } else {
            pushed.set(`${repo}:${tag}`, image);
          }
        } catch (error) {
          failures.push(`push ${repo}:${tag}: ${error}`);
        }
      }
    };
    const collections: { counts: Record<string, number>; skipped?: string; error?: string }[] = [];
    const collector = async () => {
      while (!stop && Date.now() < deadline) {
        const r = await fetch(`${replicas.a.url}/admin/gc?wait=true`, { method: "POST" });
        const text = await r.text();
        assert.equal(r.status, 200, text);
        collections.push(JSON.parse(text));
      }
    };
    try {
      await Promise.all([pusher(0), pusher(1), collector()]);
    } finally {
      stop = true;
    }
    assert.deepEqual(failures, [], `${failures.length} of ${pushes} pushes failed`);
    assert.ok(pushes >= 6, `only ${pushes} pushes`);
    assert.deepEqual(collections.filter((c) => c.error !== undefined || c.skipped), []);
    assert.ok(collections.length >= 2, `${collections.length} collections`);
    // Once the grace window is over, a collection takes the deleted images' blobs (polled:
    // collections one after another, 30 s at most).
    assert.ok(deleted > 0, "no image was deleted");
    let blobsCollected = collections.reduce((n, c) => n + c.counts.blobs, 0);
    const bound = Date.now() + 30_000;
    while (blobsCollected === 0) {
      assert.ok(Date.now() < bound, "the collector deleted no blob");
      const r = await fetch(`${replicas.a.url}/admin/gc?wait=true`, { method: "POST" });
      const report = await r.json() as { counts: { blobs: number } };
      collections.push(report as typeof collections[number]);
      blobsCollected += report.counts.blobs;
    }

    // Every tag pulls whole through the proxy, each blob read (from the bucket) and hashed.
    for (const [ref, image] of pushed) {
      const [repo, tag] = ref.split(":");
      const m = await f(`/v2/${repo}/manifests/${tag}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(m.status, 200, ref);
      assert.equal(await sha256Digest(new Uint8Array(await m.arrayBuffer())), image.digest, ref);
      for (const digest of image.blobs) {
        const b = await f(`/v2/${repo}/blobs/${digest}`, { redirect: "follow" });
        assert.equal(b.status, 200, `${ref} blob ${digest}`);
        assert.equal(await sha256Digest(new Uint8Array(await b.arrayBuffer())), digest);
      }
    }
    assert.deepEqual(replicas.errors(), [], "the replicas logged errors");
    const sent = replicas.forwarded.map((r) => r.backend);
    assert.ok(sent.includes(replicas.a.url) && sent.includes(replicas.b.url));
    console.log(
      `${pushes} pushes (${deleted} deleted at once), ${collections.length} collections, ` +
        `${blobsCollected} blobs collected`,
    );
  },
);
