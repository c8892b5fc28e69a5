/**
 * The name grammars of the distribution spec: repository names, tags and upload ids. Pure
 * predicates, so every layer (parsers at the edge, stores walking their keys) shares them.
 */

import type { RepositoryName, Tag, UploadId } from "./oci.ts";

// distribution-spec name grammar; components start with [a-z0-9], so they can never
// collide with the storage layer's `_layers`/`_manifests` folders.
const COMPONENT = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Longest accepted repository name (the spec bounds `host/name` at 255 characters). */
export const MAX_NAME_LENGTH = 255;

/** Whether a string is a valid repository name. */
export function isRepositoryName(value: string): value is RepositoryName {
  return value.length <= MAX_NAME_LENGTH && NAME_RE.test(value);
}

/** Whether a string is a valid tag. */
export function isTag(value: string): value is Tag {
  return TAG_RE.test(value);
}

/** Whether a string is an upload id this registry could have made (a lowercase UUID). */
export function isUploadId(value: string): value is UploadId {
  return UUID_RE.test(value);
}
