/**
 * Blob semantics: a blob is visible in a repository only through that repository's link.
 * Unlinks and mounts run under the repository lock the manifest service takes, so a blob a
 * stored manifest needs is never unlinked under it.
 */

import { RegistryError } from "../errors.ts";
import type { BlobStore } from "../storage/blobs.ts";
import type { ObjectReader } from "../storage/driver.ts";
import type { LockManager } from "../storage/lock.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";
import type { ByteSpan } from "../types/spans.ts";
import { Dependents } from "./dependents.ts";
import { repositoryLock } from "./locks.ts";

/** Registry semantics of blobs: stat, read, unlink and cross-repository mount. */
export class BlobService {
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;
  readonly #locks: LockManager;
  readonly #dependents: Dependents;

  /** Makes the service over its stores and the lock manager shared with the manifests. */
  constructor(stores: { blobs: BlobStore; meta: MetadataStore; locks: LockManager }) {
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
    this.#locks = stores.locks;
    this.#dependents = new Dependents(stores);
  }

  /** Size of a blob linked in the repository; throws BLOB_UNKNOWN. */
  async size(name: RepositoryName, digest: Digest): Promise<number> {
    const size = (await this.#meta.hasLayer(name, digest)) ? await this.#blobs.size(digest) : null;
    if (size === null) throw unknownBlob(name, digest);
    return size;
  }

  /**
   * Opens a linked blob, whole or for the span `pick` chooses once the size is known
   * (it may throw 416); throws BLOB_UNKNOWN.
   */
  async open(
    name: RepositoryName,
    digest: Digest,
    pick: (size: number) => ByteSpan | null,
  ): Promise<ObjectReader & { span: ByteSpan | null }> {
    const size = await this.size(name, digest);
    const span = pick(size);
    const reader = await this.#blobs.open(
      digest,
      span ? { start: span.start, length: span.end - span.start + 1 } : undefined,
    );
    if (reader === null) throw unknownBlob(name, digest);
    return { ...reader, span };
  }

  /**
   * Unlinks a blob from a repository (the bytes stay for others). Throws BLOB_UNKNOWN, and
   * UNSUPPORTED (405, detail: the manifest) while a stored manifest of the repository names
   * the blob: unlinking it would break that manifest.
   */
  delete(name: RepositoryName, digest: Digest): Promise<void> {
    return this.#locks.run(repositoryLock(name), async () => {
      if (!(await this.#meta.hasLayer(name, digest))) throw unknownBlob(name, digest);
      const manifest = await this.#dependents.first(name, digest, "blob");
      if (manifest !== null) {
        throw new RegistryError(
          "UNSUPPORTED",
          `Blob "${digest}" is used by manifest "${manifest}" in "${name}"; delete the manifest first`,
          { detail: { digest, manifest } },
        );
      }
      if (!(await this.#meta.unlinkLayer(name, digest))) throw unknownBlob(name, digest);
    });
  }

  /**
   * Links a blob into `name` without copying, from `from`, or (`from` null) from any
   * repository that holds it; false when no such repository holds it.
   */
  async mount(name: RepositoryName, from: RepositoryName | null, digest: Digest): Promise<boolean> {
    const source = from ?? await this.#anyHolder(digest);
    if (source === null || !(await this.#meta.hasLayer(source, digest))) return false;
    return await this.#locks.run(repositoryLock(name), async () => {
      if ((await this.#blobs.size(digest)) === null) return false;
      await this.#meta.linkLayer(name, digest);
      return true;
    });
  }

  /** Links a freshly committed blob into a repository, under the repository lock. */
  link(name: RepositoryName, digest: Digest): Promise<void> {
    return this.#locks.run(repositoryLock(name), () => this.#meta.linkLayer(name, digest));
  }

  /** A repository in which the blob is linked, or null. */
  async #anyHolder(digest: Digest): Promise<RepositoryName | null> {
    if ((await this.#blobs.size(digest)) === null) return null;
    for (const repository of await this.#meta.listRepositories()) {
      if (await this.#meta.hasLayer(repository, digest)) return repository;
    }
    return null;
  }
}

function unknownBlob(name: RepositoryName, digest: Digest): RegistryError {
  return new RegistryError("BLOB_UNKNOWN", `Blob "${digest}" is not in repository "${name}"`, {
    detail: { digest },
  });
}
