/**
 * Helpers for the service tests over `memoryRegistry()` (the app over a memory driver, asked
 * without a socket): push blobs and images, put manifests, and read error bodies.
 */

import { jsonBytes, ociManifest, type TestDescriptor } from "../helpers/manifests.ts";
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { type MemoryRegistry, pushBlob, randomBytes } from "../helpers/registry.ts";

export type { TestDescriptor };

/** An OCI error body's first entry. */
export interface ErrorEntry {
  readonly code: string;
  readonly message: string;
  readonly detail?: unknown;
}

/** Reads the first entry of an OCI error body. */
export async function errorOf(response: Response): Promise<ErrorEntry> {
  const body = await response.json() as { errors?: ErrorEntry[] };
  if (!body.errors?.[0]) throw new Error(`not an error body (${response.status})`);
  return body.errors[0];
}

/** Sends a request and returns its status, its body discarded. */
export async function status(
  reg: MemoryRegistry,
  path: string,
  init?: RequestInit,
): Promise<number> {
  const response = await reg.fetch(path, init);
  await response.body?.cancel();
  return response.status;
}

/** Pushes `bytes` as a blob of `name` and returns its descriptor. */
export async function pushDescriptor(
  reg: MemoryRegistry,
  name: string,
  bytes: Uint8Array<ArrayBuffer>,
  mediaType = OCI_LAYER,
): Promise<TestDescriptor> {
  return { mediaType, digest: await pushBlob(reg, name, bytes), size: bytes.length };
}

/** Pushes a config and `layers` random layers into `name`. */
export async function pushImageBlobs(
  reg: MemoryRegistry,
  name: string,
  layers = 1,
): Promise<{ config: TestDescriptor; layers: TestDescriptor[] }> {
  const configBytes = new TextEncoder().encode(
    JSON.stringify({ architecture: "amd64", os: "linux", nonce: crypto.randomUUID() }),
  );
  const config = await pushDescriptor(reg, name, configBytes, OCI_CONFIG);
  const out: TestDescriptor[] = [];
  for (let i = 0; i < layers; i++) out.push(await pushDescriptor(reg, name, randomBytes(100 + i)));
  return { config, layers: out };
}

/** PUTs a manifest and returns the response. */
export function putManifest(
  reg: MemoryRegistry,
  name: string,
  reference: string,
  bytes: Uint8Array<ArrayBuffer>,
  contentType = OCI_MANIFEST,
): Promise<Response> {
  return reg.fetch(`/v2/${name}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": contentType },
    body: bytes,
  });
}

/** A stored image: its manifest's bytes and digest, and the blobs it names. */
export interface PushedImage {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly digest: string;
  readonly config: TestDescriptor;
  readonly layers: TestDescriptor[];
}

/**
 * Pushes a config, layers and an OCI image manifest into `name` under `reference` (its
 * digest when omitted); throws unless the PUT answers 201.
 */
export async function pushImage(
  reg: MemoryRegistry,
  name: string,
  options: { reference?: string; layers?: number; extra?: Record<string, unknown> } = {},
): Promise<PushedImage> {
  const parts = await pushImageBlobs(reg, name, options.layers ?? 1);
  const { bytes, digest } = await ociManifest(parts, options.extra ?? {});
  const put = await putManifest(reg, name, options.reference ?? digest, bytes);
  await put.body?.cancel();
  if (put.status !== 201) throw new Error(`manifest PUT gave ${put.status}`);
  return { bytes, digest, ...parts };
}

/** Puts an OCI index of `children` into `name` under `reference` (its digest when omitted). */
export async function pushIndex(
  reg: MemoryRegistry,
  name: string,
  children: { digest: string; bytes: Uint8Array }[],
  reference?: string,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; digest: string }> {
  const index = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: children.map((c) => ({
      mediaType: OCI_MANIFEST,
      digest: c.digest,
      size: c.bytes.length,
    })),
  });
  const put = await putManifest(reg, name, reference ?? index.digest, index.bytes, OCI_INDEX);
  await put.body?.cancel();
  if (put.status !== 201) throw new Error(`index PUT gave ${put.status}`);
  return index;
}
