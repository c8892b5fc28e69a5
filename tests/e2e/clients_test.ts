/**
 * Real clients against the running registry (issue 4, item 7): images built offline with
 * buildah, pushed and pulled with podman and skopeo (OCI and Docker schema2, multi-arch
 * indexes and lists), inspected, listed and deleted with skopeo. Each test has its own
 * registry and a private workspace (vfs stores, configuration, TMPDIR).
 *
 * A missing tool ignores the test, except in CI (`CI` set) where it fails.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  buildImage,
  type BuildOptions,
  type BuiltImage,
  clientTest,
  diffIdOf,
  extractLayers,
  filesUnder,
  hasTool,
  hostOf,
  imageFiles,
  type ImageManifest,
  inspectImage,
  type LoggedRequest,
  parseLog,
  readOciImage,
  run,
  type Tool,
  Workspace,
} from "../helpers/clients.ts";
import { tempRegistry } from "../helpers/registry.ts";
import {
  DOCKER_CONFIG,
  DOCKER_LAYER as DOCKER_LAYER_GZIP,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER as OCI_LAYER_GZIP,
  OCI_MANIFEST,
} from "../helpers/media_types.ts";

const TOOLS: Tool[] = ["skopeo", "podman", "buildah"];

/** A registry the tests run against: its base URL, `fetch` and its access log lines. */
export interface SuiteRegistry extends AsyncDisposable {
  readonly url: string;
  readonly logs: string[];
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** What the suite runs against (by default a registry of this process per test). */
export interface ClientsSuite {
  /** A new registry with its access log on (one per test; the round trip takes two). */
  readonly registry: () => Promise<SuiteRegistry>;
  /** Registers a test needing tools (default `clientTest`). */
  readonly test?: typeof clientTest;
  /** Prepended to each test's name. */
  readonly label?: string;
  /** The size of the round trip's big layer (default 100 MiB). */
  readonly bigLayer?: number;
}
const BIG_LAYER = 100 * 1024 * 1024;
const TLS = "--tls-verify=false";

const text = (s: string) => new TextEncoder().encode(s);
const unique = (what: string) => text(`${what} ${crypto.randomUUID()}\n`);

/** A manifest fetched with plain GET. */
interface FetchedManifest {
  readonly status: number;
  readonly contentType: string | null;
  readonly digest: string | null;
  readonly bytes: Uint8Array;
  readonly computedDigest: string;
}

async function getManifest(
  reg: SuiteRegistry,
  name: string,
  reference: string,
  accept?: string,
): Promise<FetchedManifest> {
  const res = await reg.fetch(`/v2/${name}/manifests/${reference}`, {
    headers: accept ? { Accept: accept } : {},
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  return {
    status: res.status,
    contentType: res.headers.get("content-type"),
    digest: res.headers.get("docker-content-digest"),
    bytes,
    computedDigest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
  };
}

function json<T>(m: FetchedManifest): T {
  return JSON.parse(new TextDecoder().decode(m.bytes)) as T;
}

/** Asserts a manifest is stored under `reference` with the media type, and returns it. */
async function assertStored(
  reg: SuiteRegistry,
  name: string,
  reference: string,
  mediaType: string,
): Promise<FetchedManifest> {
  const m = await getManifest(reg, name, reference);
  assert.equal(m.status, 200, `GET ${name}:${reference}`);
  assert.equal(m.contentType, mediaType);
  assert.equal(m.digest, m.computedDigest);
  assert.equal(json<{ mediaType?: string }>(m).mediaType, mediaType);
  return m;
}

/** The requests logged since `mark`; asserts none failed with 5xx. */
function requestsSince(reg: SuiteRegistry, mark: number): LoggedRequest[] {
  const lines = reg.logs.slice(mark);
  const unexpected = lines.filter((l) => l.includes('msg="unexpected error"'));
  assert.deepEqual(unexpected, [], "the registry logged unexpected errors");
  const requests = parseLog(lines);
  const failed = requests.filter((r) => r.status >= 500);
  assert.deepEqual(failed, [], "requests failed with 5xx");
  return requests;
}

const isUploadStart = (r: LoggedRequest) =>
  r.method === "POST" && r.path.endsWith("/blobs/uploads/") && !r.query.has("mount");
const isMount = (r: LoggedRequest) =>
  r.method === "POST" && r.path.endsWith("/blobs/uploads/") && r.query.has("mount");
const isUploadPut = (r: LoggedRequest) => r.method === "PUT" && r.path.includes("/blobs/uploads/");
const isPatch = (r: LoggedRequest) => r.method === "PATCH";

/** Every blob a manifest names (config first). */
const blobsOf = (m: ImageManifest) => [m.config.digest, ...m.layers.map((l) => l.digest)];

/** The three-layer image of the round-trip test: small, 100 MiB (or `big`) random, small. */
function threeLayers(big = BIG_LAYER): BuildOptions {
  return {
    layers: [
      { "/hello.txt": unique("hello"), "/etc/app/config.txt": unique("config") },
      { "/data/big.bin": { random: big } },
      { "/etc/app/version": unique("version"), "/data/small.bin": { random: 4096 } },
    ],
    arch: "amd64",
    os: "linux",
    config: ["--env", "APP=e2e", "--label", "e2e=clients", "--cmd", "/hello.txt"],
  };
}

/** Registers the suite's tests against `suite`'s registries. */
export async function clientsSuite(suite: ClientsSuite): Promise<void> {
  const test = suite.test ?? clientTest;
  const label = suite.label ?? "";
  const bigLayer = suite.bigLayer ?? BIG_LAYER;
  await test(
    `${label}a 3-layer image with a ${
      bigLayer / 1024 / 1024
    } MiB layer round-trips through podman (OCI) and skopeo (schema2)`,
    TOOLS,
    async (t) => {
      await using ws = await Workspace.create();
      await using regA = await suite.registry();
      await using regB = await suite.registry();
      const hostA = hostOf(regA.url);
      const hostB = hostOf(regB.url);
      const build = await ws.store();
      let image!: BuiltImage;
      // podman pushes OCI to registry A, skopeo pushes Docker schema2 to registry B.
      const routes = [
        {
          tool: "podman",
          reg: regA,
          type: OCI_MANIFEST,
          push: (repo: string) =>
            build.podman(
              "push",
              "--quiet",
              TLS,
              "--format",
              "oci",
              image.name,
              `${hostA}/${repo}:v1`,
            ),
          manifest: undefined as ImageManifest | undefined,
        },
        {
          tool: "skopeo",
          reg: regB,
          type: DOCKER_MANIFEST,
          push: (repo: string) =>
            ws.skopeo(
              "copy",
              "--quiet",
              "--dest-tls-verify=false",
              "--format",
              "v2s2",
              build.ref(image.name),
              `docker://${hostB}/${repo}:v1`,
            ),
          manifest: undefined as ImageManifest | undefined,
        },
      ];
      const [podmanRoute, skopeoRoute] = routes;

      await t.step("buildah builds the image offline from scratch", async () => {
        image = await buildImage(ws, build, "e2e-big", threeLayers(bigLayer));
        assert.equal(image.diffIds.length, 3);
        assert.equal(image.files["/data/big.bin"].size, bigLayer);
      });

      await t.step("podman pushes it as OCI: POST 202, PATCH 202, PUT 201 per blob", async () => {
        const mark = regA.logs.length;
        await podmanRoute.push("e2e/podman");
        const requests = requestsSince(regA, mark);
        const stored = await assertStored(regA, "e2e/podman", "v1", OCI_MANIFEST);
        const manifest = podmanRoute.manifest = json<ImageManifest>(stored);
        assert.equal(manifest.config.mediaType, OCI_CONFIG);
        assert.equal(manifest.config.digest, image.configDigest);
        assert.deepEqual(manifest.layers.map((l) => l.mediaType), Array(3).fill(OCI_LAYER_GZIP));
        const starts = requests.filter(isUploadStart);
        assert.equal(starts.length, 4, "one upload per layer and one for the config");
        assert.ok(starts.every((r) => r.status === 202));
        assert.equal(requests.filter(isPatch).length, 4);
        assert.ok(requests.filter(isPatch).every((r) => r.status === 202));
        assert.deepEqual(
          requests.filter(isUploadPut).map((r) => [r.query.get("digest"), r.status]).sort(),
          blobsOf(manifest).map((d) => [d, 201]).sort(),
        );
        assert.ok(
          requests.some((r) =>
            r.method === "PUT" && r.path === "/v2/e2e/podman/manifests/v1" && r.status === 201
          ),
        );
      });

      await t.step("skopeo copies it as Docker schema2 to a second registry", async () => {
        const mark = regB.logs.length;
        await skopeoRoute.push("e2e/skopeo");
        const requests = requestsSince(regB, mark);
        const stored = await assertStored(regB, "e2e/skopeo", "v1", DOCKER_MANIFEST);
        const manifest = skopeoRoute.manifest = json<ImageManifest>(stored);
        assert.equal(manifest.config.mediaType, DOCKER_CONFIG);
        assert.equal(manifest.config.digest, image.configDigest);
        assert.deepEqual(manifest.layers.map((l) => l.mediaType), Array(3).fill(DOCKER_LAYER_GZIP));
        assert.deepEqual(
          requests.filter(isUploadPut).map((r) => [r.query.get("digest"), r.status]).sort(),
          blobsOf(manifest).map((d) => [d, 201]).sort(),
        );
      });

      await t.step("a re-push only HEADs: no POST, PATCH or upload PUT", async () => {
        for (const route of routes) {
          const name = `e2e/${route.tool}`;
          const mark = route.reg.logs.length;
          await route.push(name);
          const requests = requestsSince(route.reg, mark);
          assert.deepEqual(
            requests.filter((r) => r.method === "POST" || r.method === "PATCH" || isUploadPut(r)),
            [],
            `re-push with ${route.tool} uploaded something`,
          );
          for (const digest of blobsOf(route.manifest!)) {
            assert.ok(
              requests.some((r) =>
                r.method === "HEAD" && r.path === `/v2/${name}/blobs/${digest}` && r.status === 200
              ),
              `${route.tool}: no HEAD 200 for ${digest}`,
            );
          }
        }
      });

      await t.step(
        "a push to another repository mounts the layers instead of uploading",
        async () => {
          for (const route of routes) {
            const from = `e2e/${route.tool}`;
            const to = "e2e/copy";
            const manifest = route.manifest!;
            const mark = route.reg.logs.length;
            await route.push(to);
            const requests = requestsSince(route.reg, mark);
            for (const layer of manifest.layers) {
              assert.ok(
                requests.some((r) =>
                  isMount(r) && r.path === `/v2/${to}/blobs/uploads/` &&
                  r.query.get("mount") === layer.digest && r.query.get("from") === from &&
                  r.status === 201
                ),
                `${route.tool}: layer ${layer.digest} was not mounted from ${from}`,
              );
            }
            // containers/image never mounts a config blob: it HEADs it, then uploads it (small).
            const uploaded = requests.filter(isUploadPut).map((r) => r.query.get("digest"));
            assert.ok(
              uploaded.every((d) => d === manifest.config.digest),
              `${route.tool} re-uploaded ${uploaded}`,
            );
            assert.ok(requests.filter(isPatch).length <= 1);
            const stored = await assertStored(route.reg, to, "v1", route.type);
            assert.deepEqual(json<ImageManifest>(stored), manifest);
          }
        },
      );

      await t.step(
        "podman pulls the OCI image into an empty store: same config, diff_ids, files",
        async () => {
          const fresh = await ws.store();
          const ref = `${hostA}/e2e/podman:v1`;
          await fresh.podman("pull", "--quiet", TLS, ref);
          const info = await inspectImage(fresh, ref);
          assert.equal(info.configDigest, image.configDigest);
          assert.deepEqual(info.diffIds, image.diffIds);
          assert.equal(info.manifestDigest, (await getManifest(regA, "e2e/podman", "v1")).digest);
          assert.deepEqual(await imageFiles(fresh, ref, image.files), image.files);
        },
      );

      await t.step(
        "skopeo copies the schema2 image to an oci: folder: same config, diff_ids, files",
        async () => {
          const dir = join(ws.dir, "pulled-oci");
          await ws.skopeo(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            `docker://${hostB}/e2e/skopeo:v1`,
            `oci:${dir}:v1`,
          );
          const pulled = await readOciImage(dir);
          assert.equal(pulled.configDigest, image.configDigest);
          assert.deepEqual(pulled.config.rootfs.diff_ids, image.diffIds);
          assert.equal(pulled.config.architecture, "amd64");
          assert.ok(pulled.config.config?.Env?.includes("APP=e2e"));
          assert.equal(pulled.config.config?.Labels?.e2e, "clients");
          const diffIds = [];
          for (const layer of pulled.manifest.layers) {
            assert.equal(layer.digest, skopeoRoute.manifest!.layers[diffIds.length].digest);
            diffIds.push(await diffIdOf(pulled.blobPath(layer.digest), layer.mediaType));
          }
          assert.deepEqual(diffIds, image.diffIds);
          const rootfs = join(ws.dir, "extracted");
          await extractLayers(pulled, rootfs);
          assert.deepEqual(await filesUnder(rootfs, image.files), image.files);
        },
      );

      await t.step({
        name: "umoci unpacks the pulled oci: folder to the same files",
        ignore: !(await hasTool("umoci")),
        fn: async () => {
          const bundle = join(ws.dir, "bundle");
          await ws.run(
            "umoci",
            "unpack",
            "--rootless",
            "--image",
            `${join(ws.dir, "pulled-oci")}:v1`,
            bundle,
          );
          assert.deepEqual(await filesUnder(join(bundle, "rootfs"), image.files), image.files);
        },
      });
    },
  );

  await test(
    `${label}podman --format v2s2 and skopeo --format oci store the media type asked for, whatever Accept says`,
    TOOLS,
    async (t) => {
      await using ws = await Workspace.create();
      await using reg = await suite.registry();
      const host = hostOf(reg.url);
      const build = await ws.store();
      const image = await buildImage(ws, build, "e2e-formats", {
        layers: [{ "/a.txt": unique("a") }, { "/b/c.txt": unique("c") }],
        arch: "amd64",
        os: "linux",
      });
      const cases = [
        {
          what: "podman --format v2s2",
          name: "formats/podman-v2s2",
          type: DOCKER_MANIFEST,
          config: DOCKER_CONFIG,
          layer: DOCKER_LAYER_GZIP,
          push: () =>
            build.podman(
              "push",
              "--quiet",
              TLS,
              "--format",
              "v2s2",
              image.name,
              `${host}/formats/podman-v2s2:v1`,
            ),
        },
        {
          what: "podman --format oci",
          name: "formats/podman-oci",
          type: OCI_MANIFEST,
          config: OCI_CONFIG,
          layer: OCI_LAYER_GZIP,
          push: () =>
            build.podman(
              "push",
              "--quiet",
              TLS,
              "--format",
              "oci",
              image.name,
              `${host}/formats/podman-oci:v1`,
            ),
        },
        {
          what: "skopeo --format v2s2",
          name: "formats/skopeo-v2s2",
          type: DOCKER_MANIFEST,
          config: DOCKER_CONFIG,
          layer: DOCKER_LAYER_GZIP,
          push: () =>
            ws.skopeo(
              "copy",
              "--quiet",
              "--dest-tls-verify=false",
              "--format",
              "v2s2",
              build.ref(image.name),
              `docker://${host}/formats/skopeo-v2s2:v1`,
            ),
        },
        {
          what: "skopeo --format oci",
          name: "formats/skopeo-oci",
          type: OCI_MANIFEST,
          config: OCI_CONFIG,
          layer: OCI_LAYER_GZIP,
          push: () =>
            ws.skopeo(
              "copy",
              "--quiet",
              "--dest-tls-verify=false",
              "--format",
              "oci",
              build.ref(image.name),
              `docker://${host}/formats/skopeo-oci:v1`,
            ),
        },
      ];
      for (const c of cases) {
        await t.step(`${c.what}: stored as ${c.type}, pulled back intact`, async () => {
          await c.push();
          const stored = await assertStored(reg, c.name, "v1", c.type);
          const manifest = json<ImageManifest>(stored);
          assert.equal(manifest.config.mediaType, c.config);
          assert.equal(manifest.config.digest, image.configDigest);
          assert.deepEqual(manifest.layers.map((l) => l.mediaType), [c.layer, c.layer]);
          // The stored type comes back whatever the client accepts.
          for (const accept of [OCI_MANIFEST, DOCKER_MANIFEST, "application/json", "*/*"]) {
            const other = await getManifest(reg, c.name, "v1", accept);
            assert.equal(other.status, 200);
            assert.equal(other.contentType, c.type, `Accept: ${accept}`);
            assert.deepEqual(other.bytes, stored.bytes);
          }
          const head = await reg.fetch(`/v2/${c.name}/manifests/v1`, { method: "HEAD" });
          assert.equal(head.status, 200);
          assert.equal(head.headers.get("content-type"), c.type);
          assert.equal(head.headers.get("docker-content-digest"), stored.digest);
          assert.equal(head.headers.get("content-length"), String(stored.bytes.length));
          // skopeo keeps the format on a plain copy out of the registry.
          const dir = join(ws.dir, c.name.replace("/", "-"));
          await ws.skopeo(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--preserve-digests",
            `docker://${host}/${c.name}:v1`,
            `dir:${dir}`,
          );
          assert.deepEqual(await Deno.readFile(join(dir, "manifest.json")), stored.bytes);
        });
      }
    },
  );

  await test(
    `${label}a multi-arch OCI index and a Docker manifest list pushed by buildah pull per platform`,
    TOOLS,
    async (t) => {
      await using ws = await Workspace.create();
      await using reg = await suite.registry();
      const host = hostOf(reg.url);
      const build = await ws.store();
      const platforms = ["amd64", "arm64"] as const;
      const images: Record<string, BuiltImage> = {};
      for (const arch of platforms) {
        images[arch] = await buildImage(ws, build, `e2e-multi-${arch}`, {
          layers: [{ "/arch.txt": unique(`built for ${arch}`) }],
          arch,
          os: "linux",
        });
      }
      await build.buildah("manifest", "create", "e2e-list");
      for (const arch of platforms) {
        await build.buildah("manifest", "add", "e2e-list", images[arch].name);
      }

      const lists = [
        { format: "oci", name: "multi/oci", type: OCI_INDEX, child: OCI_MANIFEST },
        { format: "v2s2", name: "multi/docker", type: DOCKER_LIST, child: DOCKER_MANIFEST },
      ];
      const indexDigests: Record<string, string> = {};
      for (const list of lists) {
        await t.step(
          `buildah manifest push --all --format ${list.format} stores a ${list.type}`,
          async () => {
            const mark = reg.logs.length;
            await build.buildah(
              "manifest",
              "push",
              "--quiet",
              "--all",
              TLS,
              "--format",
              list.format,
              "e2e-list",
              `docker://${host}/${list.name}:v1`,
            );
            const requests = requestsSince(reg, mark);
            const stored = await assertStored(reg, list.name, "v1", list.type);
            indexDigests[list.name] = stored.digest!;
            const index = json<{ manifests: Required<ImageManifest["config"]>[] }>(stored);
            assert.deepEqual(
              index.manifests.map((m) => [m.mediaType, m.platform.os, m.platform.architecture]),
              platforms.map((arch) => [list.child, "linux", arch]),
            );
            // Each child was pushed by digest before the list, and is stored with its own type.
            for (const child of index.manifests) {
              assert.ok(
                requests.some((r) =>
                  r.method === "PUT" && r.path === `/v2/${list.name}/manifests/${child.digest}` &&
                  r.status === 201
                ),
              );
              const got = await assertStored(reg, list.name, child.digest, list.child);
              assert.equal(got.bytes.length, child.size);
            }
          },
        );
      }

      for (const list of lists) {
        for (const arch of platforms) {
          await t.step(
            `skopeo --override-arch ${arch} pulls the ${arch} image of ${list.name}`,
            async () => {
              const ref = `docker://${host}/${list.name}:v1`;
              const inspected = JSON.parse(
                await ws.skopeo("inspect", "--tls-verify=false", "--override-arch", arch, ref),
              ) as { Architecture: string; Os: string; Digest: string };
              assert.equal(inspected.Architecture, arch);
              assert.equal(inspected.Os, "linux");
              const dir = join(ws.dir, `${list.name.replace("/", "-")}-${arch}`);
              await ws.skopeo(
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--override-arch",
                arch,
                ref,
                `oci:${dir}:v1`,
              );
              const pulled = await readOciImage(dir);
              assert.equal(pulled.configDigest, images[arch].configDigest);
              assert.equal(pulled.config.architecture, arch);
              assert.deepEqual(pulled.config.rootfs.diff_ids, images[arch].diffIds);
              const rootfs = join(dir, "rootfs");
              await extractLayers(pulled, rootfs);
              assert.deepEqual(await filesUnder(rootfs, images[arch].files), images[arch].files);
            },
          );
        }
      }

      for (const [list, arch] of [["multi/oci", "arm64"], ["multi/docker", "amd64"]] as const) {
        await t.step(`podman pull --arch ${arch} of ${list} into an empty store`, async () => {
          const fresh = await ws.store();
          const ref = `${host}/${list}:v1`;
          await fresh.podman("pull", "--quiet", TLS, "--arch", arch, ref);
          const info = await inspectImage(fresh, ref);
          assert.equal(info.architecture, arch);
          assert.equal(info.configDigest, images[arch].configDigest);
          assert.deepEqual(info.diffIds, images[arch].diffIds);
        });
      }

      await t.step("skopeo copy --all to another repository keeps the index digest", async () => {
        const mark = reg.logs.length;
        await ws.skopeo(
          "copy",
          "--quiet",
          "--all",
          "--src-tls-verify=false",
          "--dest-tls-verify=false",
          `docker://${host}/multi/oci:v1`,
          `docker://${host}/multi/copy:v1`,
        );
        const requests = requestsSince(reg, mark);
        // Layers are mounted; containers/image uploads config blobs again (it never mounts them).
        const configs = platforms.map((arch) => images[arch].configDigest);
        const uploaded = requests.filter(isUploadPut).map((r) => r.query.get("digest")!);
        assert.ok(uploaded.every((d) => configs.includes(d)), `uploaded ${uploaded}`);
        assert.equal(requests.filter((r) => isMount(r) && r.status === 201).length, 2);
        const copied = await assertStored(reg, "multi/copy", "v1", OCI_INDEX);
        assert.equal(copied.digest, indexDigests["multi/oci"]);
      });

      await t.step("skopeo delete of a list removes the list; its images stay", async () => {
        const index = json<{ manifests: { digest: string }[] }>(
          await getManifest(reg, "multi/docker", "v1"),
        );
        await ws.skopeo("delete", "--tls-verify=false", `docker://${host}/multi/docker:v1`);
        assert.equal((await getManifest(reg, "multi/docker", "v1")).status, 404);
        assert.equal(
          (await getManifest(reg, "multi/docker", indexDigests["multi/docker"])).status,
          404,
        );
        for (const child of index.manifests) {
          await assertStored(reg, "multi/docker", child.digest, DOCKER_MANIFEST);
        }
      });
    },
  );

  await test(`${label}skopeo inspect, list-tags and delete`, TOOLS, async (t) => {
    await using ws = await Workspace.create();
    await using reg = await suite.registry();
    const host = hostOf(reg.url);
    const build = await ws.store();
    const kept = await buildImage(ws, build, "e2e-kept", {
      layers: [{ "/kept.txt": unique("kept") }],
      arch: "arm64",
      os: "linux",
    });
    const doomed = await buildImage(ws, build, "e2e-doomed", {
      layers: [{ "/doomed.txt": unique("doomed") }],
      arch: "amd64",
      os: "linux",
    });
    const repo = `${host}/tags/demo`;
    const doomedTags = ["v10", "v2", "latest", "Zeta", "1.0", "a_b"];
    await ws.skopeo(
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      build.ref(kept.name),
      `docker://${repo}:kept`,
    );
    for (const tag of doomedTags) {
      await ws.skopeo(
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        build.ref(doomed.name),
        `docker://${repo}:${tag}`,
      );
    }
    const doomedManifest = await getManifest(reg, "tags/demo", "v2");
    assert.equal(doomedManifest.status, 200);

    await t.step("skopeo inspect: the registry's digest, architecture and tags", async () => {
      const info = JSON.parse(
        await ws.skopeo("inspect", "--tls-verify=false", `docker://${repo}:v2`),
      ) as { Digest: string; Architecture: string; Os: string; RepoTags: string[]; Name: string };
      assert.equal(info.Name, repo);
      assert.equal(info.Digest, doomedManifest.digest);
      assert.equal(info.Digest, doomedManifest.computedDigest);
      assert.equal(info.Architecture, "amd64");
      assert.equal(info.Os, "linux");
      assert.deepEqual(info.RepoTags, ["1.0", "Zeta", "a_b", "kept", "latest", "v10", "v2"]);
      const raw = await run("skopeo", [
        "inspect",
        "--raw",
        "--tls-verify=false",
        `docker://${repo}:v2`,
      ], {
        env: ws.env,
      });
      assert.equal(raw.stdout, new TextDecoder().decode(doomedManifest.bytes));
      const byDigest = JSON.parse(
        await ws.skopeo("inspect", "--tls-verify=false", `docker://${repo}@${info.Digest}`),
      ) as { Digest: string; Architecture: string };
      assert.equal(byDigest.Digest, info.Digest);
      assert.equal(byDigest.Architecture, "amd64");
      const config = JSON.parse(
        await ws.skopeo("inspect", "--config", "--tls-verify=false", `docker://${repo}:kept`),
      ) as { architecture: string };
      assert.equal(config.architecture, "arm64");
    });

    await t.step("skopeo list-tags: every tag, in lexical order", async () => {
      const listed = JSON.parse(
        await ws.skopeo("list-tags", "--tls-verify=false", `docker://${repo}`),
      ) as { Repository: string; Tags: string[] };
      assert.equal(listed.Repository, repo);
      assert.deepEqual(listed.Tags, ["1.0", "Zeta", "a_b", "kept", "latest", "v10", "v2"]);
    });

    await t.step("skopeo delete removes the manifest and every tag on it", async () => {
      const mark = reg.logs.length;
      await ws.skopeo("delete", "--tls-verify=false", `docker://${repo}:v2`);
      const requests = requestsSince(reg, mark);
      assert.ok(
        requests.some((r) =>
          r.method === "DELETE" &&
          r.path === `/v2/tags/demo/manifests/${doomedManifest.digest}` && r.status === 202
        ),
        "skopeo deletes by digest",
      );
      for (const reference of [...doomedTags, doomedManifest.digest!]) {
        const gone = await reg.fetch(`/v2/tags/demo/manifests/${reference}`);
        assert.equal(gone.status, 404, reference);
        assert.equal(
          ((await gone.json()) as { errors: { code: string }[] }).errors[0].code,
          "MANIFEST_UNKNOWN",
        );
        const head = await reg.fetch(`/v2/tags/demo/manifests/${reference}`, { method: "HEAD" });
        assert.equal(head.status, 404);
      }
      const listed = JSON.parse(
        await ws.skopeo("list-tags", "--tls-verify=false", `docker://${repo}`),
      ) as { Tags: string[] };
      assert.deepEqual(listed.Tags, ["kept"]);
      assert.equal((await getManifest(reg, "tags/demo", "kept")).status, 200);
      const failed = await run("skopeo", ["inspect", "--tls-verify=false", `docker://${repo}:v2`], {
        env: ws.env,
        allowFailure: true,
      });
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /manifest unknown/i);
    });
  });
}

if (Deno.mainModule === import.meta.url) {
  await clientsSuite({ registry: () => tempRegistry({ config: { logRequests: true } }) });
}
