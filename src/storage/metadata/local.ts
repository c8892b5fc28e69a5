/**
 * Repository metadata over a storage driver, under `repositories/<name>/`: every write is an
 * atomic small-object write, every delete is durable. It caches nothing (see `../cache.ts`).
 */

import { isDigest } from "../../digest/digest.ts";
import { isRepositoryName, isTag } from "../../types/names.ts";
import type { Digest, RepositoryName, Tag } from "../../types/oci.ts";
import type { DeleteOptions, StorageDriver } from "../driver.ts";
import {
  AREAS,
  layerKey,
  layersKey,
  referrerKey,
  referrersKey,
  repositoryKey,
  revisionKey,
  revisionsKey,
  tagKey,
  tagsKey,
} from "../keys.ts";
import type { MetadataStore, RevisionRecord, WrittenKind } from "./metadata.ts";

const decoder = new TextDecoder();
/** The folders that make a folder under `repositories/` a repository. */
const REPOSITORY_PARTS = new Set(["_layers", "_manifests", "_referrers"]);

/** Repository metadata stored through a driver. */
export class LocalMetadataStore implements MetadataStore {
  readonly #driver: StorageDriver;

  /** Makes a store over a driver. */
  constructor(driver: StorageDriver) {
    this.#driver = driver;
  }

  /** @inheritdoc */
  async hasLayer(name: RepositoryName, digest: Digest): Promise<boolean> {
    return (await this.#driver.stat(layerKey(name, digest))) !== null;
  }

  /** @inheritdoc */
  async writtenAt(kind: WrittenKind, name: RepositoryName, key: string): Promise<number | null> {
    const path = kind === "tag"
      ? tagKey(name, key as Tag)
      : kind === "revision"
      ? revisionKey(name, key as Digest)
      : layerKey(name, key as Digest);
    return (await this.#driver.stat(path))?.modifiedAt ?? null;
  }

  /** @inheritdoc */
  async linkLayer(name: RepositoryName, digest: Digest): Promise<void> {
    if (await this.hasLayer(name, digest)) return;
    await this.#driver.put(layerKey(name, digest), digest);
  }

  /** @inheritdoc */
  unlinkLayer(name: RepositoryName, digest: Digest, options?: DeleteOptions): Promise<boolean> {
    return this.#driver.delete(layerKey(name, digest), options);
  }

  /** @inheritdoc */
  listLayers(name: RepositoryName): Promise<readonly Digest[]> {
    return this.#digestsUnder(layersKey(name));
  }

  /** @inheritdoc */
  async getRevision(name: RepositoryName, digest: Digest): Promise<RevisionRecord | null> {
    const bytes = await this.#driver.get(revisionKey(name, digest));
    return bytes === null ? null : parseRevision(decoder.decode(bytes));
  }

  /** @inheritdoc */
  putRevision(name: RepositoryName, digest: Digest, record: RevisionRecord): Promise<void> {
    return this.#driver.put(revisionKey(name, digest), JSON.stringify(record));
  }

  /** @inheritdoc */
  deleteRevision(name: RepositoryName, digest: Digest): Promise<boolean> {
    return this.#driver.delete(revisionKey(name, digest));
  }

  /** @inheritdoc */
  listRevisions(name: RepositoryName): Promise<readonly Digest[]> {
    return this.#digestsUnder(revisionsKey(name));
  }

  /** @inheritdoc */
  async getTag(name: RepositoryName, tag: Tag): Promise<Digest | null> {
    const bytes = await this.#driver.get(tagKey(name, tag));
    if (bytes === null) return null;
    const text = decoder.decode(bytes).trim();
    return isDigest(text) ? text : null;
  }

  /** @inheritdoc */
  putTag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void> {
    return this.#driver.put(tagKey(name, tag), digest);
  }

  /** @inheritdoc */
  deleteTag(name: RepositoryName, tag: Tag): Promise<boolean> {
    return this.#driver.delete(tagKey(name, tag));
  }

  /** @inheritdoc */
  async listTags(name: RepositoryName): Promise<readonly Tag[] | null> {
    if (!(await this.repositoryExists(name))) return null;
    return (await this.#driver.list(tagsKey(name))).filter(isTag);
  }

  /** @inheritdoc */
  putReferrer(
    name: RepositoryName,
    subject: Digest,
    referrer: Digest,
    descriptor: string,
  ): Promise<void> {
    return this.#driver.put(referrerKey(name, subject, referrer), descriptor);
  }

  /** @inheritdoc */
  async deleteReferrer(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void> {
    await this.#driver.delete(referrerKey(name, subject, referrer));
  }

  /** @inheritdoc */
  async listReferrers(name: RepositoryName, subject: Digest): Promise<string[]> {
    const prefix = referrersKey(name, subject);
    const out: string[] = [];
    for (const entry of await this.#driver.list(prefix)) {
      const bytes = await this.#driver.get(`${prefix}/${entry}`);
      if (bytes !== null) out.push(decoder.decode(bytes));
    }
    return out;
  }

  /** @inheritdoc */
  async repositoryExists(name: RepositoryName): Promise<boolean> {
    const parts = await this.#driver.list(repositoryKey(name));
    return parts.some((part) => REPOSITORY_PARTS.has(part));
  }

  /** @inheritdoc */
  async removeRepository(name: RepositoryName): Promise<boolean> {
    let removed = false;
    for (const part of REPOSITORY_PARTS) {
      if (await this.#driver.deleteAll(`${repositoryKey(name)}/${part}`)) removed = true;
    }
    return removed;
  }

  /** @inheritdoc */
  async listRepositories(): Promise<readonly RepositoryName[]> {
    const found: RepositoryName[] = [];
    for await (const name of this.repositoriesAfter(null)) found.push(name);
    return found;
  }

  /**
   * A walk of `repositories/` in the byte order of the names it yields. A folder `c` stands
   * for two things: the repository `c` (when it holds a `_` part), and the names under `c/`.
   * Byte order puts `c` before its siblings that extend it (`c-d`, `c.d`), and those before
   * `c/…` (`/` sorts after `-` and `.`), so at each level the repositories are visited in the
   * order of their names and each subtree in the order of its name plus `/`. Subtrees whose
   * names all sort before `after` are skipped without being read.
   */
  async *repositoriesAfter(after: string | null): AsyncGenerator<RepositoryName> {
    yield* this.#walk(AREAS.repositories, "", after);
  }

  async *#walk(
    prefix: string,
    parent: string,
    after: string | null,
    listing?: readonly string[],
  ): AsyncGenerator<RepositoryName> {
    const full = (child: string) => parent === "" ? child : `${parent}/${child}`;
    const children = (listing ?? await this.#driver.list(prefix)).filter((c) => !c.startsWith("_"));
    // Every name at this level, as a repository (key `c`) or as a subtree (key `c/`).
    const items = children.flatMap((c) => [
      { child: c, key: c, subtree: false },
      { child: c, key: `${c}/`, subtree: true },
    ]).sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    // A folder read as a repository is not read again as a subtree; one holding nothing but
    // `_` parts has no subtree at all.
    const read = new Map<string, readonly string[]>();
    const leaves = new Set<string>();
    const list = async (child: string) => {
      const known = read.get(child);
      read.delete(child);
      return known ?? await this.#driver.list(`${prefix}/${child}`);
    };
    for (const { child, subtree } of items) {
      const name = full(child);
      if (subtree) {
        const under = `${name}/`;
        if (leaves.has(child) || (after !== null && after >= under && !after.startsWith(under))) {
          read.delete(child);
          continue;
        }
        yield* this.#walk(`${prefix}/${child}`, name, after, await list(child));
      } else {
        if (after !== null && name <= after) continue;
        const parts = await list(child);
        if (parts.some((part) => !part.startsWith("_"))) read.set(child, parts);
        else leaves.add(child);
        if (parts.some((part) => REPOSITORY_PARTS.has(part)) && isRepositoryName(name)) {
          yield name;
        }
      }
    }
  }

  /** The digests named by `<prefix>/<alg>/<hex>` objects, in byte order. */
  async #digestsUnder(prefix: string): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const algorithm of await this.#driver.list(prefix)) {
      for (const hex of await this.#driver.list(`${prefix}/${algorithm}`)) {
        const digest = `${algorithm}:${hex}`;
        if (isDigest(digest)) out.push(digest);
      }
    }
    return out;
  }
}

/** Parses a revision record; null when it is unreadable. */
function parseRevision(text: string): RevisionRecord | null {
  try {
    const value = JSON.parse(text) as Partial<RevisionRecord>;
    if (typeof value.mediaType !== "string" || typeof value.size !== "number") return null;
    const refs = Array.isArray(value.refs) && value.refs.every((d) => isDigest(String(d)))
      ? { refs: value.refs }
      : {};
    return value.subject && isDigest(value.subject)
      ? { mediaType: value.mediaType, size: value.size, subject: value.subject, ...refs }
      : { mediaType: value.mediaType, size: value.size, ...refs };
  } catch {
    return null;
  }
}
