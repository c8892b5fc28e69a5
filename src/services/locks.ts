/**
 * The lock keys the services share. Every write to a repository's manifests, tags and links
 * runs under `repositoryLock`; every request on an upload session under `uploadLock`. Whatever
 * makes a blob's bytes needed (a link made by an upload or a mount, a manifest revision whose
 * bytes are that blob) or deletes them (garbage collection) runs under `blobLock`.
 *
 * Order: a caller holding a repository lock never waits for a blob lock, so a path that needs
 * both takes the blob lock first (upload session, then blob, then repository).
 *
 * Such a path tells the activity tracker of the blob (`Activity.touch`) after its metadata
 * write, still under the blob lock. A collection's mark either reads the write (it reads each
 * repository under its lock, a new one once it is listed) or began before it, and then the
 * touch falls in the collection's window and the sweep, which takes the blob lock, spares the
 * bytes. A touch before the write could fall before the window opened while the write lands
 * after the mark read (or listed) the repository: the bytes would go and the link stay.
 */

import type { Digest, RepositoryName, UploadId } from "../types/oci.ts";

/** The lock key of a repository, shared by every service that writes to it. */
export function repositoryLock(name: RepositoryName): string {
  return `repository:${name}`;
}

/** The lock key of an upload session. */
export function uploadLock(id: UploadId): string {
  return `upload:${id}`;
}

/** The lock key of a blob's bytes (shared by every repository). */
export function blobLock(digest: Digest): string {
  return `blob:${digest}`;
}
