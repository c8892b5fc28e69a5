/**
 * The lock keys the services share. Every write to a repository's manifests, tags and links
 * runs under `repositoryLock`; every request on an upload session under `uploadLock`.
 */

import type { RepositoryName, UploadId } from "../types/oci.ts";

/** The lock key of a repository, shared by every service that writes to it. */
export function repositoryLock(name: RepositoryName): string {
  return `repository:${name}`;
}

/** The lock key of an upload session. */
export function uploadLock(id: UploadId): string {
  return `upload:${id}`;
}
