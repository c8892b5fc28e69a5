/**
 * Parsers for path and query values: repository names, tags, references, upload ids and
 * pagination. Each returns a branded value or throws the OCI error the client should see.
 */

import { isDigest } from "../digest/digest.ts";
import { RegistryError } from "../errors.ts";
import type { Reference, RepositoryName, Tag, UploadId } from "../types/oci.ts";

// distribution-spec name grammar; components start with [a-z0-9], so they can never
// collide with the storage layer's `_layers`/`_manifests` folders.
const COMPONENT = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Longest accepted repository name (the spec bounds `host/name` at 255 characters). */
export const MAX_NAME_LENGTH = 255;
/** Largest accepted page size `n`. */
export const MAX_PAGE_SIZE = 10_000;

function quote(value: string): string {
  return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
}

/** Whether a string is a valid repository name. */
export function isRepositoryName(value: string): value is RepositoryName {
  return value.length <= MAX_NAME_LENGTH && NAME_RE.test(value);
}

/** Parses a repository name; throws NAME_INVALID. */
export function parseRepositoryName(value: string): RepositoryName {
  if (!isRepositoryName(value)) {
    throw new RegistryError("NAME_INVALID", `Invalid repository name ${quote(value)}`, {
      detail: { name: value.slice(0, 300) },
    });
  }
  return value;
}

/** Whether a string is a valid tag. */
export function isTag(value: string): value is Tag {
  return TAG_RE.test(value);
}

/** Parses a manifest reference (tag or digest); throws MANIFEST_INVALID-free 400s by kind. */
export function parseReference(value: string): Reference {
  if (value.includes(":")) {
    if (!isDigest(value)) {
      throw new RegistryError("DIGEST_INVALID", `Invalid digest reference ${quote(value)}`, {
        detail: { reference: value.slice(0, 300) },
      });
    }
    return { kind: "digest", digest: value };
  }
  if (!isTag(value)) {
    throw new RegistryError("MANIFEST_INVALID", `Invalid tag ${quote(value)}`, {
      detail: { tag: value.slice(0, 300) },
      status: 400,
    });
  }
  return { kind: "tag", tag: value };
}

/** Parses an upload id; an id that is not ours is simply unknown (404 BLOB_UPLOAD_UNKNOWN). */
export function parseUploadId(value: string): UploadId {
  if (!UUID_RE.test(value)) {
    throw new RegistryError("BLOB_UPLOAD_UNKNOWN", `Unknown upload ${quote(value)}`, {
      detail: { uuid: value.slice(0, 100) },
    });
  }
  return value as UploadId;
}

/** A page request: at most `n` items strictly after `last`. */
export interface Page {
  readonly n: number | null;
  readonly last: string | null;
}

/** Parses `n` and `last` query parameters; throws a 400 naming the bad value. */
export function parsePage(params: URLSearchParams): Page {
  const rawN = params.get("n");
  let n: number | null = null;
  if (rawN !== null) {
    if (!/^[0-9]{1,9}$/.test(rawN)) {
      throw new RegistryError(
        "UNSUPPORTED",
        `Invalid page size n=${quote(rawN)}: expected 0 or more`,
        {
          status: 400,
          detail: { n: rawN.slice(0, 100) },
        },
      );
    }
    n = Math.min(Number(rawN), MAX_PAGE_SIZE);
  }
  const last = params.get("last");
  return { n, last: last === null || last === "" ? null : last };
}
