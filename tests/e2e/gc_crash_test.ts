/**
 * Crash safety of garbage collection: the registry runs as its own process with a grace window
 * of 0 or 1 s and a rule dropping untagged manifests at once (so collections delete as much as they
 * can, racing with the pushes); workers push images and indexes under tags and by digest, move
 * and delete tags and delete manifests, while a client runs collections back to back through
 * `POST /admin/gc`; the process is SIGKILLed at a random moment (mostly in the middle of a
 * collection) and restarted on the same root, again and again. After every kill:
 *
 * - the store is sound: every blob file hashes to its name, every link, revision, tag and
 *   referrers entry names what exists (tests/helpers/store_check.ts), every stored index's
 *   children are stored and every stored image manifest's blobs are linked;
 * - nothing referenced is lost: every tag holds its last acknowledged value (or the value of a
 *   write the kill cut), and its manifest, its children and all their blobs read back whole;
 * - after the restart, one collection with no pushes running finishes the job: no blob is left
 *   that nothing references, no link that no manifest needs, no untagged manifest that no
 *   index lists.
 *
 * `GC_CRASH_ROUNDS` (default 3) and `GC_CRASH_SEED` tune a run; `deno task test:gc-crash`
 * runs 50 rounds.
 */

import { mulberry32 } from "../helpers/stress_model.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";
import { type RegistryProcess, sha256Digest, spawnRegistry } from "../helpers/registry.ts";
import { checkStore } from "../helpers/store_check.ts";

const ROUNDS = Number(Deno.env.get("GC_CRASH_ROUNDS") ?? 3);
const SEED = Number(Deno.env.get("GC_CRASH_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const WORKERS = 3;
/** The settings of a run: a grace window of 0 (most races) or 1 s (most pushes succeed). */
const env = (grace: string) => ({
  REGISTRY_STORAGE_GC_GRACE: grace,
  REGISTRY_STORAGE_GC_INTERVAL: "off",
  REGISTRY_STORAGE_GC_RETENTION: '[{repositories: ["**"], untaggedafter: "0s"}]',
});

const random = mulberry32(SEED);
const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));

function bytesOf(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** Layer contents every worker pushes, so the same blob is committed, linked, swept often. */
const SHARED = Array.from({ length: 3 }, (_, i) => bytesOf(2000 + i * 3000));

/** What a tag was set to, with what it needs to read back whole. */
interface Pushed {
  readonly digest: string;
  /** Blob digests (config, layers) of the image or of every child of the index. */
  readonly blobs: readonly string[];
  /** Child manifest digests of an index. */
  readonly children: readonly string[];
}

interface TagState {
  acked: Pushed | null;
  /** A write the kill may have cut: a value, or "absent" for a delete. */
  inflight: Pushed | "absent" | null;
}

const tags = new Map<string, TagState>(); // "repo:tag"
const counts = { images: 0, indexes: 0, blobUnknown: 0, gcRuns: 0, killsInGc: 0, deletes: 0 };

class Killed extends Error {}

async function call(
  base: string,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  try {
    const res = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(30_000) });
    return { status: res.status, text: await res.text(), headers: res.headers };
  } catch {
    throw new Killed();
  }
}

async function pushBlob(base: string, repo: string, bytes: Uint8Array<ArrayBuffer>) {
  const digest = await sha256Digest(bytes);
  const res = await call(base, `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
    method: "POST",
    body: bytes,
  });
  if (res.status !== 201) throw new Error(`blob POST gave ${res.status}: ${res.text}`);
  return { digest, size: bytes.length };
}

/** Pushes an image's blobs; returns its manifest body, digest and what it needs. */
async function imageBlobs(base: string, repo: string) {
  const config = await pushBlob(base, repo, bytesOf(between(50, 200)));
  const layers = [await pushBlob(base, repo, SHARED[between(0, SHARED.length - 1)])];
  if (random() < 0.5) layers.push(await pushBlob(base, repo, bytesOf(between(100, 3000))));
  const body = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", ...l })),
  }));
  const digest = await sha256Digest(body);
  const pushed: Pushed = {
    digest,
    blobs: [config.digest, ...layers.map((l) => l.digest)],
    children: [],
  };
  return { body, digest, size: body.length, pushed };
}

/** PUTs a manifest; true for 201, false for MANIFEST_BLOB_UNKNOWN (a sweep took a part). */
async function putManifest(
  base: string,
  repo: string,
  reference: string,
  body: Uint8Array<ArrayBuffer>,
  type: string,
): Promise<boolean> {
  const res = await call(base, `/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": type },
    body,
  });
  if (res.status === 201) return true;
  if (res.status === 400 && res.text.includes("MANIFEST_BLOB_UNKNOWN")) {
    counts.blobUnknown++; // a sweep with no grace window took a blob or child first: allowed
    return false;
  }
  throw new Error(`manifest PUT gave ${res.status}: ${res.text}`);
}

async function worker(id: number, base: string, alive: () => boolean): Promise<void> {
  const repo = `gc/w${id}`;
  try {
    while (alive()) {
      const tag = `t${between(0, 2)}`;
      const key = `${repo}:${tag}`;
      const state = tags.get(key) ?? { acked: null, inflight: null };
      tags.set(key, state);
      const dice = random();
      if (dice < 0.45) {
        const image = await imageBlobs(base, repo);
        state.inflight = image.pushed;
        if (await putManifest(base, repo, tag, image.body, OCI_MANIFEST)) {
          state.acked = image.pushed;
          counts.images++;
        }
        state.inflight = null;
      } else if (dice < 0.65) {
        const children = [];
        for (let i = 0; i < 2; i++) {
          const image = await imageBlobs(base, repo);
          if (await putManifest(base, repo, image.digest, image.body, OCI_MANIFEST)) {
            children.push(image);
          }
        }
        if (children.length === 0) continue;
        const body = new TextEncoder().encode(JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: children.map((c) => ({
            mediaType: OCI_MANIFEST,
            digest: c.digest,
            size: c.size,
          })),
        }));
        const pushed: Pushed = {
          digest: await sha256Digest(body),
          blobs: children.flatMap((c) => c.pushed.blobs),
          children: children.map((c) => c.digest),
        };
        state.inflight = pushed;
        if (await putManifest(base, repo, tag, body, OCI_INDEX)) {
          state.acked = pushed;
          counts.indexes++;
        }
        state.inflight = null;
      } else if (dice < 0.8) {
        state.inflight = "absent";
        const res = await call(base, `/v2/${repo}/manifests/${tag}`, { method: "DELETE" });
        if (res.status === 202 || res.status === 404) state.acked = null;
        else throw new Error(`tag DELETE gave ${res.status}: ${res.text}`);
        state.inflight = null;
        counts.deletes++;
      } else {
        // An image by digest only: garbage as soon as it is stored.
        const image = await imageBlobs(base, repo);
        await putManifest(base, repo, image.digest, image.body, OCI_MANIFEST);
      }
    }
  } catch (error) {
    if (!(error instanceof Killed)) throw error;
  }
}

async function collector(base: string, alive: () => boolean, inGc: { now: boolean }) {
  try {
    while (alive()) {
      inGc.now = true;
      const res = await call(base, "/admin/gc?wait=true", { method: "POST" });
      inGc.now = false;
      if (res.status !== 200) throw new Error(`POST /admin/gc gave ${res.status}: ${res.text}`);
      counts.gcRuns++;
    }
  } catch (error) {
    if (!(error instanceof Killed)) throw error;
  }
}

/** The store is sound, and every stored manifest is complete in its repository. */
async function verifyStore(root: string): Promise<Awaited<ReturnType<typeof checkStore>>> {
  const report = await checkStore(root);
  assert.deepEqual(report.problems, []);
  for (const entry of report.revisions) {
    const [repo, digest] = entry.split("@");
    const hex = digest.slice("sha256:".length);
    const manifest = JSON.parse(
      await Deno.readTextFile(join(root, "blobs", "sha256", hex.slice(0, 2), hex)),
    );
    if (Array.isArray(manifest.manifests)) {
      for (const child of manifest.manifests) {
        assert.ok(report.revisions.has(`${repo}@${child.digest}`), `index ${entry} lost a child`);
      }
    } else {
      for (const blob of [manifest.config, ...manifest.layers]) {
        assert.ok(report.layers.has(`${repo}@${blob.digest}`), `${entry} lost ${blob.digest}`);
      }
    }
  }
  return report;
}

/** Every tag reads back with its manifest, children and blobs; settles writes the kill cut. */
async function verifyTags(base: string): Promise<void> {
  for (const [key, state] of tags) {
    const [repo, tag] = key.split(":");
    const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
      headers: { accept: `${OCI_MANIFEST}, ${OCI_INDEX}` },
    });
    const found = res.status === 200 ? res.headers.get("docker-content-digest") : null;
    await res.body?.cancel();
    const options: (Pushed | null)[] = [state.acked];
    if (state.inflight !== null) options.push(state.inflight === "absent" ? null : state.inflight);
    const match = options.find((o) => (o?.digest ?? null) === found);
    assert.ok(
      match !== undefined,
      `${key} is ${found}, expected ${options.map((o) => o?.digest ?? "absent")}`,
    );
    state.acked = match;
    state.inflight = null;
    if (match === null) continue;
    for (const child of match.children) {
      const got = await fetch(`${base}/v2/${repo}/manifests/${child}`, {
        headers: { accept: OCI_MANIFEST },
      });
      await got.body?.cancel();
      assert.equal(got.status, 200, `${key}: child ${child}`);
    }
    for (const blob of match.blobs) {
      const got = await fetch(`${base}/v2/${repo}/blobs/${blob}`);
      assert.equal(got.status, 200, `${key}: blob ${blob}`);
      assert.equal(await sha256Digest(new Uint8Array(await got.arrayBuffer())), blob);
    }
  }
}

/** After a collection with nothing running: no garbage left. */
async function verifyCollected(root: string): Promise<void> {
  const report = await verifyStore(root);
  const needed = new Set<string>(); // repo@digest of links a manifest needs
  const listed = new Set<string>(); // repo@digest of manifests an index lists
  for (const entry of report.revisions) {
    const [repo, digest] = entry.split("@");
    const hex = digest.slice("sha256:".length);
    const manifest = JSON.parse(
      await Deno.readTextFile(join(root, "blobs", "sha256", hex.slice(0, 2), hex)),
    );
    if (Array.isArray(manifest.manifests)) {
      for (const child of manifest.manifests) listed.add(`${repo}@${child.digest}`);
    } else {
      for (const blob of [manifest.config, ...manifest.layers]) {
        needed.add(`${repo}@${blob.digest}`);
      }
    }
  }
  const tagged = new Set([...report.tags].map(([key, digest]) => `${key.split(":")[0]}@${digest}`));
  for (const entry of report.revisions) {
    assert.ok(tagged.has(entry) || listed.has(entry), `untagged ${entry} left`);
  }
  for (const link of report.layers) assert.ok(needed.has(link), `unneeded link ${link} left`);
  const referenced = new Set(
    [...report.layers, ...report.revisions].map((entry) => entry.split("@")[1]),
  );
  for (const blob of report.blobs) {
    assert.ok(referenced.has(blob), `unreferenced blob ${blob} left`);
  }
}

Deno.test({
  name: `SIGKILL during collections with pushes running loses nothing referenced (seed ${SEED})`,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "registry-gc-crash-" });
    let proc: RegistryProcess | null = null;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        proc = await spawnRegistry(root, [], env(random() < 0.3 ? "0s" : "1s"));
        await verifyStore(root);
        await verifyTags(proc.url);
        let killed = false;
        const alive = () => !killed;
        const inGc = { now: false };
        const tasks = [
          ...Array.from({ length: WORKERS }, (_, i) => worker(i, proc!.url, alive)),
          collector(proc.url, alive, inGc),
        ];
        await new Promise((resolve) => setTimeout(resolve, between(1000, 3000)));
        killed = true;
        if (inGc.now) counts.killsInGc++;
        await proc.kill("SIGKILL");
        await Promise.all(tasks);
        await verifyStore(root);
      }
      proc = await spawnRegistry(root, [], env("0s")); // no pushes run now
      await verifyTags(proc.url);
      const finish = await fetch(`${proc.url}/admin/gc?wait=true`, { method: "POST" });
      assert.equal(finish.status, 200);
      const report = await finish.json();
      assert.equal(report.error, undefined);
      await verifyCollected(root);
      await verifyTags(proc.url);
      console.log(
        `gc crash: ${ROUNDS} kills (${counts.killsInGc} during a collection), seed ${SEED}: ` +
          `${counts.gcRuns} collections, ${counts.images} images, ${counts.indexes} indexes, ` +
          `${counts.deletes} tag deletes, ${counts.blobUnknown} MANIFEST_BLOB_UNKNOWN`,
      );
      assert.ok(counts.images > 0 && counts.gcRuns > 0, "the workload ran");
    } catch (error) {
      // What the registry logged about it (a 500's cause is only in its log).
      const logged = proc?.output.filter((line) => /level=(warn|error)/.test(line)) ?? [];
      if (logged.length === 0) throw error;
      throw new Error(`${error}\nthe registry's warnings and errors:\n${logged.join("\n")}`, {
        cause: error,
      });
    } finally {
      await proc?.kill("SIGKILL");
      await Deno.remove(root, { recursive: true });
    }
  },
});
