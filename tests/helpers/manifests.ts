/**
 * Test helpers for manifests: push a config and layers, build manifest bodies of each type.
 */

import { pushBlob, randomBytes, sha256Digest, type TempRegistry } from "./registry.ts";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST } from "./media_types.ts";

/** A descriptor as manifests carry it. */
export interface TestDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  [key: string]: unknown;
}

/** Pushes a config blob and `layers` random layers; returns their descriptors. */
export async function pushImageBlobs(
  reg: TempRegistry,
  name: string,
  options: { layers?: number; configType?: string; layerType?: string } = {},
): Promise<{ config: TestDescriptor; layers: TestDescriptor[] }> {
  const configBytes = new TextEncoder().encode(
    JSON.stringify({ architecture: "amd64", os: "linux", nonce: crypto.randomUUID() }),
  );
  const config = {
    mediaType: options.configType ?? OCI_CONFIG,
    digest: await pushBlob(reg, name, configBytes),
    size: configBytes.length,
  };
  const layers: TestDescriptor[] = [];
  for (let i = 0; i < (options.layers ?? 1); i++) {
    const bytes = randomBytes(1000 + i);
    layers.push({
      mediaType: options.layerType ?? OCI_LAYER,
      digest: await pushBlob(reg, name, bytes),
      size: bytes.length,
    });
  }
  return { config, layers };
}

/** An OCI image manifest body (as bytes) and its digest. */
export async function ociManifest(
  parts: { config: TestDescriptor; layers: TestDescriptor[] },
  extra: Record<string, unknown> = {},
): Promise<{ bytes: Uint8Array<ArrayBuffer>; digest: string }> {
  const body = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: parts.config,
    layers: parts.layers,
    ...extra,
  };
  const bytes = new TextEncoder().encode(JSON.stringify(body, null, 2));
  return { bytes, digest: await sha256Digest(bytes) };
}

/** Any JSON value as manifest bytes and its digest. */
export async function jsonBytes(
  value: unknown,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; digest: string }> {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return { bytes, digest: await sha256Digest(bytes) };
}

/** PUTs a manifest and returns the response (body consumed when empty). */
export async function putManifest(
  reg: TempRegistry,
  name: string,
  reference: string,
  bytes: Uint8Array<ArrayBuffer>,
  contentType = OCI_MANIFEST,
): Promise<Response> {
  return await reg.fetch(`/v2/${name}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": contentType },
    body: bytes,
  });
}
