/**
 * The only module that joins paths under the data root. It takes branded, validated values
 * only, so `..`, `%2e%2e`, absolute paths or NUL bytes cannot reach the filesystem.
 *
 * ```
 * <root>/
 *   blobs/<alg>/<hex[0:2]>/<hex>                   committed bytes, immutable, named by digest
 *   uploads/<uuid>/data                            bytes received so far
 *   uploads/<uuid>/startedat                       RFC 3339 UTC start time
 *   uploads/<uuid>/hashstate                       SHA-256 midstate + the offset it covers
 *   uploads/<uuid>/repository                      the repository the session belongs to
 *   repositories/<name>/_layers/<alg>/<hex>        link: the blob is in this repository
 *   repositories/<name>/_manifests/revisions/<alg>/<hex>   manifest record (media type, size)
 *   repositories/<name>/_manifests/tags/<tag>      the digest the tag points to
 *   repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex> descriptor of a referrer of <hex>
 * ```
 *
 * Names are made of `[a-z0-9]`-initial components, so they never collide with the `_`
 * folders; tags never start with `.`, so the `.tmp-*` files of atomic writes never look
 * like tags.
 */

import { join } from "node:path/posix";
import { digestAlgorithm, digestHex } from "../digest/digest.ts";
import type { Digest, RepositoryName, Tag, UploadId } from "../types/oci.ts";

/** Maps validated values to absolute paths under one data root. */
export class Paths {
  readonly root: string;
  readonly blobsDir: string;
  readonly uploadsDir: string;
  readonly repositoriesDir: string;

  /** Makes the mapper for an absolute data root. */
  constructor(root: string) {
    this.root = root;
    this.blobsDir = join(root, "blobs");
    this.uploadsDir = join(root, "uploads");
    this.repositoriesDir = join(root, "repositories");
  }

  /** The file holding a committed blob. */
  blob(digest: Digest): string {
    const hex = digestHex(digest);
    return join(this.blobsDir, digestAlgorithm(digest), hex.slice(0, 2), hex);
  }

  /** The folder of one upload session. */
  upload(id: UploadId): string {
    return join(this.uploadsDir, id);
  }

  /** A file of an upload session. */
  uploadFile(id: UploadId, file: "data" | "startedat" | "hashstate" | "repository"): string {
    return join(this.uploadsDir, id, file);
  }

  /** The folder of one repository. */
  repository(name: RepositoryName): string {
    return join(this.repositoriesDir, name);
  }

  /** The link that makes a blob visible in a repository. */
  layerLink(name: RepositoryName, digest: Digest): string {
    return join(this.repositoriesDir, name, "_layers", digestAlgorithm(digest), digestHex(digest));
  }

  /** The record of a manifest revision in a repository. */
  revision(name: RepositoryName, digest: Digest): string {
    return join(
      this.repositoriesDir,
      name,
      "_manifests",
      "revisions",
      digestAlgorithm(digest),
      digestHex(digest),
    );
  }

  /** The folder of a repository's tags. */
  tagsDir(name: RepositoryName): string {
    return join(this.repositoriesDir, name, "_manifests", "tags");
  }

  /** The file naming the digest a tag points to. */
  tag(name: RepositoryName, tag: Tag): string {
    return join(this.tagsDir(name), tag);
  }

  /** The folder listing the referrers of a subject digest. */
  referrersDir(name: RepositoryName, subject: Digest): string {
    return join(
      this.repositoriesDir,
      name,
      "_referrers",
      digestAlgorithm(subject),
      digestHex(subject),
    );
  }

  /** The descriptor file of one referrer of a subject. */
  referrer(name: RepositoryName, subject: Digest, referrer: Digest): string {
    return join(this.referrersDir(name, subject), referrer.replace(":", "-"));
  }
}
