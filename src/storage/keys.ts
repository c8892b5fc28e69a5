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
 * auth/token_signing_key.jwk                     the token issuer's generated ES256 key (JWK)
 * events/<endpoint>/<seq>                        queued events of one notification endpoint
 *                                                (a Distribution envelope), until delivered
 * gc/activity/<ms>-<seq>                         a batch of blob touches and manifest pulls
 *                                                (garbage collection's grace and retention)
 * ```
 *
 * An endpoint's folder is its name when that is a plain `[A-Za-z0-9][A-Za-z0-9_-]*` word of at
 * most 64 characters, otherwise `_` and 32 hex digits of the name's SHA-256 (so two names never
 * share a folder); `<seq>` is a 16-digit decimal number, so byte order is delivery order.
 *
 * Names are made of `[a-z0-9]`-initial components, so they never collide with the `_`
 * folders; tags never start with `.`, so the `.tmp-*` files of atomic writes never look
 * like tags.
 */

import { createHash } from "node:crypto";
import { digestAlgorithm, digestHex } from "../digest/digest.ts";
import type { Digest, RepositoryName, Tag, UploadId } from "../types/oci.ts";

/** The files of an upload session. */
export type UploadFile = "data" | "startedat" | "hashstate" | "repository";

/** The top-level areas of a data root. */
export const AREAS = { blobs: "blobs", uploads: "uploads", repositories: "repositories" } as const;

/** The key of the data root's format record. */
export const FORMAT_KEY = "format.json";

/** The key of the built-in token issuer's generated signing key (a private JWK). */
export const TOKEN_SIGNING_KEY = "auth/token_signing_key.jwk";

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

/** The prefix of a repository's layer links (children: algorithms, then hex). */
export function layersKey(name: RepositoryName): string {
  return `repositories/${name}/_layers`;
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

/** The area holding the event queues, one folder per notification endpoint. */
export const EVENTS_AREA = "events";

const PLAIN_ENDPOINT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const SEQ_DIGITS = 16;

/** The prefix of one endpoint's event queue (any endpoint name maps to a valid key part). */
export function eventQueueKey(endpoint: string): string {
  const part = PLAIN_ENDPOINT.test(endpoint)
    ? endpoint
    : `_${createHash("sha256").update(endpoint).digest("hex").slice(0, 32)}`;
  return `${EVENTS_AREA}/${part}`;
}

/** The name of a queued object in its endpoint's folder: the sequence number, zero-padded. */
export function eventSeqName(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`Invalid event sequence ${seq}`);
  return String(seq).padStart(SEQ_DIGITS, "0");
}

/** The key of one queued object of an endpoint. */
export function eventKey(endpoint: string, seq: number): string {
  return `${eventQueueKey(endpoint)}/${eventSeqName(seq)}`;
}

/** The sequence number of a queued object's name, or null for a name the queue never makes. */
export function eventSeqOf(name: string): number | null {
  if (name.length !== SEQ_DIGITS || !/^[0-9]+$/.test(name)) return null;
  const seq = Number(name);
  return Number.isSafeInteger(seq) ? seq : null;
}

/** The area holding garbage collection's activity journal. */
export const ACTIVITY_AREA = "gc/activity";

/**
 * The key of one batch of the activity journal: the time it was written (16 decimal digits of
 * epoch milliseconds, so byte order is time order) and a sequence number within the process.
 */
export function activityKey(ms: number, seq: number): string {
  return `${ACTIVITY_AREA}/${String(Math.max(0, Math.floor(ms))).padStart(16, "0")}-${
    String(seq).padStart(8, "0")
  }`;
}

/** The time an activity batch was written, from its name; null for a name we never make. */
export function activityTimeOf(name: string): number | null {
  const m = /^([0-9]{16})-[0-9]{8,}$/.exec(name);
  return m ? Number(m[1]) : null;
}
