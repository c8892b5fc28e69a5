/**
 * Blob semantics: a blob is visible in a repository only through that repository's link.
 * Unlinks and mounts run under the repository lock the manifest service takes, so a blob a
 * stored manifest needs is never unlinked under it.
 */

import { RegistryError } from "../errors.ts";
import { BLOB_MEDIA_TYPE } from "../events/event.ts";
import { type EventSink, NO_EVENTS } from "../events/sink.ts";
import type { Activity } from "../storage/activity.ts";
import type { BlobStore } from "../storage/blobs.ts";
import type { ObjectReader } from "../storage/driver.ts";
import type { LockManager } from "../storage/lock.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import type { Digest, RepositoryName } from "../types/oci.ts";
import type { ByteSpan } from "../types/spans.ts";
import { Dependents } from "./dependents.ts";
import { blobLock, repositoryLock } from "./locks.ts";

/**
 * Whether a blob is linked in a repository and the size its store recorded, in one look-up:
 * null when it is not linked, `{ size: null }` when it is but no size is recorded (the blob
 * store is asked then). The scale-out mode's `BlobSizes.linked`: one query for a HEAD.
 */
export type LinkedSize = (
  name: RepositoryName,
  digest: Digest,
) => Promise<{ size: number | null } | null>;

/** Registry semantics of blobs: stat, read, unlink and cross-repository mount. */
export class BlobService {
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;
  readonly #linkedSize: LinkedSize | null;
  readonly #locks: LockManager;
  readonly #dependents: Dependents;
  readonly #events: EventSink;
  readonly #activity: Activity | null;

  /**
   * Makes the service over its stores, the lock manager shared with the manifests, the sink
   * of its events (default: none), the activity tracker told of reads and mounts, and the
   * one-step look-up of a linked blob's size when the stores have one (`linkedSize`: sizes
   * recorded by `blobs` in the database of `meta`).
   */
  constructor(
    stores: {
      blobs: BlobStore;
      meta: MetadataStore;
      locks: LockManager;
      events?: EventSink;
      activity?: Activity;
      linkedSize?: LinkedSize;
    },
  ) {
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
    this.#linkedSize = stores.linkedSize ?? null;
    this.#locks = stores.locks;
    this.#dependents = new Dependents(stores);
    this.#events = stores.events ?? NO_EVENTS;
    this.#activity = stores.activity ?? null;
  }

  /** Size of a blob linked in the repository (a HEAD: a pull event, as in Distribution). */
  async size(name: RepositoryName, digest: Digest): Promise<number> {
    const size = await this.#size(name, digest);
    this.#pulled(name, digest, size);
    return size;
  }

  /** Size of a blob linked in the repository, without a pull event; throws BLOB_UNKNOWN. */
  stat(name: RepositoryName, digest: Digest): Promise<number> {
    return this.#size(name, digest);
  }

  /** Size of a blob linked in the repository; throws BLOB_UNKNOWN. */
  async #size(name: RepositoryName, digest: Digest): Promise<number> {
    let size: number | null;
    if (this.#linkedSize !== null) {
      // One round trip when the size is recorded; the blob store for a blob without one.
      const linked = await this.#linkedSize(name, digest);
      size = linked === null ? null : linked.size ?? await this.#blobs.size(digest);
    } else {
      size = (await this.#meta.hasLayer(name, digest)) ? await this.#blobs.size(digest) : null;
    }
    if (size === null) throw unknownBlob(name, digest);
    return size;
  }

  #pulled(name: RepositoryName, digest: Digest, size: number): void {
    this.#activity?.touch(digest);
    this.#events.pulled({
      action: "pull",
      kind: "blob",
      repository: name,
      digest,
      mediaType: BLOB_MEDIA_TYPE,
      size,
    });
  }

  /**
   * Opens a linked blob, whole or for the span `pick` chooses once the size is known
   * (it may throw 416); throws BLOB_UNKNOWN. A pull event.
   */
  async open(
    name: RepositoryName,
    digest: Digest,
    pick: (size: number) => ByteSpan | null,
  ): Promise<ObjectReader & { span: ByteSpan | null }> {
    const size = await this.#size(name, digest);
    const span = pick(size);
    const reader = await this.#blobs.open(
      digest,
      span ? { start: span.start, length: span.end - span.start + 1 } : undefined,
    );
    if (reader === null) throw unknownBlob(name, digest);
    this.#pulled(name, digest, size);
    return { ...reader, span };
  }

  /**
   * Unlinks a blob from a repository (the bytes stay for others). Throws BLOB_UNKNOWN, and
   * UNSUPPORTED (405, detail: the manifest) while a stored manifest of the repository names
   * the blob: unlinking it would break that manifest. The delete event is queued durably
   * before returning.
   */
  delete(name: RepositoryName, digest: Digest): Promise<void> {
    return this.#locks.run(repositoryLock(name), async () => {
      if (!(await this.#meta.hasLayer(name, digest))) throw unknownBlob(name, digest);
      const manifest = await this.#dependents.first(name, digest, "blob");
      if (manifest !== null) {
        throw new RegistryError(
          "UNSUPPORTED",
          `Blob "${digest}" is used by manifest "${manifest}" in "${name}"; delete the manifest first`,
          // the blob can be read, not deleted, for now (RFC 9110 §15.5.6)
          { detail: { digest, manifest }, headers: { Allow: "GET, HEAD" } },
        );
      }
      if (!(await this.#meta.unlinkLayer(name, digest))) throw unknownBlob(name, digest);
      await this.#events.record([{ action: "delete", kind: "blob", repository: name, digest }]);
    });
  }

  /**
   * Links a blob into `name` without copying, from `from`, or (`from` null) from any
   * repository that holds it; false when no such repository holds it. Only repositories
   * `readable` allows are considered (access control: those the caller may pull), so a
   * refused `from` looks the same as one without the blob. The mount event (Distribution's,
   * with `fromRepository`) is queued durably before returning true.
   */
  async mount(
    name: RepositoryName,
    from: RepositoryName | null,
    digest: Digest,
    readable: (repository: string) => boolean = () => true,
  ): Promise<boolean> {
    if (from !== null && !readable(from)) return false;
    const source = from ?? await this.#anyHolder(digest, readable);
    if (source === null || !(await this.#meta.hasLayer(source, digest))) return false;
    // The blob's lock, then the repository's: a collection deletes the bytes wholly before
    // (the size check then fails) or after (it then finds this link and the touch).
    return await this.#locks.run(
      blobLock(digest),
      () =>
        this.#locks.run(repositoryLock(name), async () => {
          const size = await this.#blobs.size(digest);
          if (size === null) return false;
          await this.#meta.linkLayer(name, digest);
          this.#activity?.touch(digest); // after the link: see locks.ts
          await this.#events.record([{
            action: "mount",
            kind: "blob",
            repository: name,
            digest,
            mediaType: BLOB_MEDIA_TYPE,
            size,
            fromRepository: source,
          }]);
          return true;
        }),
    );
  }

  /** A `readable` repository in which the blob is linked, or null. */
  async #anyHolder(
    digest: Digest,
    readable: (repository: string) => boolean,
  ): Promise<RepositoryName | null> {
    if ((await this.#blobs.size(digest)) === null) return null;
    for (const repository of await this.#meta.listRepositories()) {
      if (readable(repository) && await this.#meta.hasLayer(repository, digest)) return repository;
    }
    return null;
  }
}

function unknownBlob(name: RepositoryName, digest: Digest): RegistryError {
  return new RegistryError("BLOB_UNKNOWN", `Blob "${digest}" is not in repository "${name}"`, {
    detail: { digest },
  });
}
