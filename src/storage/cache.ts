/**
 * The cache layer: decorators of the blob and metadata stores that keep the hot facts (blob
 * sizes, links, tags, tag lists, revision records, the repository list) in memory.
 *
 * Valid only where this process is the only writer of the storage (the data-root lock makes
 * it so for the filesystem). Every write goes to the store first and then to the cache; every
 * delete leaves the cache first, so a reader never finds in the cache something the store no
 * longer holds. Writers of one key run one after another, so the cache follows the store's
 * order of writes. Each cache is bounded: when full it is emptied and refilled from the store.
 */

import type { Digest, RepositoryName, Tag, UploadId } from "../types/oci.ts";
import type { BlobStore } from "./blobs.ts";
import type { ObjectReader, Span } from "./driver.ts";
import { KeyedMutex } from "./lock.ts";
import type { MetadataStore, RevisionRecord } from "./metadata/metadata.ts";

const MAX_ENTRIES = 200_000;

/** A map that empties itself when it reaches its bound. */
class BoundedMap<K, V> extends Map<K, V> {
  override set(key: K, value: V): this {
    if (this.size >= MAX_ENTRIES && !this.has(key)) this.clear();
    return super.set(key, value);
  }
}

/** A blob store whose sizes are remembered. */
export class CachedBlobStore implements BlobStore {
  readonly #inner: BlobStore;
  readonly #sizes = new BoundedMap<Digest, number>();
  /** Changes when a delete starts or ends: a look-up that saw it change fills no cache. */
  #epoch = 0;
  /** Deletes under way: while any runs, no look-up fills the cache. */
  #deleting = 0;

  /** Wraps a store. */
  constructor(inner: BlobStore) {
    this.#inner = inner;
  }

  /** @inheritdoc */
  async size(digest: Digest): Promise<number | null> {
    const cached = this.#sizes.get(digest);
    if (cached !== undefined) return cached;
    const epoch = this.#epoch;
    const size = await this.#inner.size(digest);
    if (size !== null && this.#mayFill(epoch)) this.#sizes.set(digest, size);
    return size;
  }

  /** @inheritdoc */
  open(digest: Digest, span?: Span): Promise<ObjectReader | null> {
    return this.#inner.open(digest, span);
  }

  /** @inheritdoc */
  read(digest: Digest): Promise<Uint8Array<ArrayBuffer> | null> {
    return this.#inner.read(digest);
  }

  /** @inheritdoc */
  async write(digest: Digest, bytes: Uint8Array): Promise<void> {
    if (this.#sizes.get(digest) === bytes.length) return;
    const epoch = this.#epoch;
    await this.#inner.write(digest, bytes);
    if (this.#mayFill(epoch)) this.#sizes.set(digest, bytes.length);
  }

  /** @inheritdoc */
  async commitUpload(id: UploadId, digest: Digest): Promise<void> {
    await this.#inner.commitUpload(id, digest);
    this.#sizes.delete(digest); // learnt again from the store on the next look-up
  }

  /** @inheritdoc */
  async delete(digest: Digest): Promise<boolean> {
    this.#epoch++;
    this.#deleting++;
    this.#sizes.delete(digest);
    try {
      return await this.#inner.delete(digest);
    } finally {
      this.#deleting--;
      this.#epoch++;
    }
  }

  /** @inheritdoc */
  list(): AsyncIterable<Digest> {
    return this.#inner.list();
  }

  /** Whether a look-up that started at `epoch` may fill the cache. */
  #mayFill(epoch: number): boolean {
    return epoch === this.#epoch && this.#deleting === 0;
  }
}

/** Repository metadata with write-through caches. */
export class CachedMetadataStore implements MetadataStore {
  readonly #inner: MetadataStore;
  readonly #links = new BoundedMap<string, true>();
  readonly #tags = new BoundedMap<string, Digest>();
  readonly #tagLists = new BoundedMap<string, Tag[]>();
  readonly #revisions = new BoundedMap<string, RevisionRecord>();
  #repositories: RepositoryName[] | null = null;
  /** Serializes the writers of one key, so the caches follow the store's order of writes. */
  readonly #writers = new KeyedMutex();
  /** Changes when any write starts or ends: a read that saw it change fills no cache. */
  #epoch = 0;
  /** Writes under way: while any runs, no list is cached. */
  #writing = 0;

  /** Wraps a store. */
  constructor(inner: MetadataStore) {
    this.#inner = inner;
  }

  /** @inheritdoc */
  async hasLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    const key = `${name}@${digest}`;
    if (this.#links.has(key)) return true;
    const epoch = this.#epoch;
    const linked = await this.#inner.hasLayer(name, digest);
    if (linked && this.#mayFill(epoch, key)) this.#links.set(key, true);
    return linked;
  }

  /** @inheritdoc */
  linkLayer(name: RepositoryName, digest: Digest): Promise<void> {
    const key = `${name}@${digest}`;
    return this.#write(key, async () => {
      if (this.#links.has(key)) return;
      await this.#inner.linkLayer(name, digest);
      this.#links.set(key, true);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  unlinkLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    const key = `${name}@${digest}`;
    return this.#write(key, async () => {
      this.#links.delete(key);
      const removed = await this.#inner.unlinkLayer(name, digest);
      await this.#recheckRepository(name);
      return removed;
    });
  }

  /** @inheritdoc */
  async getRevision(name: RepositoryName, digest: Digest): Promise<RevisionRecord | null> {
    const key = `${name}@${digest}`;
    const cached = this.#revisions.get(key);
    if (cached) return cached;
    const epoch = this.#epoch;
    const record = await this.#inner.getRevision(name, digest);
    if (record && this.#mayFill(epoch, `${name}@@${digest}`)) {
      this.#revisions.set(key, record);
    }
    return record;
  }

  /** @inheritdoc */
  putRevision(name: RepositoryName, digest: Digest, record: RevisionRecord): Promise<void> {
    return this.#write(`${name}@@${digest}`, async () => {
      await this.#inner.putRevision(name, digest, record);
      this.#revisions.set(`${name}@${digest}`, record);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  deleteRevision(name: RepositoryName, digest: Digest): Promise<boolean> {
    return this.#write(`${name}@@${digest}`, async () => {
      this.#revisions.delete(`${name}@${digest}`);
      const removed = await this.#inner.deleteRevision(name, digest);
      await this.#recheckRepository(name);
      return removed;
    });
  }

  /** @inheritdoc */
  listRevisions(name: RepositoryName): Promise<readonly Digest[]> {
    return this.#inner.listRevisions(name);
  }

  /** @inheritdoc */
  async getTag(name: RepositoryName, tag: Tag): Promise<Digest | null> {
    const key = `${name}:${tag}`;
    const cached = this.#tags.get(key);
    if (cached) return cached;
    const epoch = this.#epoch;
    const digest = await this.#inner.getTag(name, tag);
    if (digest && this.#mayFill(epoch, key)) this.#tags.set(key, digest);
    return digest;
  }

  /** @inheritdoc */
  putTag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void> {
    const key = `${name}:${tag}`;
    return this.#write(key, async () => {
      await this.#inner.putTag(name, tag, digest);
      this.#tags.set(key, digest);
      const list = this.#tagLists.get(name);
      if (list && !list.includes(tag)) insertSorted(list, tag);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  deleteTag(name: RepositoryName, tag: Tag): Promise<boolean> {
    const key = `${name}:${tag}`;
    return this.#write(key, async () => {
      this.#tags.delete(key);
      const list = this.#tagLists.get(name);
      if (list) {
        const at = list.indexOf(tag);
        if (at >= 0) list.splice(at, 1);
      }
      const removed = await this.#inner.deleteTag(name, tag);
      await this.#recheckRepository(name);
      return removed;
    });
  }

  /** @inheritdoc */
  async listTags(name: RepositoryName): Promise<readonly Tag[] | null> {
    const cached = this.#tagLists.get(name);
    if (cached) return cached;
    const epoch = this.#epoch;
    const tags = await this.#inner.listTags(name);
    if (tags === null) return null;
    const copy = [...tags];
    if (this.#mayFillList(epoch)) this.#tagLists.set(name, copy);
    return copy;
  }

  /** @inheritdoc */
  putReferrer(
    name: RepositoryName,
    subject: Digest,
    referrer: Digest,
    descriptor: string,
  ): Promise<void> {
    return this.#write(`${name}@${subject}>${referrer}`, async () => {
      await this.#inner.putReferrer(name, subject, referrer, descriptor);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  deleteReferrer(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void> {
    return this.#write(`${name}@${subject}>${referrer}`, async () => {
      await this.#inner.deleteReferrer(name, subject, referrer);
      await this.#recheckRepository(name);
    });
  }

  /** @inheritdoc */
  listReferrers(name: RepositoryName, subject: Digest): Promise<string[]> {
    return this.#inner.listReferrers(name, subject);
  }

  /** @inheritdoc */
  async repositoryExists(name: RepositoryName): Promise<boolean> {
    if (this.#repositories !== null) return binarySearch(this.#repositories, name) >= 0;
    return await this.#inner.repositoryExists(name);
  }

  /** @inheritdoc */
  async listRepositories(): Promise<readonly RepositoryName[]> {
    if (this.#repositories !== null) return this.#repositories;
    const epoch = this.#epoch;
    const found = [...(await this.#inner.listRepositories())];
    if (this.#mayFillList(epoch)) this.#repositories = found;
    return found;
  }

  /** @inheritdoc */
  async *repositoriesAfter(after: string | null): AsyncGenerator<RepositoryName> {
    const cached = this.#repositories;
    if (cached === null) {
      yield* this.#inner.repositoriesAfter(after);
      return;
    }
    let from = 0;
    if (after !== null) {
      let lo = 0;
      let hi = cached.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cached[mid]! <= after) lo = mid + 1;
        else hi = mid;
      }
      from = lo;
    }
    for (let i = from; i < cached.length; i++) yield cached[i]!;
  }

  /** Runs a write of `key` after the earlier ones, moving the epoch at its start and end. */
  #write<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.#writers.run(key, async () => {
      this.#epoch++;
      this.#writing++;
      try {
        return await fn();
      } finally {
        this.#writing--;
        this.#epoch++;
      }
    });
  }

  /** Whether a read that started at `epoch` may fill the cache for `key`. */
  #mayFill(epoch: number, key: string): boolean {
    return epoch === this.#epoch && !this.#writers.isBusy(key);
  }

  /** Whether a list read that started at `epoch` may be cached: no write ran meanwhile. */
  #mayFillList(epoch: number): boolean {
    return epoch === this.#epoch && this.#writing === 0;
  }

  #addRepository(name: RepositoryName): void {
    const list = this.#repositories;
    if (list && binarySearch(list, name) < 0) insertSorted(list, name);
  }

  /** After a delete: drop a repository that holds nothing any more from the caches. */
  async #recheckRepository(name: RepositoryName): Promise<void> {
    if (await this.#inner.repositoryExists(name)) return;
    this.#tagLists.delete(name);
    const list = this.#repositories;
    const at = list ? binarySearch(list, name) : -1;
    if (list && at >= 0) list.splice(at, 1);
  }
}

/** The first index of a sorted list whose value is not below `value`. */
function lowerBound(list: readonly string[], value: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function binarySearch(list: readonly string[], value: string): number {
  const at = lowerBound(list, value);
  return at < list.length && list[at] === value ? at : -1;
}

function insertSorted<T extends string>(list: T[], value: T): void {
  list.splice(lowerBound(list, value), 0, value);
}
