/**
 * Parsers for path and query values: repository names, tags, references, upload ids and
 * pagination. Each returns a branded value or throws the OCI error the client should see.
 */

import { isDigest } from "../digest/digest.ts";
import { RegistryError } from "../errors.ts";
import { isRepositoryName, isTag, isUploadId } from "../types/names.ts";
import type { Reference, RepositoryName, UploadId } from "../types/oci.ts";
import type { Page } from "../types/spans.ts";

export type { Page };

/** Largest accepted page size `n`. */
export const MAX_PAGE_SIZE = 10_000;

function quote(value: string): string {
  return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
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

/**
 * Parses a manifest reference (tag or digest). A malformed digest throws DIGEST_INVALID. A
 * reference that can be neither throws MANIFEST_INVALID (400) for a write (`forWrite`), and
 * MANIFEST_UNKNOWN (404) for a read or delete: no manifest can exist under it, and the OCI
 * conformance suite expects 404 there.
 */
export function parseReference(value: string, { forWrite = false } = {}): Reference {
  if (value.includes(":")) {
    if (!isDigest(value)) {
      throw new RegistryError("DIGEST_INVALID", `Invalid digest reference ${quote(value)}`, {
        detail: { reference: value.slice(0, 300) },
      });
    }
    return { kind: "digest", digest: value };
  }
  if (!isTag(value)) {
    const detail = { tag: value.slice(0, 300) };
    throw forWrite
      ? new RegistryError("MANIFEST_INVALID", `Invalid tag ${quote(value)}`, { detail })
      : new RegistryError("MANIFEST_UNKNOWN", `No manifest can be named ${quote(value)}`, {
        detail,
      });
  }
  return { kind: "tag", tag: value };
}

/** Parses an upload id; an id that is not ours is simply unknown (404 BLOB_UPLOAD_UNKNOWN). */
export function parseUploadId(value: string): UploadId {
  if (!isUploadId(value)) {
    throw new RegistryError("BLOB_UPLOAD_UNKNOWN", `Unknown upload ${quote(value)}`, {
      detail: { uuid: value.slice(0, 100) },
    });
  }
  return value;
}

/** Parses `n` and `last` query parameters; throws a 400 naming the bad value. */
export function parsePage(params: URLSearchParams): Page {
  const rawN = params.get("n");
  let n: number | null = null;
  if (rawN !== null) {
    if (!/^[0-9]{1,9}$/.test(rawN)) {
      throw new RegistryError(
        "UNSUPPORTED",
        `Invalid page size n=${quote(rawN)}: expected a whole number from 0 to 999999999`,
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
