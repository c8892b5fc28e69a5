/**
 * Which stored manifests of a repository need a digest: the indexes listing a child manifest,
 * the image manifests naming a config or layer blob. The manifest and blob services ask this,
 * under the repository lock, before a DELETE that would break a stored manifest.
 */

import type { BlobStore } from "../storage/blobs.ts";
import type { MetadataStore, RevisionRecord } from "../storage/metadata/metadata.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";
import { isIndexMediaType, parseManifest, referencesOf } from "./manifest_parse.ts";

/** The kind of dependency asked about. */
export type Need = "child" | "blob";

/** Finds the stored manifests that need a digest. */
export class Dependents {
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;

  /** Makes the finder over the stores. */
  constructor(stores: { blobs: BlobStore; meta: MetadataStore }) {
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
  }

  /**
   * The digest of a stored revision of `name` that needs `digest` (as an index's child, or as
   * an image manifest's blob), or null. Call under the repository lock. Records written
   * before they carried their references get them, read from the stored manifest.
   */
  async first(name: RepositoryName, digest: Digest, need: Need): Promise<Digest | null> {
    for (const revision of await this.#meta.listRevisions(name)) {
      if (revision === digest) continue;
      const record = await this.#meta.getRevision(name, revision);
      if (record === null || isIndexMediaType(record.mediaType) !== (need === "child")) continue;
      const refs = record.refs ?? await this.#backfill(name, revision, record);
      if (refs.includes(digest)) return revision;
    }
    return null;
  }

  /** Reads a revision's references from its manifest and records them. */
  async #backfill(
    name: RepositoryName,
    digest: Digest,
    record: RevisionRecord,
  ): Promise<readonly Digest[]> {
    const bytes = await this.#blobs.read(digest);
    if (bytes === null) return [];
    let refs: Digest[];
    try {
      refs = referencesOf(parseManifest(bytes, record.mediaType));
    } catch {
      return []; // stored before validation was this strict: it needs nothing we can name
    }
    await this.#meta.putRevision(name, digest, { ...record, refs });
    return refs;
  }
}
