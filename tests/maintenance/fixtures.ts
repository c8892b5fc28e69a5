/**
 * A store for the maintenance tests, built through the registry's HTTP API (over the memory
 * driver or a real data root): repository `app` with two images, an index of both and a
 * referrer; `other` with an image sharing one layer with `app`; `app/sub` nested under `app`.
 * Every blob's size is known, so usage figures can be checked exactly.
 */

import { jsonBytes, type TestDescriptor } from "../helpers/manifests.ts";
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from "../helpers/media_types.ts";
import { pushBlob, randomBytes } from "../helpers/registry.ts";
import type { StorageDriver } from "../../src/storage/driver.ts";

/** Anything the registry's API can be asked through. */
export interface Api {
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** A stored manifest: its bytes and digest. */
export interface Stored {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly digest: string;
}

/** What `buildStore` pushed. */
export interface BuiltStore {
  /** The layer `app` and `other` share. */
  readonly shared: TestDescriptor;
  readonly app: {
    readonly image1: Stored & { config: TestDescriptor; layers: TestDescriptor[] };
    readonly image2: Stored & { config: TestDescriptor; layers: TestDescriptor[] };
    readonly index: Stored;
    readonly referrer: Stored;
    readonly emptyConfig: TestDescriptor;
  };
  readonly other: Stored & { config: TestDescriptor; layers: TestDescriptor[] };
  readonly sub: Stored & { config: TestDescriptor; layers: TestDescriptor[] };
}

async function blob(
  api: Api,
  name: string,
  bytes: Uint8Array<ArrayBuffer>,
  mediaType: string,
): Promise<TestDescriptor> {
  return { mediaType, digest: await pushBlob(api, name, bytes), size: bytes.length };
}

async function put(
  api: Api,
  name: string,
  reference: string | null,
  stored: Stored,
  mediaType: string,
): Promise<void> {
  const response = await api.fetch(`/v2/${name}/manifests/${reference ?? stored.digest}`, {
    method: "PUT",
    headers: { "content-type": mediaType },
    body: stored.bytes,
  });
  await response.body?.cancel();
  if (response.status !== 201) throw new Error(`PUT ${name} manifest gave ${response.status}`);
}

async function image(
  api: Api,
  name: string,
  reference: string | null,
  layers: TestDescriptor[],
): Promise<Stored & { config: TestDescriptor; layers: TestDescriptor[] }> {
  const configBytes = new TextEncoder().encode(
    JSON.stringify({ architecture: "amd64", os: "linux", nonce: crypto.randomUUID() }),
  );
  const config = await blob(api, name, configBytes, OCI_CONFIG);
  const stored = await jsonBytes({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers });
  await put(api, name, reference, stored, OCI_MANIFEST);
  return { ...stored, config, layers };
}

/** Builds the store (see the module comment). */
export async function buildStore(api: Api): Promise<BuiltStore> {
  const sharedBytes = randomBytes(3000);
  const shared = await blob(api, "app", sharedBytes, OCI_LAYER);
  const layer1 = await blob(api, "app", randomBytes(1000), OCI_LAYER);
  const image1 = await image(api, "app", "v1", [layer1, shared]);
  const layer2 = await blob(api, "app", randomBytes(1200), OCI_LAYER);
  const image2 = await image(api, "app", null, [layer2]);
  const index = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [image1, image2].map((m) => ({
      mediaType: OCI_MANIFEST,
      digest: m.digest,
      size: m.bytes.length,
    })),
  });
  await put(api, "app", "multi", index, OCI_INDEX);
  const emptyConfig = await blob(
    api,
    "app",
    new TextEncoder().encode("{}"),
    "application/vnd.oci.empty.v1+json",
  );
  const referrer = await jsonBytes({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: "application/vnd.example.sbom",
    config: emptyConfig,
    layers: [],
    subject: { mediaType: OCI_MANIFEST, digest: image1.digest, size: image1.bytes.length },
  });
  await put(api, "app", null, referrer, OCI_MANIFEST);
  await blob(api, "other", sharedBytes, OCI_LAYER);
  const other = await image(api, "other", "latest", [shared]);
  const subLayer = await blob(api, "app/sub", randomBytes(500), OCI_LAYER);
  const sub = await image(api, "app/sub", "v1", [subLayer]);
  return {
    shared,
    app: { image1, image2, index, referrer, emptyConfig },
    other,
    sub,
  };
}

/** Every object key under `prefix` of a driver, sorted. */
export async function keysUnder(driver: StorageDriver, prefix: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (key: string) => {
    if ((await driver.stat(key)) !== null) {
      out.push(key);
      return;
    }
    for (const child of await driver.list(key)) await walk(`${key}/${child}`);
  };
  await walk(prefix);
  return out.sort();
}
