/**
 * Repository deletion: every tag, manifest revision, referrer entry and layer link of one
 * repository goes, under the repository's lock (the lock the manifest and blob services
 * take), so no push, tag move, unlink or mount of that repository interleaves with it. Blob
 * bytes stay: other repositories may link them, and the collector frees the ones nobody
 * links. Repositories nested under the name (`a/b` under `a`) are left alone.
 *
 * The deletes go through the metadata store the services use (the cache layer when the
 * registry runs), tags first, then referrer entries and revisions, then links, so a reader
 * that finds a tag finds its revision, as with a manifest DELETE. Once nothing is left the
 * repository disappears from `_catalog` and its tag list answers NAME_UNKNOWN.
 */

import { RegistryError } from "../errors.ts";
import type { EventSpec } from "../events/event.ts";
import { type EventSink, NO_EVENTS } from "../events/sink.ts";
import { repositoryLock } from "../services/locks.ts";
import type { LockManager } from "../storage/lock.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import type { RepositoryName } from "../types/oci.ts";

/** What a repository deletion removed. */
export interface DeletionReport {
  readonly repository: RepositoryName;
  /** Tags removed. */
  readonly tags: number;
  /** Manifest revisions removed. */
  readonly manifests: number;
  /** Referrer entries removed (one per revision with a subject). */
  readonly referrers: number;
  /** Layer links removed (the blobs' bytes stay). */
  readonly layers: number;
}

/** Deletes repositories over the services' metadata store, lock manager and event sink. */
export class RepositoryDeleter {
  readonly #meta: MetadataStore;
  readonly #locks: LockManager;
  readonly #events: EventSink;

  /** Makes the deleter; `locks` must be the manager the services share. */
  constructor(stores: { meta: MetadataStore; locks: LockManager; events?: EventSink }) {
    this.#meta = stores.meta;
    this.#locks = stores.locks;
    this.#events = stores.events ?? NO_EVENTS;
  }

  /**
   * Removes the repository's tags, revisions, referrer entries and layer links, and queues a
   * delete event per revision and per tag (as manifest DELETEs would) before returning.
   * Throws NAME_UNKNOWN when the repository holds nothing.
   */
  deleteRepository(name: RepositoryName): Promise<DeletionReport> {
    return this.#locks.run(repositoryLock(name), async () => {
      if (!(await this.#meta.repositoryExists(name))) {
        throw new RegistryError("NAME_UNKNOWN", `Repository "${name}" is not known`, {
          detail: { name },
        });
      }
      const tags = [...((await this.#meta.listTags(name)) ?? [])];
      let removedTags = 0;
      for (const tag of tags) if (await this.#meta.deleteTag(name, tag)) removedTags++;
      let manifests = 0;
      let referrers = 0;
      const events: EventSpec[] = [];
      for (const digest of await this.#meta.listRevisions(name)) {
        const record = await this.#meta.getRevision(name, digest);
        if (record?.subject) {
          await this.#meta.deleteReferrer(name, record.subject, digest);
          referrers++;
        }
        if (await this.#meta.deleteRevision(name, digest)) {
          manifests++;
          events.push({ action: "delete", kind: "manifest", repository: name, digest });
        }
      }
      let layers = 0;
      for (const digest of await this.#meta.listLayers(name)) {
        if (await this.#meta.unlinkLayer(name, digest)) layers++;
      }
      // Anything the one-by-one deletes could not name: referrer entries of revisions that
      // were gone already, unreadable records, leftovers of an older version.
      await this.#meta.removeRepository(name);
      for (const tag of tags) events.push({ action: "delete", kind: "tag", repository: name, tag });
      await this.#events.record(events);
      return { repository: name, tags: removedTags, manifests, referrers, layers };
    });
  }
}
