/**
 * Blob semantics: a blob is visible in a repository only through that repository's link.
 */

import { RegistryError } from "../errors.ts";
import type { ByteSpan } from "../http/ranges.ts";
import type { BlobReader, BlobStore } from "../storage/blobs.ts";
import type { MetadataStore } from "../storage/repositories.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";

/** Registry semantics of blobs: stat, read, unlink and cross-repository mount. */
export class BlobService {
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;

  /** Makes the service over its stores. */
  constructor(stores: { blobs: BlobStore; meta: MetadataStore }) {
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
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
  ): Promise<BlobReader & { span: ByteSpan | null }> {
    const size = await this.size(name, digest);
    const span = pick(size);
    const reader = await this.#blobs.open(
      digest,
      span ? { start: span.start, length: span.end - span.start + 1 } : undefined,
    );
    if (reader === null) throw unknownBlob(name, digest);
    return { ...reader, span };
  }

  /** Unlinks a blob from a repository (the bytes stay for others); throws BLOB_UNKNOWN. */
  async delete(name: RepositoryName, digest: Digest): Promise<void> {
    if (!(await this.#meta.unlinkLayer(name, digest))) throw unknownBlob(name, digest);
  }

  /** Links a blob of `from` into `name` without copying; false when `from` does not have it. */
  async mount(name: RepositoryName, from: RepositoryName, digest: Digest): Promise<boolean> {
    if (!(await this.#meta.hasLayer(from, digest))) return false;
    if ((await this.#blobs.size(digest)) === null) return false;
    await this.#meta.linkLayer(name, digest);
    return true;
  }
}

function unknownBlob(name: RepositoryName, digest: Digest): RegistryError {
  return new RegistryError("BLOB_UNKNOWN", `Blob "${digest}" is not in repository "${name}"`, {
    detail: { digest },
  });
}
