/**
 * The real clients against two scale-out replicas (`main.ts` over one Ceph RGW bucket and one
 * PostgreSQL database) behind a round-robin proxy, every request going to the other replica
 * than the last: the podman, skopeo and buildah suite of `clients_test.ts` (its big layer
 * 8 MiB here instead of 100 MiB), and containerd (`ctr`, its own daemon) pulling an image
 * pushed over HTTP and pushing it to another repository. Blob GETs are redirected (307) to a
 * presigned URL of the bucket, the mode's default, which every client follows.
 *
 * Two pairs of replicas serve the file (the round trip pushes to two registries); each test
 * uses its own repositories. The proxy's access log stands for the single registry's; the
 * replicas must log no error. Outside CI the tests are ignored when RGW, PostgreSQL or a tool
 * is missing; in CI they fail.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { clientsSuite } from "./clients_test.ts";
import { hasTool, hostOf, IN_CI, run, type Tool } from "../helpers/clients.ts";
import { startContainerd } from "../helpers/containerd.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { sha256Digest } from "../helpers/registry.ts";
import { scaleOutUnavailable, type TwoReplicas, twoReplicas } from "../helpers/replicas.ts";

const unavailable = await scaleOutUnavailable();

/** The file's two pairs of replicas, started on first use and stopped after the last test. */
const pairs: Promise<TwoReplicas>[] = [];
let handed = 0;
function pair(index: number): Promise<TwoReplicas> {
  pairs[index] ??= twoReplicas();
  return pairs[index];
}
Deno.test.afterAll(async () => {
  for (const p of pairs) await (await p)[Symbol.asyncDispose]();
});

/** Asserts the replicas logged no error and the proxy saw no 5xx; both replicas answered. */
function assertHealthy(replicas: TwoReplicas): void {
  assert.deepEqual(replicas.errors(), [], "the replicas logged errors");
  const failed = replicas.forwarded.filter((r) => r.status >= 500);
  assert.deepEqual(failed, [], "requests failed with 5xx");
  const backends = new Set(replicas.forwarded.map((r) => r.backend));
  assert.ok(backends.has(replicas.a.url) && backends.has(replicas.b.url));
}

/** A test needing `tools` and the scale-out mode (the replicas outlive it: no sanitizers). */
async function scaleOutClientTest(
  name: string,
  tools: readonly Tool[],
  fn: (t: Deno.TestContext) => Promise<void>,
): Promise<void> {
  const missing: Tool[] = [];
  for (const tool of tools) if (!(await hasTool(tool))) missing.push(tool);
  Deno.test({
    name,
    ignore: (missing.length > 0 || unavailable !== null) && !IN_CI,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      if (unavailable !== null) throw new Error(unavailable);
      if (missing.length > 0) throw new Error(`Missing tools in CI: ${missing.join(", ")}`);
      await fn(t);
      for (const p of pairs) assertHealthy(await p);
    },
  });
}

await clientsSuite({
  label: "two replicas: ",
  bigLayer: 8 * 1024 * 1024,
  test: scaleOutClientTest,
  // Each test's first registry is pair 0, the round trip's second one pair 1; kept running.
  registry: async () => {
    const replicas = await pair(handed++ % 2);
    return {
      url: replicas.url,
      logs: replicas.logs,
      fetch: replicas.fetch,
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  },
});

await scaleOutClientTest(
  "two replicas: containerd (ctr) pulls an image pushed over HTTP and pushes it to another " +
    "repository; the pushed image pulls back with the same digests",
  ["containerd", "ctr"],
  async () => {
    const replicas = await pair(0);
    const host = hostOf(replicas.url);
    const dir = await Deno.makeTempDir({ prefix: "registry-ctr-" });
    try {
      // A real gzip-compressed tar layer and a config naming its diff_id.
      const files = join(dir, "files");
      await Deno.mkdir(join(files, "etc"), { recursive: true });
      await Deno.writeTextFile(join(files, "etc", "hello"), `hello ${crypto.randomUUID()}\n`);
      await run("tar", ["-C", files, "-cf", join(dir, "layer.tar"), "etc"]);
      await run("gzip", ["-kn", join(dir, "layer.tar")]);
      const tar = await Deno.readFile(join(dir, "layer.tar"));
      const layer = await Deno.readFile(join(dir, "layer.tar.gz"));
      const config = new TextEncoder().encode(JSON.stringify({
        architecture: "amd64",
        os: "linux",
        rootfs: { type: "layers", diff_ids: [await sha256Digest(tar)] },
        config: { Env: [`NONCE=${crypto.randomUUID()}`] },
      }));
      const push = async (bytes: Uint8Array<ArrayBuffer>) => {
        const digest = await sha256Digest(bytes);
        const r = await replicas.fetch(`/v2/ctr/source/blobs/uploads/?digest=${digest}`, {
          method: "POST",
          body: bytes,
        });
        await r.body?.cancel();
        assert.equal(r.status, 201);
        return digest;
      };
      const manifest = new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: await push(config), size: config.length },
        layers: [{ mediaType: OCI_LAYER, digest: await push(layer), size: layer.length }],
      }));
      const manifestDigest = await sha256Digest(manifest);
      const put = await replicas.fetch("/v2/ctr/source/manifests/v1", {
        method: "PUT",
        headers: { "content-type": OCI_MANIFEST },
        body: manifest,
      });
      await put.body?.cancel();
      assert.equal(put.status, 201);

      await using containerd = await startContainerd(join(dir, "containerd"));
      const source = `${host}/ctr/source:v1`;
      const target = `${host}/ctr/pushed:v1`;
      const mark = replicas.forwarded.length;
      await containerd.ctr(["images", "pull", "--plain-http", "--snapshotter", "native", source]);
      const listed = await containerd.ctr(["images", "ls"]);
      assert.match(listed.stdout, new RegExp(`${source}\\s+\\S+\\s+${manifestDigest}`));
      // containerd fetched the blobs: redirected by a replica to the bucket, read there.
      const pulled = replicas.forwarded.slice(mark);
      assert.ok(
        pulled.some((r) => r.method === "GET" && r.path.includes("/blobs/") && r.status === 307),
        JSON.stringify(pulled),
      );
      await containerd.ctr(["images", "tag", source, target]);
      await containerd.ctr(["images", "push", "--plain-http", target]);
      const stored = await replicas.fetch("/v2/ctr/pushed/manifests/v1", {
        headers: { accept: OCI_MANIFEST },
      });
      assert.equal(stored.status, 200);
      assert.equal(stored.headers.get("docker-content-digest"), manifestDigest);
      assert.equal(await sha256Digest(new Uint8Array(await stored.arrayBuffer())), manifestDigest);
      for (const digest of [await sha256Digest(config), await sha256Digest(layer)]) {
        const blob = await replicas.fetch(`/v2/ctr/pushed/blobs/${digest}`, {
          redirect: "follow",
        });
        assert.equal(blob.status, 200);
        assert.equal(await sha256Digest(new Uint8Array(await blob.arrayBuffer())), digest);
      }
      // Dropped and pulled again from the pushed repository, fetched afresh.
      await containerd.ctr(["images", "rm", "--sync", source, target]);
      await containerd.ctr(["images", "pull", "--plain-http", "--snapshotter", "native", target]);
      const again = await containerd.ctr(["images", "ls"]);
      assert.match(again.stdout, new RegExp(`${target}\\s+\\S+\\s+${manifestDigest}`));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
