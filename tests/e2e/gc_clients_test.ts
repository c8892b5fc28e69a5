/**
 * Issue 13's concurrency proof with real clients: a registry (its own process) collecting
 * garbage every second with a grace window of a few seconds while, for GC_CLIENTS_SECONDS
 * (default 45; `deno task test:gc-clients` runs 300):
 *
 * - podman pushes images sharing base layers, moving a tag between them in repositories a
 *   retention rule (`untaggedafter: 2s`) empties of untagged manifests, and pushes to fresh
 *   repositories whose manifests the test then DELETEs by digest;
 * - skopeo copies `oci:` layouts (the same base layers) under a new tag each time into
 *   repositories whose rule keeps the 2 latest tags, and deletes some of its copies, by tag
 *   or by digest;
 * - containerd (`ctr images pull`, its own daemon) pulls tags nobody touches during the run,
 *   dropping the image and its content after each pull so that the next one fetches again.
 *
 * The clients keep their blob-info cache (`/var/lib/containers/cache`) and mount blobs from
 * repositories it names (the test reports how many of those mounts linked, 201, and how many
 * found nothing and opened a session, 202); a mount of a blob the collector took answers 202
 * with a session, and podman then pushes that image again whole. Every client command must succeed. The
 * collector must have run and deleted manifests, links and blobs; afterwards every tag pulls
 * whole (skopeo to an `oci:` folder, each blob hashed) and the data root is sound.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  accessEntries,
  clientTest,
  hashFile,
  hostOf,
  logFields,
  readOciImage,
  type Store,
  Workspace,
} from "../helpers/clients.ts";
import { startContainerd } from "../helpers/containerd.ts";
import { DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "../helpers/media_types.ts";
import { spawnRegistry } from "../helpers/registry.ts";
import { checkStore } from "../helpers/store_check.ts";

const SECONDS = Number(Deno.env.get("GC_CLIENTS_SECONDS") ?? "45");
/**
 * The grace window: a few seconds, longer than the slowest push of these small images (a
 * layer a client uploaded or mounted is garbage once the window is over if no manifest names
 * it yet: README, Garbage collection).
 */
const GRACE = Deno.env.get("GC_CLIENTS_GRACE") ?? "5s";
/** Images pushed by podman only to churning repositories (their own layers become garbage). */
const CHURN_VARIANTS = 4;
/** Images kept under stable tags, pulled by containerd. */
const STABLE_VARIANTS = 2;

const ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST]
  .join(", ");

/** Totals of the collections the registry logged. */
interface GcTotals {
  runs: number;
  tags: number;
  manifests: number;
  links: number;
  blobs: number;
  uploads: number;
  bytesFreed: number;
  errors: string[];
}

function gcTotals(lines: readonly string[]): GcTotals {
  const totals: GcTotals = {
    runs: 0,
    tags: 0,
    manifests: 0,
    links: 0,
    blobs: 0,
    uploads: 0,
    bytesFreed: 0,
    errors: [],
  };
  for (const line of lines) {
    const f = logFields(line);
    if (f.msg === "garbage collection stopped") totals.errors.push(f.error ?? line);
    if (f.msg !== "garbage collection" || f.dry_run === "true") continue;
    totals.runs++;
    totals.tags += Number(f.tags);
    totals.manifests += Number(f.manifests);
    totals.links += Number(f.links);
    totals.blobs += Number(f.blobs);
    totals.uploads += Number(f.uploads);
    totals.bytesFreed += Number(f.bytes_freed);
  }
  return totals;
}

/** Builds `base` (two layers) then variants of it, each with one layer of its own, offline. */
async function buildImages(store: Store, dir: string, count: number): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const file = async (name: string, size: number) => {
    const bytes = new Uint8Array(size);
    for (let at = 0; at < size; at += 65536) {
      crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)));
    }
    const path = join(dir, name);
    await Deno.writeFile(path, bytes);
    return path;
  };
  let base = "scratch";
  for (const [i, size] of [512 * 1024, 128 * 1024].entries()) {
    const container = (await store.buildah("from", "--quiet", base)).trim();
    await store.buildah("copy", "--quiet", container, await file(`base${i}`, size), `/base${i}`);
    base = `gc-base${i}`;
    await store.buildah("commit", "--quiet", "--format", "oci", container, base);
    await store.buildah("rm", container);
  }
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const container = (await store.buildah("from", "--quiet", base)).trim();
    await store.buildah("copy", "--quiet", container, await file(`own${i}`, 64 * 1024), "/own");
    await store.buildah("config", "--env", `VARIANT=${i}`, container);
    const name = `gc-variant${i}`;
    await store.buildah("commit", "--quiet", "--format", "oci", container, name);
    await store.buildah("rm", container);
    names.push(`localhost/${name}`);
  }
  return names;
}

await clientTest(
  `podman and skopeo push and containerd pulls for ${SECONDS}s while the collector runs ` +
    "every second: no client fails, every tag pulls whole, the store is sound",
  ["podman", "skopeo", "buildah", "containerd", "ctr"],
  async () => {
    await using ws = await Workspace.create();
    const store = await ws.store();
    const variants = await buildImages(
      store,
      await ws.path("src"),
      STABLE_VARIANTS + CHURN_VARIANTS + 3,
    );
    const stableVariants = variants.slice(0, STABLE_VARIANTS);
    const churnVariants = variants.slice(STABLE_VARIANTS, STABLE_VARIANTS + CHURN_VARIANTS);
    // skopeo's layouts: the same base layers, and layers of their own.
    const layouts: string[] = [];
    // One pushed by podman only after the run, to a repository the collector then empties.
    const lone = variants.pop()!;
    for (const variant of variants.slice(STABLE_VARIANTS + CHURN_VARIANTS)) {
      const dir = await ws.path("layouts", variant);
      await ws.skopeo("copy", "--quiet", store.ref(variant), `oci:${dir}:v1`);
      layouts.push(dir);
    }

    const dataDir = await ws.path("data");
    const configFile = join(ws.dir, "registry.yml");
    await Deno.writeTextFile(
      configFile,
      [
        "storage:",
        "  gc:",
        "    interval: 1s",
        `    grace: ${GRACE}`,
        "    retention:",
        '      - repositories: ["churn/skopeo-*"]',
        "        keeptags: 2",
        "        untaggedafter: 2s",
        '      - repositories: ["churn/**"]',
        "        untaggedafter: 2s",
        "",
      ].join("\n"),
    );
    await using registry = await spawnRegistry(dataDir, ["--config", configFile]);
    const host = hostOf(registry.url);
    const http = (path: string, init?: RequestInit) => fetch(`${registry.url}${path}`, init);

    const counts = { podmanPushes: 0, skopeoCopies: 0, ctrPulls: 0, deletes: 0, tagDeletes: 0 };
    const podmanPush = async (image: string, ref: string) => {
      await store.podman("push", "--quiet", "--tls-verify=false", image, `${host}/${ref}`);
      counts.podmanPushes++;
    };
    const skopeoCopy = async (layout: string, ref: string) => {
      await ws.skopeo("copy", "--quiet", "--dest-tls-verify=false", `oci:${layout}:v1`, ref);
      counts.skopeoCopies++;
    };
    /** Deletes a tag through the API (its manifest stays, untagged). */
    const deleteTag = async (repository: string, tag: string) => {
      const deleted = await http(`/v2/${repository}/manifests/${tag}`, { method: "DELETE" });
      await deleted.body?.cancel();
      assert.equal(deleted.status, 202, `DELETE ${repository}:${tag}`);
      counts.tagDeletes++;
    };
    /** Deletes the manifest `repository:tag` names, by digest, through the API. */
    const deleteByDigest = async (repository: string, tag: string) => {
      const head = await http(`/v2/${repository}/manifests/${tag}`, {
        method: "HEAD",
        headers: { accept: ACCEPT },
      });
      const digest = head.headers.get("docker-content-digest");
      assert.equal(head.status, 200, `HEAD ${repository}:${tag}`);
      assert.ok(digest);
      const deleted = await http(`/v2/${repository}/manifests/${digest}`, { method: "DELETE" });
      await deleted.body?.cancel();
      assert.equal(deleted.status, 202, `DELETE ${repository}@${digest}`);
      counts.deletes++;
    };

    // Stable tags, untouched during the run: containerd pulls them.
    const stableRefs: string[] = [];
    for (const [i, variant] of stableVariants.entries()) {
      await podmanPush(variant, `stable/podman:v${i}`);
      stableRefs.push(`${host}/stable/podman:v${i}`);
    }
    await skopeoCopy(layouts[0], `docker://${host}/stable/skopeo:v1`);
    stableRefs.push(`${host}/stable/skopeo:v1`);

    await using containerd = await startContainerd(await ws.path("containerd"));
    const deadline = Date.now() + SECONDS * 1000;
    let failed = false;
    const going = () => !failed && Date.now() < deadline;
    const worker = async (body: (round: number) => Promise<void>) => {
      try {
        for (let round = 0; going(); round++) await body(round);
      } catch (error) {
        failed = true;
        throw error;
      }
    };
    const outcomes = await Promise.allSettled([
      // podman: a tag moving between images (the one it left goes after 2s untagged), and
      // pushes to a fresh repository deleted by digest at once.
      worker(async (round) => {
        const variant = churnVariants[round % churnVariants.length];
        await podmanPush(variant, `churn/podman:current`);
        if (round % 2 === 1) {
          const repository = `churn/podman-${round % 5}`;
          await podmanPush(variant, `${repository}:tmp`);
          await deleteByDigest(repository, "tmp");
        }
      }),
      // skopeo: copies of the layouts under new tags (the collector drops all but the 2
      // latest of a repository), some deleted by tag or by digest at once.
      worker(async (round) => {
        const layout = layouts[round % layouts.length];
        const repository = `churn/skopeo-${round % 3}`;
        const tag = `r${round}`;
        await skopeoCopy(layout, `docker://${host}/${repository}:${tag}`);
        if (round % 4 === 1) await deleteTag(repository, tag);
        if (round % 4 === 3) await deleteByDigest(repository, tag);
      }),
      // containerd: pulls of the stable tags, each fetched afresh.
      worker(async (round) => {
        const ref = stableRefs[round % stableRefs.length];
        await containerd.ctr([
          "images",
          "pull",
          "--plain-http",
          "--snapshotter",
          "native",
          ref,
        ]);
        counts.ctrPulls++;
        await containerd.ctr(["images", "rm", "--sync", ref]);
      }),
    ]);
    const errors = outcomes.flatMap((o) => o.status === "rejected" ? [o.reason] : []);
    if (errors.length > 0) {
      throw new AggregateError(errors, errors.map((e) => String(e)).join("\n---\n"));
    }
    const runLog = registry.output.slice();

    const status = async () =>
      await (await http("/admin/gc")).json() as {
        graceMs: number;
        last: { startedAt: string } | null;
      };
    /** Waits (2 minutes at most) until a collection started after `time` has finished. */
    const collectedAfter = async (time: number) => {
      const wait = Date.now() + 120_000;
      for (;;) {
        const last = (await status()).last;
        if (last !== null && Date.parse(last.startedAt) > time) return;
        assert.ok(Date.now() < wait, `no collection started after ${new Date(time).toISOString()}`);
        await new Promise((resolve) => setTimeout(resolve, 200)); // poll interval
      }
    };
    const { graceMs } = await status();

    // A mount of a blob the collector took from the source repository answers 202 with a
    // new upload session (not an error), and podman pushes the image again whole.
    await podmanPush(lone, "churn/lone-a:v1");
    const manifest = await (await http("/v2/churn/lone-a/manifests/v1", {
      headers: { accept: ACCEPT },
    })).json() as { layers: { digest: string }[] };
    const own = manifest.layers.at(-1)!.digest;
    await deleteByDigest("churn/lone-a", "v1");
    await collectedAfter(Date.now() + graceMs);
    const gone = await http(`/v2/churn/lone-a/blobs/${own}`, { method: "HEAD" });
    assert.equal(gone.status, 404, "the collector left the lone image's layer linked");
    const mount = await http(`/v2/churn/lone-b/blobs/uploads/?mount=${own}&from=churn/lone-a`, {
      method: "POST",
    });
    await mount.body?.cancel();
    assert.equal(mount.status, 202);
    const session = mount.headers.get("location");
    assert.ok(session);
    const cancel = await http(session, { method: "DELETE" });
    await cancel.body?.cancel();
    assert.equal(cancel.status, 204);
    await podmanPush(lone, "churn/lone-b:v1");

    // The collector ran, and found real garbage: manifests, links and blob bytes.
    const totals = gcTotals(registry.output);
    // Cross-repository mounts the clients tried during the run: linked (201), or a new session (202) when
    // the blob was not there (the collector had emptied the repository the cache named).
    const mounts = { linked: 0, session: 0 };
    for (const { method, path, status } of accessEntries(runLog)) {
      if (method !== "POST" || !/[?&]mount=/.test(path)) continue;
      if (status === 201) mounts.linked++;
      else if (status === 202) mounts.session++;
      else assert.fail(`mount answered ${status}: ${path}`);
    }
    console.log(
      JSON.stringify({ seconds: SECONDS, grace: GRACE, ...counts, mounts, gc: totals }),
    );
    assert.deepEqual(totals.errors, []);
    assert.ok(totals.runs > 0, "no collection ran");
    assert.ok(totals.tags > 0, `no tag collected: ${JSON.stringify(totals)}`);
    assert.ok(totals.manifests > 0, `no manifest collected: ${JSON.stringify(totals)}`);
    assert.ok(totals.links > 0, `no link collected: ${JSON.stringify(totals)}`);
    assert.ok(totals.blobs > 0, `no blob collected: ${JSON.stringify(totals)}`);

    // Once a collection that started a grace window after the last push has finished, the
    // retention rules have nothing left to drop: the tags are then stable (the collector runs
    // on, while every tag left pulls whole).
    await collectedAfter(Date.now() + graceMs);

    const catalog = await (await http("/v2/_catalog?n=1000")).json() as {
      repositories: string[];
    };
    let pulled = 0;
    for (const repository of catalog.repositories) {
      const list = await http(`/v2/${repository}/tags/list`);
      if (list.status === 404) {
        await list.body?.cancel(); // emptied by the collector meanwhile
        continue;
      }
      const { tags } = await list.json() as { tags: string[] | null };
      for (const tag of tags ?? []) {
        const dir = join(await ws.path("pulled", repository), tag);
        await ws.skopeo(
          "copy",
          "--quiet",
          "--src-tls-verify=false",
          `docker://${host}/${repository}:${tag}`,
          `oci:${dir}:${tag}`,
        );
        const image = await readOciImage(dir);
        for (const blob of [image.manifest.config, ...image.manifest.layers]) {
          const { sha256, size } = await hashFile(image.blobPath(blob.digest));
          assert.equal(`sha256:${sha256}`, blob.digest, `${repository}:${tag}`);
          assert.equal(size, blob.size, `${repository}:${tag} ${blob.digest}`);
        }
        pulled++;
      }
    }
    // The stable tags, churn/podman:current and the last copies at least.
    assert.ok(pulled >= stableRefs.length + 1, `only ${pulled} tags pulled`);
    for (const ref of stableRefs) {
      const [repository, tag] = ref.slice(host.length + 1).split(":");
      assert.ok(catalog.repositories.includes(repository), ref);
      const head = await http(`/v2/${repository}/manifests/${tag}`, {
        method: "HEAD",
        headers: { accept: ACCEPT },
      });
      assert.equal(head.status, 200, ref);
    }

    // The data root is sound once the registry has stopped.
    const exit = await registry.kill("SIGTERM");
    assert.equal(exit.code, 0);
    const report = await checkStore(dataDir);
    assert.deepEqual(report.problems, []);
    console.log(JSON.stringify({ tagsPulledAfter: pulled, blobsStored: report.blobs.size }));
  },
);
