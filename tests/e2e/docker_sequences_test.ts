/**
 * The exact request sequences of clients that cannot run here, replayed over a real socket
 * (issue 4, item 7; OCI-NOTES.md "Upload shapes real clients send"): Docker with the classic
 * store (moby `distribution/push_v2.go` and the distribution client), containerd and Docker 29
 * (`core/remotes/docker/pusher.go`, `resolver.go`, `fetcher.go`), podman/skopeo/buildah
 * (containers/image `docker/docker_image_dest.go`) and crane (go-containerregistry
 * `pkg/v1/remote/write.go`), then the pulls each of them does. Every status and every header
 * the client reads is asserted.
 */

import assert from "node:assert/strict";
import { randomBytes, sha256Digest, tempRegistry } from "../helpers/registry.ts";
import { accessEntries } from "../helpers/clients.ts";
import {
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_MANIFEST,
} from "../helpers/media_types.ts";

const API_VERSION = "registry/2.0";

/** A registry the sequences run against: its base URL, `fetch` and its access log lines. */
export interface SuiteRegistry extends AsyncDisposable {
  readonly url: string;
  readonly logs: string[];
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** What the sequences run against (by default a registry of this process per test). */
export interface SequencesSuite {
  /**
   * A new registry with its access log on, serving blob GETs itself (the sequences read the
   * registry's headers on them, so no redirect to storage).
   */
  readonly registry: () => Promise<SuiteRegistry>;
  /** Registers a test (default `Deno.test`). */
  readonly test?: (name: string, fn: (t: Deno.TestContext) => Promise<void>) => void;
  /** Prepended to each test's name. */
  readonly label?: string;
}

/** The Accept header Docker (classic) sends for a manifest GET. */
const DOCKER_ACCEPT = [
  DOCKER_MANIFEST,
  DOCKER_LIST,
  OCI_MANIFEST,
  OCI_INDEX,
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/json",
].join(", ");
/** The Accept header containerd sends when resolving a tag. */
const CONTAINERD_ACCEPT = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"].join(", ");
/** The Accept header containers/image sends. */
const CIMAGE_ACCEPT = [
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_LIST,
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/vnd.docker.distribution.manifest.v1+json",
].join(", ");

const encoder = new TextEncoder();

/** A blob with its digest. */
interface Blob {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly digest: string;
}

async function blobOf(bytes: Uint8Array<ArrayBuffer>): Promise<Blob> {
  return { bytes, digest: await sha256Digest(bytes) };
}

/** An image: a config and layers, and the manifest bytes naming them. */
interface Image {
  readonly config: Blob;
  readonly layers: Blob[];
  readonly manifest: Blob;
  readonly mediaType: string;
}

/** An image whose layers are new random blobs of the given sizes, or given blobs. */
async function makeImage(
  format: "docker" | "oci",
  layerSpecs: (number | Blob)[],
  architecture = "amd64",
): Promise<Image> {
  const layers = await Promise.all(
    layerSpecs.map((spec) => typeof spec === "number" ? blobOf(randomBytes(spec)) : spec),
  );
  const config = await blobOf(encoder.encode(JSON.stringify({
    architecture,
    os: "linux",
    config: { Env: [`NONCE=${crypto.randomUUID()}`] },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
  })));
  const docker = format === "docker";
  const mediaType = docker ? DOCKER_MANIFEST : OCI_MANIFEST;
  const manifest = await blobOf(encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: docker ? DOCKER_CONFIG : OCI_CONFIG,
      size: config.bytes.length,
      digest: config.digest,
    },
    layers: layers.map((l) => ({
      mediaType: docker ? DOCKER_LAYER : OCI_LAYER,
      size: l.bytes.length,
      digest: l.digest,
    })),
  })));
  return { config, layers, manifest, mediaType };
}

async function makeIndex(
  format: "docker" | "oci",
  children: { image: Image; architecture: string }[],
): Promise<Blob & { mediaType: string }> {
  const mediaType = format === "docker" ? DOCKER_LIST : OCI_INDEX;
  const blob = await blobOf(encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: children.map(({ image, architecture }) => ({
      mediaType: image.mediaType,
      size: image.manifest.bytes.length,
      digest: image.manifest.digest,
      platform: { architecture, os: "linux" },
    })),
  })));
  return { ...blob, mediaType };
}

/** A body delivered in uneven pieces: with fetch this is sent with chunked encoding. */
function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  const sizes = [1, 7, 8191, 65536, 100_003, 32768];
  let at = 0;
  let i = 0;
  return new ReadableStream({
    async pull(controller) {
      if (at >= bytes.length) {
        controller.close();
        return;
      }
      const n = sizes[i++ % sizes.length];
      controller.enqueue(bytes.slice(at, at + n));
      at += n;
      await new Promise((resolve) => setTimeout(resolve, 0));
    },
  });
}

/** Resolves a Location header against the registry URL, as Go's url.ResolveReference does. */
function resolve(reg: SuiteRegistry, location: string | null): string {
  assert.ok(location, "Location header missing");
  return new URL(location, reg.url).href;
}

/** Adds `digest=` to a location, keeping its own query (crane, containerd, Docker do this). */
function withDigest(location: string, digest: string): string {
  const url = new URL(location);
  url.searchParams.set("digest", digest);
  return url.href;
}

/** Sends a request and returns the response with its body read (text) for assertions. */
async function send(
  reg: SuiteRegistry,
  method: string,
  pathOrUrl: string,
  init: { headers?: Record<string, string>; body?: BodyInit | null } = {},
): Promise<{ res: Response; body: Uint8Array }> {
  const url = pathOrUrl.startsWith("http") ? pathOrUrl : `${reg.url}${pathOrUrl}`;
  const res = await fetch(url, { method, headers: init.headers, body: init.body ?? null });
  const body = new Uint8Array(await res.arrayBuffer());
  assert.equal(
    res.headers.get("docker-distribution-api-version"),
    API_VERSION,
    `${method} ${url}: API version header`,
  );
  return { res, body };
}

function assertStatus(res: Response, status: number, what: string, body?: Uint8Array): void {
  const text = body ? new TextDecoder().decode(body.slice(0, 500)) : "";
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status} ${text}`);
}

/** A 202 upload session: Location, Docker-Upload-UUID and `Range: 0-<last>`. */
function assertSession(res: Response, name: string, size: number, what: string): string {
  const location = res.headers.get("location") ?? "";
  assert.match(location, new RegExp(`^(https?://[^/]+)?/v2/${name}/blobs/uploads/[^/?]+`), what);
  const uuid = res.headers.get("docker-upload-uuid");
  assert.ok(uuid && location.includes(uuid), `${what}: Docker-Upload-UUID ${uuid}`);
  assert.equal(res.headers.get("range"), `0-${Math.max(0, size - 1)}`, `${what}: Range`);
  return location;
}

/** A 201 blob creation: Location of the blob and Docker-Content-Digest. */
function assertBlobCreated(res: Response, name: string, digest: string, what: string): void {
  assertStatus(res, 201, what);
  assert.equal(res.headers.get("docker-content-digest"), digest, `${what}: Docker-Content-Digest`);
  assert.equal(resolveLoc(res), `/v2/${name}/blobs/${digest}`, `${what}: Location`);
}

function resolveLoc(res: Response): string {
  const location = res.headers.get("location") ?? "";
  return location.replace(/^https?:\/\/[^/]+/, "");
}

/** HEAD of a blob: 200 with Content-Length, Docker-Content-Digest and Content-Type, or 404. */
async function headBlob(
  reg: SuiteRegistry,
  name: string,
  blob: Blob,
  expected: 200 | 404,
): Promise<void> {
  const { res, body } = await send(reg, "HEAD", `/v2/${name}/blobs/${blob.digest}`);
  assertStatus(res, expected, `HEAD blob ${blob.digest}`);
  assert.equal(body.length, 0);
  if (expected === 200) {
    assert.equal(res.headers.get("content-length"), String(blob.bytes.length));
    assert.equal(res.headers.get("docker-content-digest"), blob.digest);
    assert.ok(res.headers.get("content-type"));
  }
}

/** Manifest PUT by tag or digest: 201, Location by digest and Docker-Content-Digest. */
async function putManifest(
  reg: SuiteRegistry,
  name: string,
  reference: string,
  manifest: Blob,
  mediaType: string,
): Promise<void> {
  const { res, body } = await send(reg, "PUT", `/v2/${name}/manifests/${reference}`, {
    headers: { "Content-Type": mediaType },
    body: manifest.bytes,
  });
  assertStatus(res, 201, `PUT manifest ${reference}`, body);
  assert.equal(res.headers.get("docker-content-digest"), manifest.digest);
  assert.equal(resolveLoc(res), `/v2/${name}/manifests/${manifest.digest}`);
}

/** The requests logged since `mark` as `METHOD path?query STATUS`. */
function logSince(reg: SuiteRegistry, mark: number): string[] {
  return accessEntries(reg.logs.slice(mark)).map((e) => `${e.method} ${e.path} ${e.status}`);
}

// --- Pulls ---------------------------------------------------------------------------------

/** Docker classic pull: GET manifest by tag with Docker's Accept, then GET every blob. */
async function dockerPull(reg: SuiteRegistry, name: string, tag: string, image: Image) {
  const { res, body } = await send(reg, "GET", `/v2/${name}/manifests/${tag}`, {
    headers: { Accept: DOCKER_ACCEPT },
  });
  assertStatus(res, 200, "Docker GET manifest");
  assert.equal(res.headers.get("content-type"), image.mediaType);
  assert.equal(res.headers.get("docker-content-digest"), image.manifest.digest);
  assert.equal(res.headers.get("content-length"), String(image.manifest.bytes.length));
  assert.deepEqual(body, image.manifest.bytes);
  for (const blob of [image.config, ...image.layers]) await getBlob(reg, name, blob);
}

/**
 * containerd pull: HEAD the tag (it reads Content-Type, Docker-Content-Digest and
 * Content-Length), GET the manifest by digest, then blobs, big ones in ranges.
 */
async function containerdPull(reg: SuiteRegistry, name: string, tag: string, image: Image) {
  const head = await send(reg, "HEAD", `/v2/${name}/manifests/${tag}`, {
    headers: { Accept: CONTAINERD_ACCEPT },
  });
  assertStatus(head.res, 200, "containerd HEAD manifest");
  assert.equal(head.body.length, 0);
  assert.equal(head.res.headers.get("content-type"), image.mediaType);
  assert.equal(head.res.headers.get("docker-content-digest"), image.manifest.digest);
  assert.equal(head.res.headers.get("content-length"), String(image.manifest.bytes.length));
  const get = await send(reg, "GET", `/v2/${name}/manifests/${image.manifest.digest}`, {
    headers: { Accept: `${image.mediaType}, */*` },
  });
  assertStatus(get.res, 200, "containerd GET manifest by digest");
  assert.equal(get.res.headers.get("content-type"), image.mediaType);
  assert.deepEqual(get.body, image.manifest.bytes);
  await getBlob(reg, name, image.config);
  for (const layer of image.layers) {
    const size = layer.bytes.length;
    // Parallel ranged download, then a resume from an offset.
    const half = Math.floor(size / 2);
    const parts = await Promise.all([
      send(reg, "GET", `/v2/${name}/blobs/${layer.digest}`, {
        headers: { Range: `bytes=0-${half - 1}` },
      }),
      send(reg, "GET", `/v2/${name}/blobs/${layer.digest}`, {
        headers: { Range: `bytes=${half}-${size - 1}` },
      }),
    ]);
    assertStatus(parts[0].res, 206, "ranged GET");
    assertStatus(parts[1].res, 206, "ranged GET");
    assert.equal(parts[0].res.headers.get("content-range"), `bytes 0-${half - 1}/${size}`);
    assert.equal(parts[1].res.headers.get("content-range"), `bytes ${half}-${size - 1}/${size}`);
    assert.deepEqual(parts[0].body, layer.bytes.subarray(0, half));
    assert.deepEqual(parts[1].body, layer.bytes.subarray(half));
    const resume = await send(reg, "GET", `/v2/${name}/blobs/${layer.digest}`, {
      headers: { Range: `bytes=${size - 100}-` },
    });
    assertStatus(resume.res, 206, "resumed GET");
    assert.equal(resume.res.headers.get("content-length"), "100");
    assert.deepEqual(resume.body, layer.bytes.subarray(size - 100));
  }
}

/** containers/image pull: GET the manifest with its Accept, then every blob. */
async function cimagePull(reg: SuiteRegistry, name: string, tag: string, image: Image) {
  const { res, body } = await send(reg, "GET", `/v2/${name}/manifests/${tag}`, {
    headers: { Accept: CIMAGE_ACCEPT },
  });
  assertStatus(res, 200, "containers/image GET manifest");
  assert.equal(res.headers.get("content-type"), image.mediaType);
  assert.equal(res.headers.get("docker-content-digest"), image.manifest.digest);
  assert.deepEqual(body, image.manifest.bytes);
  for (const blob of [image.config, ...image.layers]) await getBlob(reg, name, blob);
}

/** Plain curl: no Accept header; the stored media type still comes back. */
async function plainPull(reg: SuiteRegistry, name: string, tag: string, image: Image) {
  const { res, body } = await send(reg, "GET", `/v2/${name}/manifests/${tag}`);
  assertStatus(res, 200, "GET manifest without Accept");
  assert.equal(res.headers.get("content-type"), image.mediaType);
  assert.equal(res.headers.get("docker-content-digest"), image.manifest.digest);
  assert.deepEqual(body, image.manifest.bytes);
}

async function getBlob(reg: SuiteRegistry, name: string, blob: Blob): Promise<void> {
  const { res, body } = await send(reg, "GET", `/v2/${name}/blobs/${blob.digest}`);
  assertStatus(res, 200, `GET blob ${blob.digest}`);
  assert.equal(res.headers.get("content-length"), String(blob.bytes.length));
  assert.equal(res.headers.get("docker-content-digest"), blob.digest);
  assert.ok(
    body.length === blob.bytes.length && (await sha256Digest(body.slice())) === blob.digest,
  );
}

async function pullWithEveryClient(reg: SuiteRegistry, name: string, tag: string, image: Image) {
  await dockerPull(reg, name, tag, image);
  await containerdPull(reg, name, tag, image);
  await cimagePull(reg, name, tag, image);
  await plainPull(reg, name, tag, image);
}

/** Registers the sequences against `suite`'s registries. */
export function dockerSequences(suite: SequencesSuite): void {
  const test = suite.test ?? Deno.test;
  const label = suite.label ?? "";

  // --- Docker classic ------------------------------------------------------------------------

  /**
   * Docker's upload through a session: ONE PATCH streaming the whole blob (no Content-Range,
   * chunked encoding), then PUT `?digest=` with no body, then a HEAD (the client's Stat).
   */
  async function dockerUpload(reg: SuiteRegistry, name: string, session: string, blob: Blob) {
    const patch = await send(reg, "PATCH", resolve(reg, session), {
      headers: { "Content-Type": "application/octet-stream" },
      body: streamOf(blob.bytes),
    });
    assertStatus(patch.res, 202, "Docker PATCH", patch.body);
    // Docker parses `Range: <start>-<end>` (fmt.Sscanf "%d-%d") and follows Location.
    const next = assertSession(patch.res, name, blob.bytes.length, "Docker PATCH");
    const put = await send(reg, "PUT", withDigest(resolve(reg, next), blob.digest));
    assertBlobCreated(put.res, name, blob.digest, "Docker PUT ?digest=");
    await headBlob(reg, name, blob, 200);
  }

  test(`${label}Docker classic push: HEAD, mount attempts, one chunked PATCH, empty PUT`, async (t) => {
    await using reg = await suite.registry();
    const name = "library/app";
    const base = await makeImage("docker", [300_000]);
    // The first layer is the base image's, already in another repository; Docker knows it from
    // its layer metadata and tries to mount it.
    const image = await makeImage("docker", [base.layers[0], 2_500_000, 70_000]);
    const [baseLayer, layer1, layer2] = image.layers;
    const blobs = [image.config, ...image.layers];

    await t.step("setup: the base repository holds the base layer", async () => {
      const start = await send(reg, "POST", "/v2/library/base/blobs/uploads/");
      assertStatus(start.res, 202, "POST");
      await dockerUpload(reg, "library/base", start.res.headers.get("location")!, baseLayer);
    });

    await t.step("GET /v2/ answers 200 with the API version header", async () => {
      const { res } = await send(reg, "GET", "/v2/");
      assertStatus(res, 200, "GET /v2/");
    });

    await t.step("every blob is HEADed first: 404 without a body", async () => {
      for (const blob of blobs) await headBlob(reg, name, blob, 404);
    });

    await t.step(
      "the base layer: POST ?mount&from answers 201 with Docker-Content-Digest",
      async () => {
        const { res } = await send(
          reg,
          "POST",
          `/v2/${name}/blobs/uploads/?mount=${encodeURIComponent(baseLayer.digest)}&from=${
            encodeURIComponent("library/base")
          }`,
        );
        assertBlobCreated(res, name, baseLayer.digest, "mount");
        await headBlob(reg, name, baseLayer, 200);
      },
    );

    await t.step(
      "layer 1: two failed mounts give sessions; Docker cancels the first, uploads through the second",
      async () => {
        const mount = (from: string) =>
          send(reg, "POST", `/v2/${name}/blobs/uploads/?mount=${layer1.digest}&from=${from}`);
        const first = await mount("library/base");
        assertStatus(first.res, 202, "mount of a blob the source lacks");
        const firstSession = assertSession(first.res, name, 0, "mount 202");
        const second = await mount("library/nothing-here");
        assertStatus(second.res, 202, "mount from an unknown repository");
        const secondSession = assertSession(second.res, name, 0, "mount 202");
        const cancel = await send(reg, "DELETE", resolve(reg, firstSession));
        assertStatus(cancel.res, 204, "DELETE of the first session");
        await dockerUpload(reg, name, secondSession, layer1);
      },
    );

    await t.step("layer 2 and the config: POST 202, ONE chunked PATCH, empty PUT 201", async () => {
      for (const blob of [layer2, image.config]) {
        const start = await send(reg, "POST", `/v2/${name}/blobs/uploads/`);
        assertStatus(start.res, 202, "POST");
        const session = assertSession(start.res, name, 0, "POST");
        const mark = reg.logs.length;
        await dockerUpload(reg, name, session, blob);
        assert.deepEqual(logSince(reg, mark).map((l) => l.split(" ")[0]), ["PATCH", "PUT", "HEAD"]);
      }
    });

    await t.step("manifest PUT by tag: 201 with Docker-Content-Digest", async () => {
      await putManifest(reg, name, "latest", image.manifest, DOCKER_MANIFEST);
    });

    await t.step(
      "a re-push finds every blob with HEAD 200 and PUTs the manifest again",
      async () => {
        const mark = reg.logs.length;
        for (const blob of blobs) await headBlob(reg, name, blob, 200);
        await putManifest(reg, name, "latest", image.manifest, DOCKER_MANIFEST);
        assert.deepEqual(
          logSince(reg, mark).map((l) => l.split(" ")[0]),
          ["HEAD", "HEAD", "HEAD", "HEAD", "PUT"],
        );
      },
    );

    await t.step("pulled back by Docker, containerd, containers/image and curl", async () => {
      await pullWithEveryClient(reg, name, "latest", image);
    });
  });

  test(`${label}Docker classic PATCH over a raw socket: chunked framing, no Content-Length`, async () => {
    await using reg = await suite.registry();
    const name = "raw/chunked";
    const blob = await blobOf(randomBytes(1_000_000));
    const start = await send(reg, "POST", `/v2/${name}/blobs/uploads/`);
    assertStatus(start.res, 202, "POST");
    const path = new URL(resolve(reg, start.res.headers.get("location"))).pathname;
    const { port } = new URL(reg.url);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    const head = `PATCH ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      "User-Agent: docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.1 os/linux arch/amd64\r\n" +
      "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n" +
      "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n";
    await writeAll(conn, encoder.encode(head));
    const sizes = [32768, 1, 4093, 65536, 99_999];
    for (let at = 0, i = 0; at < blob.bytes.length; i++) {
      const chunk = blob.bytes.subarray(at, at + sizes[i % sizes.length]);
      await writeAll(conn, encoder.encode(`${chunk.length.toString(16)}\r\n`));
      await writeAll(conn, chunk);
      await writeAll(conn, encoder.encode("\r\n"));
      at += chunk.length;
    }
    await writeAll(conn, encoder.encode("0\r\n\r\n"));
    let raw = "";
    const decoder = new TextDecoder();
    for await (const part of conn.readable) raw += decoder.decode(part, { stream: true });
    const [statusLine, ...lines] = raw.split("\r\n\r\n")[0].split("\r\n");
    const headers = new Map(lines.map((l) => {
      const i = l.indexOf(":");
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
    }));
    assert.match(statusLine, /^HTTP\/1\.1 202 /);
    assert.equal(headers.get("range"), `0-${blob.bytes.length - 1}`);
    assert.ok(headers.get("location")?.includes(headers.get("docker-upload-uuid") ?? "?"));
    const put = await send(
      reg,
      "PUT",
      withDigest(resolve(reg, headers.get("location")!), blob.digest),
    );
    assertBlobCreated(put.res, name, blob.digest, "PUT");
    await getBlob(reg, name, blob);
  });

  async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
    for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
  }

  // --- containerd / Docker 29 ----------------------------------------------------------------

  test(`${label}containerd and Docker 29 push: HEAD, POST, one PUT with the whole blob`, async (t) => {
    await using reg = await suite.registry();
    const name = "containerd/app";
    const amd = await makeImage("oci", [1_200_000, 5_000], "amd64");
    const arm = await makeImage("oci", [900_000], "arm64");
    const index = await makeIndex("oci", [
      { image: amd, architecture: "amd64" },
      { image: arm, architecture: "arm64" },
    ]);

    await t.step(
      "blobs: HEAD 404, POST 202, PUT <location>?digest= with the body -> 201",
      async () => {
        for (const blob of [...amd.layers, amd.config, ...arm.layers, arm.config]) {
          // containerd sends `Accept: <media type>, */*` on its existence checks.
          const head = await send(reg, "HEAD", `/v2/${name}/blobs/${blob.digest}`, {
            headers: { Accept: "application/octet-stream, */*" },
          });
          assertStatus(head.res, 404, "HEAD");
          const mark = reg.logs.length;
          const start = await send(reg, "POST", `/v2/${name}/blobs/uploads/`);
          assertStatus(start.res, 202, "POST");
          const location = assertSession(start.res, name, 0, "POST");
          const put = await send(reg, "PUT", withDigest(resolve(reg, location), blob.digest), {
            headers: {
              "Content-Type": "application/octet-stream",
              "Content-Length": String(blob.bytes.length),
            },
            body: blob.bytes,
          });
          // containerd fails the push unless Docker-Content-Digest equals the digest it sent.
          assertBlobCreated(put.res, name, blob.digest, "PUT with the whole blob");
          assert.deepEqual(logSince(reg, mark).map((l) => l.split(" ")[0]), ["POST", "PUT"]);
        }
      },
    );

    await t.step("a blob already there: HEAD 200 and no upload", async () => {
      const head = await send(reg, "HEAD", `/v2/${name}/blobs/${amd.layers[0].digest}`, {
        headers: { Accept: `${OCI_LAYER}, */*` },
      });
      assertStatus(head.res, 200, "HEAD");
      assert.equal(head.res.headers.get("content-length"), String(amd.layers[0].bytes.length));
      assert.equal(head.res.headers.get("docker-content-digest"), amd.layers[0].digest);
    });

    await t.step(
      "cross-repository: a mount answered 202 is used as the upload session",
      async () => {
        const other = "containerd/other";
        const blob = amd.layers[1];
        const mounted = await send(
          reg,
          "POST",
          `/v2/${other}/blobs/uploads/?mount=${blob.digest}&from=${encodeURIComponent(name)}`,
        );
        assertBlobCreated(mounted.res, other, blob.digest, "mount 201");
        const fresh = await blobOf(randomBytes(10_000));
        const missed = await send(
          reg,
          "POST",
          `/v2/${other}/blobs/uploads/?mount=${fresh.digest}&from=${encodeURIComponent(name)}`,
        );
        assertStatus(missed.res, 202, "mount of a blob the source lacks");
        const location = assertSession(missed.res, other, 0, "mount 202");
        const put = await send(reg, "PUT", withDigest(resolve(reg, location), fresh.digest), {
          body: fresh.bytes,
        });
        assertBlobCreated(put.res, other, fresh.digest, "PUT");
      },
    );

    await t.step(
      "manifests: HEAD by digest 404, PUT children by digest, index by tag",
      async () => {
        for (const image of [amd, arm]) {
          const head = await send(reg, "HEAD", `/v2/${name}/manifests/${image.manifest.digest}`, {
            headers: { Accept: `${OCI_MANIFEST}, */*` },
          });
          assertStatus(head.res, 404, "HEAD manifest");
          await putManifest(reg, name, image.manifest.digest, image.manifest, OCI_MANIFEST);
        }
        const head = await send(reg, "HEAD", `/v2/${name}/manifests/${index.digest}`, {
          headers: { Accept: `${OCI_INDEX}, */*` },
        });
        assertStatus(head.res, 404, "HEAD index");
        await putManifest(reg, name, "v1", index, OCI_INDEX);
      },
    );

    await t.step("pull: resolve the tag to the index, then each platform's image", async () => {
      const resolved = await send(reg, "HEAD", `/v2/${name}/manifests/v1`, {
        headers: { Accept: CONTAINERD_ACCEPT },
      });
      assertStatus(resolved.res, 200, "HEAD tag");
      assert.equal(resolved.res.headers.get("content-type"), OCI_INDEX);
      assert.equal(resolved.res.headers.get("docker-content-digest"), index.digest);
      assert.equal(resolved.res.headers.get("content-length"), String(index.bytes.length));
      for (const image of [amd, arm]) {
        await containerdPull(reg, name, image.manifest.digest, image);
        await dockerPull(reg, name, image.manifest.digest, image);
      }
      for (const accept of [undefined, DOCKER_ACCEPT, CIMAGE_ACCEPT, DOCKER_MANIFEST]) {
        const { res, body } = await send(reg, "GET", `/v2/${name}/manifests/v1`, {
          headers: accept ? { Accept: accept } : {},
        });
        assertStatus(res, 200, `GET index with Accept ${accept}`);
        assert.equal(res.headers.get("content-type"), OCI_INDEX);
        assert.deepEqual(body, index.bytes);
      }
    });
  });

  // --- podman, skopeo, buildah (containers/image) --------------------------------------------

  test(`${label}podman/skopeo push: exact 202 and 201, cancelled mount sessions, chunked PATCH`, async (t) => {
    await using reg = await suite.registry();
    const name = "podman/app";
    const source = "podman/source";
    const image = await makeImage("oci", [1_500_000, 20_000]);
    // One layer is already in another repository of this registry.
    const shared = image.layers[1];
    const start = await send(reg, "POST", `/v2/${source}/blobs/uploads/`);
    await send(
      reg,
      "PUT",
      withDigest(resolve(reg, start.res.headers.get("location")), shared.digest),
      {
        body: shared.bytes,
      },
    );

    await t.step("the shared layer: HEAD 404, POST ?mount&from -> exactly 201", async () => {
      await headBlob(reg, name, shared, 404);
      const { res } = await send(
        reg,
        "POST",
        `/v2/${name}/blobs/uploads/?${new URLSearchParams({ mount: shared.digest, from: source })}`,
      );
      assertBlobCreated(res, name, shared.digest, "mount");
    });

    await t.step("a mount answered 202: the new session is DELETEd -> 204, then gone", async () => {
      const blob = image.layers[0];
      const { res } = await send(
        reg,
        "POST",
        `/v2/${name}/blobs/uploads/?${new URLSearchParams({ mount: blob.digest, from: source })}`,
      );
      assertStatus(res, 202, "mount of a blob the source lacks");
      const location = assertSession(res, name, 0, "mount 202");
      const cancel = await send(reg, "DELETE", resolve(reg, location));
      assertStatus(cancel.res, 204, "DELETE session");
      const status = await send(reg, "GET", resolve(reg, location));
      assertStatus(status.res, 404, "GET of a cancelled session");
    });

    await t.step(
      "uploads: POST exactly 202, one streaming PATCH 202, empty PUT exactly 201",
      async () => {
        for (const blob of [image.layers[0], image.config]) {
          await headBlob(reg, name, blob, 404);
          const mark = reg.logs.length;
          const post = await send(reg, "POST", `/v2/${name}/blobs/uploads/`);
          assertStatus(post.res, 202, "POST");
          const session = assertSession(post.res, name, 0, "POST");
          const patch = await send(reg, "PATCH", resolve(reg, session), {
            headers: { "Content-Type": "application/octet-stream" },
            body: streamOf(blob.bytes),
          });
          assertStatus(patch.res, 202, "PATCH", patch.body);
          const next = assertSession(patch.res, name, blob.bytes.length, "PATCH");
          const put = await send(reg, "PUT", withDigest(resolve(reg, next), blob.digest), {
            headers: { "Content-Length": "0" },
          });
          assertBlobCreated(put.res, name, blob.digest, "PUT");
          assert.deepEqual(logSince(reg, mark).map((l) => l.split(" ")[0]), [
            "POST",
            "PATCH",
            "PUT",
          ]);
        }
      },
    );

    await t.step("manifest PUT 201; a re-push is HEADs only", async () => {
      await putManifest(reg, name, "v1", image.manifest, OCI_MANIFEST);
      const mark = reg.logs.length;
      for (const blob of [...image.layers, image.config]) await headBlob(reg, name, blob, 200);
      await putManifest(reg, name, "v1", image.manifest, OCI_MANIFEST);
      assert.deepEqual(
        logSince(reg, mark).map((l) => l.split(" ")[0]),
        ["HEAD", "HEAD", "HEAD", "PUT"],
      );
    });

    await t.step("pulled back by containers/image, Docker, containerd and curl", async () => {
      await pullWithEveryClient(reg, name, "v1", image);
    });
  });

  // --- crane (go-containerregistry) ----------------------------------------------------------

  test(`${label}crane push: POST with mount&from -> 202 session, single PATCH, empty PUT 201`, async (t) => {
    await using reg = await suite.registry();
    const name = "crane/app";
    const from = "crane/base";
    const image = await makeImage("docker", [800_000, 3_000]);
    const list = await makeIndex("docker", [{ image, architecture: "amd64" }]);

    await t.step(
      "every blob: HEAD 404, mount&from a repository lacking it -> 202, PATCH, PUT",
      async () => {
        for (const blob of [...image.layers, image.config]) {
          await headBlob(reg, name, blob, 404);
          const mark = reg.logs.length;
          const post = await send(
            reg,
            "POST",
            `/v2/${name}/blobs/uploads/?${new URLSearchParams({ from, mount: blob.digest })}`,
          );
          assertStatus(post.res, 202, "POST with mount");
          const session = assertSession(post.res, name, 0, "POST with mount");
          const patch = await send(reg, "PATCH", resolve(reg, session), {
            headers: { "Content-Type": "application/octet-stream" },
            body: streamOf(blob.bytes),
          });
          assertStatus(patch.res, 202, "PATCH", patch.body);
          const next = assertSession(patch.res, name, blob.bytes.length, "PATCH");
          // crane keeps the location's own query and adds digest=.
          const put = await send(reg, "PUT", withDigest(resolve(reg, next), blob.digest));
          assertBlobCreated(put.res, name, blob.digest, "PUT");
          assert.deepEqual(logSince(reg, mark).map((l) => l.split(" ")[0]), [
            "POST",
            "PATCH",
            "PUT",
          ]);
        }
      },
    );

    await t.step("a failing mount is not fatal: crane retries a plain POST -> 202", async () => {
      const blob = image.layers[0];
      const bad = await send(
        reg,
        "POST",
        `/v2/crane/third/blobs/uploads/?mount=${blob.digest}&from=${
          encodeURIComponent("Not/Valid")
        }`,
      );
      assert.ok(bad.res.status === 202 || (bad.res.status >= 400 && bad.res.status < 500));
      if (bad.res.status === 202) {
        const location = assertSession(bad.res, "crane/third", 0, "mount from an invalid name");
        assertStatus((await send(reg, "DELETE", resolve(reg, location))).res, 204, "DELETE");
      }
      const retry = await send(reg, "POST", "/v2/crane/third/blobs/uploads/");
      assertStatus(retry.res, 202, "retry without mount");
      const put = await send(
        reg,
        "PUT",
        withDigest(resolve(reg, retry.res.headers.get("location")), blob.digest),
        { body: blob.bytes },
      );
      assertBlobCreated(put.res, "crane/third", blob.digest, "PUT");
    });

    await t.step("a mount from a repository that has the blob: 201, nothing uploaded", async () => {
      const mark = reg.logs.length;
      for (const blob of [...image.layers, image.config]) {
        const post = await send(
          reg,
          "POST",
          `/v2/crane/copy/blobs/uploads/?${new URLSearchParams({
            from: name,
            mount: blob.digest,
          })}`,
        );
        assertBlobCreated(post.res, "crane/copy", blob.digest, "mount");
      }
      assert.deepEqual(logSince(reg, mark).map((l) => l.split(" ")[0]), ["POST", "POST", "POST"]);
      await putManifest(reg, "crane/copy", "v1", image.manifest, DOCKER_MANIFEST);
    });

    await t.step("manifest by digest, then the list by tag", async () => {
      await putManifest(reg, name, image.manifest.digest, image.manifest, DOCKER_MANIFEST);
      await putManifest(reg, name, "v1", list, DOCKER_LIST);
      const { res, body } = await send(reg, "GET", `/v2/${name}/manifests/v1`);
      assertStatus(res, 200, "GET list without Accept");
      assert.equal(res.headers.get("content-type"), DOCKER_LIST);
      assert.equal(res.headers.get("docker-content-digest"), list.digest);
      assert.deepEqual(body, list.bytes);
    });

    await t.step("pulled back by every client", async () => {
      await pullWithEveryClient(reg, name, image.manifest.digest, image);
      await pullWithEveryClient(reg, "crane/copy", "v1", image);
    });
  });
}

if (Deno.mainModule === import.meta.url) {
  dockerSequences({ registry: () => tempRegistry({ config: { logRequests: true } }) });
}
