/**
 * The only key mapper: validated, branded values in, storage keys out. A key is relative to
 * the driver's root; only a driver turns it into a path or an object name. Because only
 * branded values come in, `..`, `%2e%2e`, absolute paths or NUL bytes never reach a driver.
 *
 * ```
 * format.json                                    the data root's format version
 * blobs/<alg>/<hex[0:2]>/<hex>                   committed bytes, immutable, named by digest
 * uploads/<uuid>/data                            bytes received so far
 * uploads/<uuid>/startedat                       RFC 3339 UTC start time
 * uploads/<uuid>/hashstate                       SHA-256 midstate + the offset it covers
 * uploads/<uuid>/repository                      the repository the session belongs to
 * repositories/<name>/_layers/<alg>/<hex>        link: the blob is in this repository
 * repositories/<name>/_manifests/revisions/<alg>/<hex>   manifest record (media type, size,
 *                                                        subject, the digests it references)
 * repositories/<name>/_manifests/tags/<tag>      the digest the tag points to
 * repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex> descriptor of a referrer of <hex>
 * ```
 *
 * Names are made of `[a-z0-9]`-initial components, so they never collide with the `_`
 * folders; tags never start with `.`, so the `.tmp-*` files of atomic writes never look
 * like tags.
 */

import { digestAlgorithm, digestHex } from "../digest/digest.ts";
import type { Digest, RepositoryName, Tag, UploadId } from "../types/oci.ts";

/** The files of an upload session. */
export type UploadFile = "data" | "startedat" | "hashstate" | "repository";

/** The top-level areas of a data root. */
export const AREAS = { blobs: "blobs", uploads: "uploads", repositories: "repositories" } as const;

/** The key of the data root's format record. */
export const FORMAT_KEY = "format.json";

/** The key holding a committed blob. */
export function blobKey(digest: Digest): string {
  const hex = digestHex(digest);
  return `blobs/${digestAlgorithm(digest)}/${hex.slice(0, 2)}/${hex}`;
}

/** The prefix of one upload session. */
export function uploadKey(id: UploadId): string {
  return `uploads/${id}`;
}

/** The key of a file of an upload session. */
export function uploadFileKey(id: UploadId, file: UploadFile): string {
  return `uploads/${id}/${file}`;
}

/** The prefix of one repository. */
export function repositoryKey(name: RepositoryName): string {
  return `repositories/${name}`;
}

/** The link that makes a blob visible in a repository. */
export function layerKey(name: RepositoryName, digest: Digest): string {
  return `repositories/${name}/_layers/${digestAlgorithm(digest)}/${digestHex(digest)}`;
}

/** The prefix of a repository's manifest revisions (children: algorithms, then hex). */
export function revisionsKey(name: RepositoryName): string {
  return `repositories/${name}/_manifests/revisions`;
}

/** The record of a manifest revision in a repository. */
export function revisionKey(name: RepositoryName, digest: Digest): string {
  return `${revisionsKey(name)}/${digestAlgorithm(digest)}/${digestHex(digest)}`;
}

/** The prefix of a repository's tags. */
export function tagsKey(name: RepositoryName): string {
  return `repositories/${name}/_manifests/tags`;
}

/** The key naming the digest a tag points to. */
export function tagKey(name: RepositoryName, tag: Tag): string {
  return `${tagsKey(name)}/${tag}`;
}

/** The prefix listing the referrers of a subject digest. */
export function referrersKey(name: RepositoryName, subject: Digest): string {
  return `repositories/${name}/_referrers/${digestAlgorithm(subject)}/${digestHex(subject)}`;
}

/** The descriptor of one referrer of a subject. */
export function referrerKey(name: RepositoryName, subject: Digest, referrer: Digest): string {
  return `${referrersKey(name, subject)}/${referrer.replace(":", "-")}`;
}
