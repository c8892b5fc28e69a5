/**
 * Storage usage, measured by reading the store (never writing it, taking no lock).
 *
 * A repository holds the blobs it links (`_layers`) and the bytes of its manifest revisions
 * (manifests are stored as blobs too). A blob held by one repository only counts in that
 * repository's `exclusiveBytes`; one held by two or more counts in each one's `sharedBytes`
 * (so shared bytes add up to more than the store holds). A blob nobody holds counts in the
 * store's `unlinkedBytes`: what the collector can free. Upload sessions count apart (their
 * `data` files).
 *
 * Reading while the registry runs is safe (every object is replaced atomically; an object
 * deleted during the walk is skipped), but the numbers then describe a moment that writes
 * may have moved on from. A link or revision whose blob is missing counts in `missingBlobs`,
 * not in any byte total (`deno task fsck` reports it).
 */

import { RegistryError } from "../errors.ts";
import { DriverBlobStore } from "../storage/blobs.ts";
import { InvalidKey, type StorageDriver } from "../storage/driver.ts";
import { AREAS } from "../storage/keys.ts";
import { LocalMetadataStore } from "../storage/metadata/local.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";

/** One repository's usage. */
export interface RepositoryUsage {
  readonly name: RepositoryName;
  /** Manifest revisions. */
  readonly manifests: number;
  readonly tags: number;
  /** Blobs linked (`_layers`). */
  readonly blobs: number;
  /** Bytes of the blobs and manifests no other repository holds. */
  readonly exclusiveBytes: number;
  /** Bytes of the blobs and manifests other repositories hold too. */
  readonly sharedBytes: number;
  /** Links and revisions whose blob is not stored (counted in no byte total). */
  readonly missingBlobs: number;
}

/** The whole store's usage. */
export interface StoreUsage {
  readonly repositories: number;
  /** Blobs stored (layers, configs and manifests). */
  readonly blobs: number;
  readonly blobBytes: number;
  /** Blobs no repository links or holds as a manifest: what the collector can free. */
  readonly unlinkedBlobs: number;
  readonly unlinkedBytes: number;
  /** Upload sessions in progress, and the bytes they received so far. */
  readonly uploads: number;
  readonly uploadBytes: number;
}

/** What `measureUsage` reports. */
export interface UsageReport {
  readonly store: StoreUsage;
  /** Every repository, or the one asked for, in byte order. */
  readonly repositories: readonly RepositoryUsage[];
}

/**
 * Measures the store behind `driver`. With `repository`, only that repository is listed
 * (sharing still counts every repository); throws NAME_UNKNOWN when it does not exist.
 */
export async function measureUsage(
  driver: StorageDriver,
  options: { readonly repository?: RepositoryName } = {},
): Promise<UsageReport> {
  const meta = new LocalMetadataStore(driver);
  const blobs = new DriverBlobStore(driver);
  const sizes = new Map<Digest, number>();
  for await (const digest of blobs.list()) {
    const size = await blobs.size(digest);
    if (size !== null) sizes.set(digest, size);
  }
  const names = await meta.listRepositories();
  if (options.repository !== undefined && !names.includes(options.repository)) {
    throw new RegistryError("NAME_UNKNOWN", `Repository "${options.repository}" is not known`, {
      detail: { name: options.repository },
    });
  }
  const holders = new Map<Digest, number>();
  const held = new Map<RepositoryName, { layers: number; manifests: number; all: Set<Digest> }>();
  for (const name of names) {
    const layers = await meta.listLayers(name);
    const manifests = await meta.listRevisions(name);
    const all = new Set<Digest>([...layers, ...manifests]);
    for (const digest of all) holders.set(digest, (holders.get(digest) ?? 0) + 1);
    held.set(name, { layers: layers.length, manifests: manifests.length, all });
  }
  const repositories: RepositoryUsage[] = [];
  for (const name of names) {
    if (options.repository !== undefined && name !== options.repository) continue;
    const { layers, manifests, all } = held.get(name)!;
    let exclusiveBytes = 0;
    let sharedBytes = 0;
    let missingBlobs = 0;
    for (const digest of all) {
      const size = sizes.get(digest);
      if (size === undefined) missingBlobs++;
      else if (holders.get(digest) === 1) exclusiveBytes += size;
      else sharedBytes += size;
    }
    const tags = (await meta.listTags(name))?.length ?? 0;
    repositories.push({
      name,
      manifests,
      tags,
      blobs: layers,
      exclusiveBytes,
      sharedBytes,
      missingBlobs,
    });
  }
  let blobBytes = 0;
  let unlinkedBlobs = 0;
  let unlinkedBytes = 0;
  for (const [digest, size] of sizes) {
    blobBytes += size;
    if (!holders.has(digest)) {
      unlinkedBlobs++;
      unlinkedBytes += size;
    }
  }
  let uploads = 0;
  let uploadBytes = 0;
  for (const id of await driver.list(AREAS.uploads)) {
    uploads++;
    uploadBytes += (await statOrNull(driver, `${AREAS.uploads}/${id}/data`))?.size ?? 0;
  }
  return {
    store: {
      repositories: names.length,
      blobs: sizes.size,
      blobBytes,
      unlinkedBlobs,
      unlinkedBytes,
      uploads,
      uploadBytes,
    },
    repositories,
  };
}

/** `stat`, with null for a name the store could never have made. */
async function statOrNull(driver: StorageDriver, key: string) {
  try {
    return await driver.stat(key);
  } catch (error) {
    if (error instanceof InvalidKey) return null;
    throw error;
  }
}

/** The report as text lines, for `deno task du`. */
export function formatUsage(report: UsageReport): string {
  const { store } = report;
  const lines = [
    `store: ${store.blobs} blobs, ${bytes(store.blobBytes)}; ` +
    `unlinked (collectable): ${store.unlinkedBlobs} blobs, ${bytes(store.unlinkedBytes)}; ` +
    `uploads: ${store.uploads} sessions, ${bytes(store.uploadBytes)}; ` +
    `${store.repositories} repositories`,
  ];
  for (const r of report.repositories) {
    lines.push(
      `${r.name}: exclusive ${bytes(r.exclusiveBytes)}, shared ${bytes(r.sharedBytes)}; ` +
        `${r.manifests} manifests, ${r.tags} tags, ${r.blobs} blobs` +
        (r.missingBlobs > 0 ? `; ${r.missingBlobs} missing blobs (run deno task fsck)` : ""),
    );
  }
  return lines.join("\n");
}

/** Bytes, exactly, with a binary-unit figure when that helps. */
function bytes(n: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = "";
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return unit === "" ? `${n} B` : `${n} B (${value.toFixed(1)} ${unit})`;
}
