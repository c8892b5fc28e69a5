/**
 * The repository metadata interface: layer links, manifest revisions, tags, the referrers
 * index and the list of repositories. Implementations: `local.ts` over a storage driver, and
 * the cache layer in `../cache.ts`. None of them enforces the registry's invariants: the
 * services do, under the repository lock.
 */

import type { DeleteOptions } from "../driver.ts";
import type { Digest, RepositoryName, Tag } from "../../types/oci.ts";

/** What a repository records about one of its manifest revisions. */
export interface RevisionRecord {
  readonly mediaType: string;
  readonly size: number;
  /** The digest of the manifest's `subject`, when it has one. */
  readonly subject?: Digest;
  /**
   * What the manifest needs in its repository: an index's child manifests, an image
   * manifest's config and stored layers. Absent in records written before format 2 (the
   * services then read it from the manifest itself).
   */
  readonly refs?: readonly Digest[];
}

/** What `writtenAt` asks about: a tag (by name), a revision or a layer link (by digest). */
export type WrittenKind = "tag" | "revision" | "link";

/** What the services need from repository metadata storage. */
export interface MetadataStore {
  /** Whether the blob is linked into the repository. */
  hasLayer(name: RepositoryName, digest: Digest): Promise<boolean>;
  /** Links a blob into the repository (idempotent). */
  linkLayer(name: RepositoryName, digest: Digest): Promise<void>;
  /**
   * Removes a blob's link; false when there was none. `lazy` (garbage collection): durable
   * only once the driver's `settle()` resolves (see `DeleteOptions`).
   */
  unlinkLayer(name: RepositoryName, digest: Digest, options?: DeleteOptions): Promise<boolean>;
  /** Every blob digest linked into the repository, in byte order. */
  listLayers(name: RepositoryName): Promise<readonly Digest[]>;
  /** The record of a revision, or null when the repository does not hold it. */
  getRevision(name: RepositoryName, digest: Digest): Promise<RevisionRecord | null>;
  /** Records a revision (replacing an earlier record of the same digest). */
  putRevision(name: RepositoryName, digest: Digest, record: RevisionRecord): Promise<void>;
  /** Removes a revision's record; false when there was none. */
  deleteRevision(name: RepositoryName, digest: Digest): Promise<boolean>;
  /** Every revision digest of a repository, in byte order. */
  listRevisions(name: RepositoryName): Promise<readonly Digest[]>;
  /** The digest a tag points to, or null. */
  getTag(name: RepositoryName, tag: Tag): Promise<Digest | null>;
  /** Points a tag at a digest. */
  putTag(name: RepositoryName, tag: Tag, digest: Digest): Promise<void>;
  /** Removes a tag; false when there was none. */
  deleteTag(name: RepositoryName, tag: Tag): Promise<boolean>;
  /** A repository's tags in byte order, or null when the repository does not exist. */
  listTags(name: RepositoryName): Promise<readonly Tag[] | null>;
  /** Records `referrer` (its descriptor as JSON text) as a referrer of `subject`. */
  putReferrer(
    name: RepositoryName,
    subject: Digest,
    referrer: Digest,
    descriptor: string,
  ): Promise<void>;
  /** Removes a referrer entry (no error when absent). */
  deleteReferrer(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void>;
  /** The descriptors (JSON text) of the referrers of `subject`, ordered by referrer digest. */
  listReferrers(name: RepositoryName, subject: Digest): Promise<string[]>;
  /** Whether a repository holds anything (a link, a revision, a tag or a referrer entry). */
  repositoryExists(name: RepositoryName): Promise<boolean>;
  /** Every repository name, in byte order. */
  listRepositories(): Promise<readonly RepositoryName[]>;
  /**
   * The repository names after `after` (exclusive; null: from the first), in byte order,
   * found as they are consumed: a caller that stops after a page reads only as much of the
   * store as that page needed.
   */
  repositoriesAfter(after: string | null): AsyncIterable<RepositoryName>;
  /**
   * Removes whatever is left of a repository's own metadata (links, revisions, tags, referrer
   * entries, and anything unreadable among them), not the repositories nested under its name;
   * false when there was nothing. The repository deletion's last step, after the one-by-one
   * deletes.
   */
  removeRepository(name: RepositoryName): Promise<boolean>;
  /**
   * Whether any repository links the blob or holds it as a revision: asked by garbage
   * collection under the blob's lock. Given by stores shared by several processes (whose
   * touches one process cannot see); a store of one process leaves it out, and the collector
   * relies on the touches it sees (`Activity.openWindow`).
   */
  readonly blobReferenced?: (digest: Digest) => Promise<boolean>;
  /**
   * When a tag (`key`: its name), a revision or a link (`key`: the digest) was last written,
   * epoch milliseconds; null when it does not exist. Garbage collection's push times.
   */
  writtenAt(kind: WrittenKind, name: RepositoryName, key: string): Promise<number | null>;
}
