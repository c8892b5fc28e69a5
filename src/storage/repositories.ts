/**
 * Per-repository metadata: layer links, manifest revision records, tags and the referrers
 * index, under `repositories/<name>/`. Every write is an atomic small-file write.
 *
 * The process owns its data root, so the hot facts (which links exist, what a tag points
 * to, the sorted tag list, the repository list) are cached in memory and updated by the
 * same methods that write them; a cache miss always falls back to the disk.
 */

import { dirname, join } from "node:path/posix";
import { isDigest } from "../digest/digest.ts";
import { isRepositoryName, isTag } from "../http/params.ts";
import type { Digest, RepositoryName, Tag } from "../types/oci.ts";
import {
  atomicWrite,
  lstatOrNull,
  pruneEmptyDirs,
  readDirNames,
  readTextOrNull,
  removeIfExists,
  syncDir,
} from "./fs.ts";
import { KeyedMutex } from "./lock.ts";
import type { Paths } from "./paths.ts";

/** What a repository records about one of its manifest revisions. */
export interface RevisionRecord {
  readonly mediaType: string;
  readonly size: number;
  /** The digest of the manifest's `subject`, when it has one. */
  readonly subject?: Digest;
}

/** What the services need from repository metadata storage. */
export interface MetadataStore {
  hasLayer(name: RepositoryName, digest: Digest): Promise<boolean>;
  linkLayer(name: RepositoryName, digest: Digest): Promise<void>;
  unlinkLayer(name: RepositoryName, digest: Digest): Promise<boolean>;
  getRevision(name: RepositoryName, digest: Digest): Promise<RevisionRecord | null>;
  putRevision(name: RepositoryName, digest: Digest, record: RevisionRecord): Promise<void>;
  deleteRevision(name: RepositoryName, digest: Digest): Promise<boolean>;
  getTag(name: RepositoryName, tag: Tag): Promise<Digest | null>;
  putTag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void>;
  deleteTag(name: RepositoryName, tag: Tag): Promise<boolean>;
  listTags(name: RepositoryName): Promise<readonly Tag[] | null>;
  putReferrer(
    name: RepositoryName,
    subject: Digest,
    referrer: Digest,
    descriptor: string,
  ): Promise<void>;
  deleteReferrer(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void>;
  listReferrers(name: RepositoryName, subject: Digest): Promise<string[]>;
  repositoryExists(name: RepositoryName): Promise<boolean>;
  listRepositories(): Promise<readonly RepositoryName[]>;
}

const MAX_CACHED = 200_000;

/** Repository metadata on the local filesystem, with write-through caches. */
export class FsMetadataStore implements MetadataStore {
  readonly #paths: Paths;
  readonly #links = new Set<string>();
  readonly #tags = new Map<string, Digest>();
  readonly #tagLists = new Map<string, Tag[]>();
  readonly #revisions = new Map<string, RevisionRecord>();
  #repositories: RepositoryName[] | null = null;
  /** Serializes the writers of one file, so the caches follow the disk's order of renames. */
  readonly #writers = new KeyedMutex();

  /** Makes a store over a path mapper. */
  constructor(paths: Paths) {
    this.#paths = paths;
  }

  /** @inheritdoc */
  async hasLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    const key = `${name}@${digest}`;
    if (this.#links.has(key)) return true;
    const info = await lstatOrNull(this.#paths.layerLink(name, digest));
    if (info === null || !info.isFile) return false;
    this.#remember(this.#links, key);
    return true;
  }

  /** @inheritdoc */
  linkLayer(name: RepositoryName, digest: Digest): Promise<void> {
    return this.#writers.run(`${name}@${digest}`, async () => {
      if (await this.hasLayer(name, digest)) return;
      await atomicWrite(this.#paths.layerLink(name, digest), digest);
      this.#remember(this.#links, `${name}@${digest}`);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  unlinkLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    return this.#writers.run(`${name}@${digest}`, () => {
      this.#links.delete(`${name}@${digest}`);
      return removeDurably(this.#paths.layerLink(name, digest));
    });
  }

  /** @inheritdoc */
  async getRevision(name: RepositoryName, digest: Digest): Promise<RevisionRecord | null> {
    const key = `${name}@${digest}`;
    const cached = this.#revisions.get(key);
    if (cached) return cached;
    const text = await readTextOrNull(this.#paths.revision(name, digest));
    if (text === null) return null;
    const record = parseRevision(text);
    if (record) this.#remember(this.#revisions, key, record);
    return record;
  }

  /** @inheritdoc */
  putRevision(name: RepositoryName, digest: Digest, record: RevisionRecord): Promise<void> {
    return this.#writers.run(`${name}@@${digest}`, async () => {
      await atomicWrite(this.#paths.revision(name, digest), JSON.stringify(record));
      this.#remember(this.#revisions, `${name}@${digest}`, record);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  deleteRevision(name: RepositoryName, digest: Digest): Promise<boolean> {
    return this.#writers.run(`${name}@@${digest}`, () => {
      this.#revisions.delete(`${name}@${digest}`);
      return removeDurably(this.#paths.revision(name, digest));
    });
  }

  /** @inheritdoc */
  async getTag(name: RepositoryName, tag: Tag): Promise<Digest | null> {
    const key = `${name}:${tag}`;
    const cached = this.#tags.get(key);
    if (cached) return cached;
    const text = await readTextOrNull(this.#paths.tag(name, tag));
    if (text === null || !isDigest(text.trim())) return null;
    const digest = text.trim() as Digest;
    this.#remember(this.#tags, key, digest);
    return digest;
  }

  /** @inheritdoc */
  putTag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void> {
    return this.#writers.run(`${name}:${tag}`, async () => {
      await atomicWrite(this.#paths.tag(name, tag), digest);
      this.#remember(this.#tags, `${name}:${tag}`, digest);
      const list = this.#tagLists.get(name);
      if (list && !list.includes(tag)) insertSorted(list, tag);
      this.#addRepository(name);
    });
  }

  /** @inheritdoc */
  deleteTag(name: RepositoryName, tag: Tag): Promise<boolean> {
    return this.#writers.run(`${name}:${tag}`, async () => {
      this.#tags.delete(`${name}:${tag}`);
      const list = this.#tagLists.get(name);
      if (list) {
        const at = list.indexOf(tag);
        if (at >= 0) list.splice(at, 1);
      }
      const removed = await removeIfExists(this.#paths.tag(name, tag));
      if (removed) await syncDir(this.#paths.tagsDir(name));
      return removed;
    });
  }

  /** @inheritdoc */
  async listTags(name: RepositoryName): Promise<readonly Tag[] | null> {
    const cached = this.#tagLists.get(name);
    if (cached) return cached;
    if (!(await this.repositoryExists(name))) return null;
    const names = (await readDirNames(this.#paths.tagsDir(name))) ?? [];
    const tags = names.filter(isTag).sort(compareStrings);
    this.#remember(this.#tagLists, name, tags);
    return tags;
  }

  /** @inheritdoc */
  async putReferrer(
    name: RepositoryName,
    subject: Digest,
    referrer: Digest,
    descriptor: string,
  ): Promise<void> {
    await atomicWrite(this.#paths.referrer(name, subject, referrer), descriptor);
  }

  /** @inheritdoc */
  async deleteReferrer(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void> {
    await removeIfExists(this.#paths.referrer(name, subject, referrer));
    await pruneEmptyDirs(this.#paths.referrersDir(name, subject), this.#paths.repository(name));
  }

  /** @inheritdoc */
  async listReferrers(name: RepositoryName, subject: Digest): Promise<string[]> {
    const dir = this.#paths.referrersDir(name, subject);
    const names = (await readDirNames(dir)) ?? [];
    const out: string[] = [];
    for (const file of names.filter((n) => !n.startsWith(".")).sort(compareStrings)) {
      const text = await readTextOrNull(join(dir, file));
      if (text !== null) out.push(text);
    }
    return out;
  }

  /** @inheritdoc */
  async repositoryExists(name: RepositoryName): Promise<boolean> {
    if (this.#repositories?.includes(name)) return true;
    const info = await lstatOrNull(this.#paths.repository(name));
    if (info === null || !info.isDirectory) return false;
    const [layers, manifests] = await Promise.all([
      lstatOrNull(join(this.#paths.repository(name), "_layers")),
      lstatOrNull(join(this.#paths.repository(name), "_manifests")),
    ]);
    return layers !== null || manifests !== null;
  }

  /** @inheritdoc */
  async listRepositories(): Promise<readonly RepositoryName[]> {
    if (this.#repositories === null) {
      const found: RepositoryName[] = [];
      await walkRepositories(this.#paths.repositoriesDir, "", found);
      this.#repositories = found.sort(compareStrings);
    }
    return this.#repositories;
  }

  #addRepository(name: RepositoryName): void {
    const list = this.#repositories;
    if (list && !list.includes(name)) insertSorted(list, name);
  }

  #remember<K, V>(cache: Set<K> | Map<K, V>, key: K, value?: V): void {
    if (cache.size >= MAX_CACHED) cache.clear();
    if (cache instanceof Set) cache.add(key);
    else cache.set(key, value as V);
  }
}

/** Byte-wise (code unit) order, the "lexical" order of the spec. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Removes a file and flushes its folder, so an acknowledged delete survives a power cut. */
async function removeDurably(path: string): Promise<boolean> {
  const removed = await removeIfExists(path);
  if (removed) await syncDir(dirname(path));
  return removed;
}

function insertSorted<T extends string>(list: T[], value: T): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, value);
}

function parseRevision(text: string): RevisionRecord | null {
  try {
    const value = JSON.parse(text) as Partial<RevisionRecord>;
    if (typeof value.mediaType !== "string" || typeof value.size !== "number") return null;
    return value.subject && isDigest(value.subject)
      ? { mediaType: value.mediaType, size: value.size, subject: value.subject }
      : { mediaType: value.mediaType, size: value.size };
  } catch {
    return null;
  }
}

/** Finds repository folders: those holding `_layers` or `_manifests`. Runs once per process. */
async function walkRepositories(dir: string, prefix: string, out: RepositoryName[]) {
  const names = (await readDirNames(dir)) ?? [];
  if (prefix !== "" && (names.includes("_layers") || names.includes("_manifests"))) {
    if (isRepositoryName(prefix)) out.push(prefix);
  }
  for (const name of names) {
    if (name.startsWith("_") || name.startsWith(".")) continue;
    const path = join(dir, name);
    const info = await lstatOrNull(path);
    if (info?.isDirectory) await walkRepositories(path, prefix ? `${prefix}/${name}` : name, out);
  }
}
