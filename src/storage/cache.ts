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
import type { DeleteOptions, ObjectReader, Span } from "./driver.ts";
import { KeyedMutex } from "./lock.ts";
import type { MetadataStore, RevisionRecord, WrittenKind } from "./metadata/metadata.ts";

/** What an entry costs besides its key and value: the map's slot and the objects' headers. */
const ENTRY_OVERHEAD = 64;
const DIGEST_BYTES = 96;

/**
 * The byte budgets of the caches (estimates of the JavaScript heap they hold, within a tenth of
 * what V8 reports): together at most 12 MiB, whatever the size of the store, so the registry's
 * memory stays flat. Twice these held 7 MiB more after a manifest GET in each of 20,000
 * repositories, with no change in the GET rate over them (BENCHMARKS.md).
 */
export const CACHE_BUDGETS = {
  sizes: 1 * 1024 * 1024,
  links: 2 * 1024 * 1024,
  tags: 2 * 1024 * 1024,
  tagLists: 4 * 1024 * 1024,
  revisions: 3 * 1024 * 1024,
} as const;

/**
 * A map bounded by an estimate of the bytes it holds: it empties itself when an entry would
 * take it past its budget. A value changed in place is accounted for with `grow`.
 */
export class BoundedMap<K extends string, V> extends Map<K, V> {
  readonly #budget: number;
  readonly #sizeOf: (value: V) => number;
  #bytes = 0;

  /** A map of at most `budget` bytes, a value costing `sizeOf(value)`. */
  constructor(budget: number, sizeOf: (value: V) => number) {
    super();
    this.#budget = budget;
    this.#sizeOf = sizeOf;
  }

  /** The estimated bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  #cost(key: K, value: V): number {
    return ENTRY_OVERHEAD + key.length + this.#sizeOf(value);
  }

  override set(key: K, value: V): this {
    const old = super.get(key);
    if (old !== undefined) this.#bytes -= this.#cost(key, old);
    const cost = this.#cost(key, value);
    if (this.#bytes + cost > this.#budget) this.clear();
    this.#bytes += cost;
    return super.set(key, value);
  }

  override delete(key: K): boolean {
    const old = super.get(key);
    if (old !== undefined) this.#bytes -= this.#cost(key, old);
    return super.delete(key);
  }

  override clear(): void {
    this.#bytes = 0;
    super.clear();
  }

  /** Accounts for `delta` bytes added to (or taken from) a value in place. */
  grow(delta: number): void {
    this.#bytes += delta;
    if (this.#bytes > this.#budget) this.clear();
  }
}

/** The most repository names the list cache holds (about 8 MiB); a bigger list is not cached. */
const MAX_LISTED_REPOSITORIES = 100_000;

const tagCost = (tag: string) => tag.length + 16;
const tagListCost = (tags: readonly string[]) => {
  let bytes = 32;
  for (const tag of tags) bytes += tagCost(tag);
  return bytes;
};
const revisionCost = (record: RevisionRecord) =>
  64 + record.mediaType.length + (record.subject ? DIGEST_BYTES : 0) +
  (record.refs?.length ?? 0) * DIGEST_BYTES;

/** A blob store whose sizes are remembered. */
export class CachedBlobStore implements BlobStore {
  readonly #inner: BlobStore;
  readonly #sizes = new BoundedMap<Digest, number>(CACHE_BUDGETS.sizes, () => 8);
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
  async commitUpload(id: UploadId, digest: Digest, size?: number): Promise<void> {
    await this.#inner.commitUpload(id, digest, size);
    this.#sizes.delete(digest); // learnt again from the store on the next look-up
  }

  /** @inheritdoc */
  async delete(digest: Digest, options?: DeleteOptions): Promise<boolean> {
    this.#epoch++;
    this.#deleting++;
    this.#sizes.delete(digest);
    try {
      return await this.#inner.delete(digest, options);
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
  readonly #links = new BoundedMap<string, true>(CACHE_BUDGETS.links, () => 0);
  readonly #tags = new BoundedMap<string, Digest>(CACHE_BUDGETS.tags, () => DIGEST_BYTES);
  readonly #tagLists = new BoundedMap<string, Tag[]>(CACHE_BUDGETS.tagLists, tagListCost);
  readonly #revisions = new BoundedMap<string, RevisionRecord>(
    CACHE_BUDGETS.revisions,
    revisionCost,
  );
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
  unlinkLayer(name: RepositoryName, digest: Digest, options?: DeleteOptions): Promise<boolean> {
    const key = `${name}@${digest}`;
    return this.#write(key, async () => {
      this.#links.delete(key);
      const removed = await this.#inner.unlinkLayer(name, digest, options);
      await this.#recheckRepository(name);
      return removed;
    });
  }

  /** @inheritdoc */
  listLayers(name: RepositoryName): Promise<readonly Digest[]> {
    return this.#inner.listLayers(name);
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
      if (list && !list.includes(tag)) {
        insertSorted(list, tag);
        this.#tagLists.grow(tagCost(tag));
      }
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
        if (at >= 0) {
          list.splice(at, 1);
          this.#tagLists.grow(-tagCost(tag));
        }
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

  /** @inheritdoc (not cached: garbage collection asks, once a collection) */
  writtenAt(kind: WrittenKind, name: RepositoryName, key: string): Promise<number | null> {
    return this.#inner.writtenAt(kind, name, key);
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
    if (this.#mayFillList(epoch) && found.length <= MAX_LISTED_REPOSITORIES) {
      this.#repositories = found;
    }
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

  /** @inheritdoc */
  removeRepository(name: RepositoryName): Promise<boolean> {
    return this.#write(`${name}/`, async () => {
      this.#forget(name);
      const removed = await this.#inner.removeRepository(name);
      await this.#recheckRepository(name);
      return removed;
    });
  }

  /** Drops every cached link, tag, tag list and revision record of a repository. */
  #forget(name: RepositoryName): void {
    // `@` and `:` never occur in a name: `a@` never matches the keys of `a/b`.
    for (const map of [this.#links, this.#tags, this.#revisions]) {
      for (const key of map.keys()) {
        if (key.startsWith(`${name}@`) || key.startsWith(`${name}:`)) map.delete(key);
      }
    }
    this.#tagLists.delete(name);
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
    if (list && binarySearch(list, name) < 0) {
      if (list.length >= MAX_LISTED_REPOSITORIES) this.#repositories = null;
      else insertSorted(list, name);
    }
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
