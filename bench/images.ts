/**
 * Multi-layer test images for the client rows of the benchmark (skopeo, podman, containerd),
 * written directly as OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/…`): each
 * layer a gzip stream (`tar+gzip`, as real images have) of a tar holding one file of generated
 * data, a config with the tars' digests as `diff_ids`, and an OCI manifest. The gzip streams are
 * deflate's stored blocks (no compression: the data is random anyway), so building an image
 * costs about what writing and hashing its bytes costs, and clients that copy blobs as they are
 * (skopeo, containerd) push them unchanged. Uncompressed layers would not be: skopeo and podman
 * gzip uncompressed layers on their way to a registry.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { Http1 } from "./http1.ts";
import type { Server } from "./servers.ts";
import { type Blob, makeData, pushMono, sha256 } from "./workloads.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const encoder = new TextEncoder();

/** A descriptor of a blob of an image. */
export interface BlobRef {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** An image written as an OCI layout folder. */
export interface LayoutImage {
  /** The layout folder (`oci:DIR:latest` for skopeo and podman). */
  readonly dir: string;
  /** The name containerd gives it on `ctr images import` (`io.containerd.image.name`). */
  readonly name: string;
  readonly manifest: Blob;
  readonly config: BlobRef;
  readonly layers: readonly BlobRef[];
  /** The layers' uncompressed digests (the config's `rootfs.diff_ids`). */
  readonly diffIds: readonly string[];
  /** Bytes of all its blobs (layers, config, manifest). */
  readonly totalBytes: number;
  /** The file of a blob of the layout. */
  blobPath(digest: string): string;
  /** Removes the folder. */
  remove(): Promise<void>;
}

/** The 512-byte ustar header of a regular file. */
export function tarHeader(name: string, size: number): Uint8Array {
  const h = new Uint8Array(512);
  const put = (off: number, len: number, text: string) => {
    const bytes = encoder.encode(text);
    if (bytes.length > len) throw new Error(`tar field too long: ${text}`);
    h.set(bytes, off);
  };
  const octal = (value: number, len: number) => value.toString(8).padStart(len - 1, "0") + "\0";
  put(0, 100, name);
  put(100, 8, octal(0o644, 8));
  put(108, 8, octal(0, 8));
  put(116, 8, octal(0, 8));
  put(124, 12, octal(size, 12));
  put(136, 12, octal(1_700_000_000, 12));
  put(148, 8, "        ");
  put(156, 1, "0");
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  put(265, 32, "root");
  put(297, 32, "root");
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** A gzip stream of `data` in deflate stored blocks (RFC 1951 BTYPE 00, RFC 1952 framing). */
export function gzipStored(data: Uint8Array): Uint8Array {
  const BLOCK = 65535;
  const blocks = Math.max(1, Math.ceil(data.length / BLOCK));
  const out = new Uint8Array(10 + data.length + 5 * blocks + 8);
  const view = new DataView(out.buffer);
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]); // magic, deflate, no flags, mtime 0, OS unknown
  let pos = 10;
  for (let i = 0; i < blocks; i++) {
    const part = data.subarray(i * BLOCK, Math.min(data.length, (i + 1) * BLOCK));
    out[pos] = i === blocks - 1 ? 1 : 0;
    view.setUint16(pos + 1, part.length, true);
    view.setUint16(pos + 3, ~part.length & 0xffff, true);
    out.set(part, pos + 5);
    pos += 5 + part.length;
  }
  // node:zlib's crc32 (Deno implements it natively).
  const crc = (zlib as unknown as { crc32(d: Uint8Array): number }).crc32(data);
  view.setUint32(pos, crc >>> 0, true);
  view.setUint32(pos + 4, data.length >>> 0, true);
  return out;
}

/** Writes a blob into a layout's `blobs/sha256/` and returns its descriptor. */
async function writeBlob(dir: string, mediaType: string, bytes: Uint8Array): Promise<BlobRef> {
  const digest = sha256(bytes);
  await Deno.writeFile(join(dir, "blobs", "sha256", digest.slice(7)), bytes);
  return { mediaType, digest, size: bytes.length };
}

/** Options of `writeLayoutImage`. */
export interface ImageOptions {
  /** Number of layers. */
  readonly layers: number;
  /** Total bytes of file data over all layers (each layer gets an equal share). */
  readonly totalBytes: number;
  /** The name containerd gives it on import, e.g. `bench.local/image:r0`. */
  readonly name: string;
}

/**
 * Writes an image as an OCI layout into `dir` (created). The data is new random bytes each
 * time, so no two images share a blob: clients that remember where they pushed a blob
 * (containers/image's blob-info cache tries cross-repository mounts from it) find nothing
 * to reuse from an earlier run.
 */
export async function writeLayoutImage(dir: string, opts: ImageOptions): Promise<LayoutImage> {
  await Deno.mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  await Deno.writeTextFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  const fileSize = Math.floor(opts.totalBytes / opts.layers);
  const layers: BlobRef[] = [];
  const diffIds: string[] = [];
  const padded = fileSize + (512 - (fileSize % 512)) % 512;
  for (let i = 0; i < opts.layers; i++) {
    const tar = new Uint8Array(512 + padded + 1024);
    tar.set(tarHeader(`layer${i}/data.bin`, fileSize));
    tar.set(makeData(fileSize), 512);
    diffIds.push(sha256(tar));
    layers.push(await writeBlob(dir, OCI_LAYER_GZIP, gzipStored(tar)));
  }
  const config = await writeBlob(
    dir,
    OCI_CONFIG,
    encoder.encode(JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: {},
      rootfs: { type: "layers", diff_ids: diffIds },
    })),
  );
  const manifestBytes = encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers,
  }));
  const manifestRef = await writeBlob(dir, OCI_MANIFEST, manifestBytes);
  await Deno.writeTextFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        ...manifestRef,
        annotations: {
          "org.opencontainers.image.ref.name": "latest",
          "io.containerd.image.name": opts.name,
        },
      }],
    }),
  );
  const blobPath = (digest: string) => join(dir, "blobs", "sha256", digest.slice(7));
  return {
    dir,
    name: opts.name,
    manifest: { bytes: manifestBytes, digest: manifestRef.digest },
    config,
    layers,
    diffIds,
    totalBytes: layers.reduce((a, l) => a + l.size, 0) + config.size + manifestBytes.length,
    blobPath,
    remove: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

/** Pushes a layout image to a registry with the in-process client (untimed set-up). */
export async function pushLayoutImage(
  server: Server,
  repo: string,
  tag: string,
  image: LayoutImage,
): Promise<void> {
  const conn = await Http1.connect(server.base);
  try {
    for (const ref of [...image.layers, image.config]) {
      const bytes = await Deno.readFile(image.blobPath(ref.digest));
      await pushMono(conn, server.base, repo, { bytes, digest: ref.digest });
    }
    const res = await conn.request("PUT", `/v2/${repo}/manifests/${tag}`, {
      body: image.manifest.bytes,
      headers: { "Content-Type": OCI_MANIFEST },
    });
    if (res.status !== 201) throw new Error(`PUT manifest ${repo}:${tag}: HTTP ${res.status}`);
  } finally {
    conn.close();
  }
}

/** SHA-256 digest of a file, streamed. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return "sha256:" + hash.digest("hex");
}
