/**
 * The integrity check of a store: reads everything, repairs nothing, and reports each thing
 * that is wrong as a finding (kind, storage key, detail). The kinds:
 *
 * | kind                   | what is wrong                                                     |
 * | ---------------------- | ----------------------------------------------------------------- |
 * | `format`               | `format.json` is unreadable, or of a newer format                 |
 * | `blob-name`            | an object under `blobs/` is not named `<alg>/<hex[0:2]>/<hex>`    |
 * | `blob-digest`          | a blob's bytes do not hash to its name                            |
 * | `tag-invalid`          | a tag does not hold a digest                                      |
 * | `tag-dangling`         | a tag points to a digest that is not a revision of its repository |
 * | `revision-record`      | a revision record is unreadable                                   |
 * | `manifest-missing`     | a revision's manifest bytes are not stored                        |
 * | `manifest-size`        | a revision's record gives another size than its stored bytes      |
 * | `manifest-invalid`     | a revision's stored bytes do not parse as a manifest              |
 * | `index-child-missing`  | an index lists a manifest that is not a revision of the repository |
 * | `blob-unlinked`        | a manifest's config or layer is not linked in the repository      |
 * | `blob-missing`         | a manifest's config or layer has no stored bytes                  |
 * | `descriptor-size`      | a manifest gives a config, layer or child another size than stored |
 * | `link-dangling`        | a layer link names a blob whose bytes are not stored              |
 * | `referrer-invalid`     | a referrer entry is not named by a digest, or not a descriptor    |
 * | `referrer-dangling`    | a referrer entry names no revision with that subject              |
 * | `referrer-missing`     | a revision with a subject has no referrer entry                   |
 * | `upload-incomplete`    | an upload session lacks some of its files                         |
 * | `temp-file`            | a `.tmp-*` file left by a write cut short (filesystem only)       |
 * | `unreadable`           | reading an object failed (the OS error)                           |
 *
 * A blob's digest is verified by streaming it through the SHA-256 of `src/digest/` (SHA-512
 * blobs through node:crypto). While the registry runs (`live`), `.tmp-*` files and upload
 * sessions younger than ten minutes are in-flight writes, not findings, and a write during
 * the check may still show as a finding: run it again to confirm.
 */

import { createHash } from "node:crypto";
import { digestAlgorithm, digestHex, isDigest } from "../digest/digest.ts";
import { createSha256 } from "../digest/sha256.ts";
import { isExternalLayer, parseManifest, referencesOf } from "../services/manifest_parse.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { findTemporaries } from "../storage/drivers/fs_scan.ts";
import { FORMAT_VERSION } from "../storage/format.ts";
import {
  AREAS,
  blobKey,
  FORMAT_KEY,
  layerKey,
  referrersKey,
  repositoryKey,
  revisionKey,
  tagKey,
  tagsKey,
} from "../storage/keys.ts";
import { LocalMetadataStore } from "../storage/metadata/local.ts";
import type { RevisionRecord } from "../storage/metadata/metadata.ts";
import { isTag } from "../types/names.ts";
import type { Digest } from "../types/oci.ts";

/** One thing that is wrong. */
export interface Finding {
  readonly kind: string;
  /** The storage key (relative to the data root) of the object at fault. */
  readonly key: string;
  readonly detail: string;
}

/** What was looked at. */
export interface Checked {
  readonly blobs: number;
  readonly repositories: number;
  readonly manifests: number;
  readonly tags: number;
  readonly links: number;
  readonly referrers: number;
  readonly uploads: number;
}

/** The check's result. */
export interface FsckReport {
  readonly findings: readonly Finding[];
  readonly checked: Checked;
}

/** Options of `checkStore`. */
export interface FsckOptions {
  /** The filesystem data root, to look for `.tmp-*` files (the driver hides them). */
  readonly root?: string;
  /** Whether a registry is running on the store (see the module comment). */
  readonly live?: boolean;
  /** The clock, in epoch milliseconds (tests). */
  readonly now?: () => number;
  /** Force a SHA-256 backend (tests). */
  readonly hashBackend?: "native" | "portable";
}

/** In-flight writes are younger than this while a registry runs. */
const LIVE_GRACE_MS = 10 * 60_000;
const UPLOAD_FILES = ["data", "startedat", "hashstate", "repository"] as const;
const decoder = new TextDecoder();

/**
 * Checks the store behind `driver`. What cannot be read in a blob, a repository or an upload
 * session is an `unreadable` finding; throws only when the top-level folders cannot be listed.
 */
export async function checkStore(
  driver: StorageDriver,
  options: FsckOptions = {},
): Promise<FsckReport> {
  const findings: Finding[] = [];
  const found = (kind: string, key: string, detail: string) => findings.push({ kind, key, detail });
  const now = options.now ?? Date.now;
  const young = (modifiedAt: number) => options.live === true && now() - modifiedAt < LIVE_GRACE_MS;
  const meta = new LocalMetadataStore(driver);
  const checked = {
    blobs: 0,
    repositories: 0,
    manifests: 0,
    tags: 0,
    links: 0,
    referrers: 0,
    uploads: 0,
  };

  await checkFormatRecord(driver, found);

  // Blobs: every object under blobs/ is named by the digest of its bytes.
  const sizes = new Map<Digest, number>();
  for (const algorithm of await driver.list(AREAS.blobs)) {
    for (const prefix of await driver.list(`${AREAS.blobs}/${algorithm}`)) {
      for (const hex of await driver.list(`${AREAS.blobs}/${algorithm}/${prefix}`)) {
        const key = `${AREAS.blobs}/${algorithm}/${prefix}/${hex}`;
        const digest = `${algorithm}:${hex}`;
        if (!isDigest(digest) || blobKey(digest) !== key) {
          found("blob-name", key, "not named <alg>/<first 2 hex>/<hex> by a digest");
          continue;
        }
        checked.blobs++;
        try {
          const hashed = await hashObject(driver, key, digest, options.hashBackend);
          if (hashed === null) continue; // deleted meanwhile
          sizes.set(digest, hashed.size);
          if (hashed.hex !== digestHex(digest)) {
            found("blob-digest", key, `bytes hash to ${algorithm}:${hashed.hex}`);
          }
        } catch (error) {
          found("unreadable", key, errorText(error));
        }
      }
    }
  }
  const stored = (digest: Digest) => sizes.has(digest);

  for (const name of await meta.listRepositories()) {
    checked.repositories++;
    try {
      const revisions = new Map<Digest, RevisionRecord | null>();
      for (const digest of await meta.listRevisions(name)) {
        revisions.set(digest, await meta.getRevision(name, digest));
      }
      const links = new Set(await meta.listLayers(name));

      // Tags.
      for (const tag of await driver.list(tagsKey(name))) {
        if (!isTag(tag)) continue; // not a tag name: nothing the registry made or reads
        checked.tags++;
        const key = tagKey(name, tag);
        const bytes = await driver.get(key);
        if (bytes === null) continue;
        const text = decoder.decode(bytes).trim();
        if (!isDigest(text)) {
          found("tag-invalid", key, `holds ${JSON.stringify(text.slice(0, 80))}`);
        } else if (!revisions.has(text)) {
          found("tag-dangling", key, `points to ${text}, not a revision of ${name}`);
        }
      }

      // Revisions and what they need.
      for (const [digest, record] of revisions) {
        checked.manifests++;
        const key = revisionKey(name, digest);
        if (record === null) {
          found("revision-record", key, "the record is not a readable revision record");
          continue;
        }
        if (!stored(digest)) {
          found("manifest-missing", key, `the manifest bytes ${blobKey(digest)} are not stored`);
          continue;
        }
        if (sizes.get(digest) !== record.size) {
          found(
            "manifest-size",
            key,
            `the record says ${record.size} bytes, ${blobKey(digest)} has ${sizes.get(digest)}`,
          );
        }
        const bytes = await driver.get(blobKey(digest));
        if (bytes === null) continue; // deleted meanwhile
        let manifest;
        try {
          manifest = parseManifest(bytes, record.mediaType);
        } catch (error) {
          found("manifest-invalid", key, errorText(error));
          continue;
        }
        // a size other than the stored one: a client checking sizes fails every pull of it
        const sized = (d: { digest: Digest; size: number }, what: string, size?: number) => {
          if (size !== undefined && size !== d.size) {
            found(
              "descriptor-size",
              key,
              `gives its ${what} ${d.digest} ${d.size} bytes, not ${size}`,
            );
          }
        };
        if (manifest.kind === "index") {
          for (const child of referencesOf(manifest)) {
            if (!revisions.has(child)) {
              found("index-child-missing", key, `lists ${child}, not a revision of ${name}`);
            }
          }
          for (const child of manifest.manifests) {
            sized(child, "child", revisions.get(child.digest)?.size);
          }
        } else {
          for (const blob of [manifest.config, ...manifest.layers]) {
            if (blob !== manifest.config && isExternalLayer(blob)) continue;
            const what = blob === manifest.config ? "config" : "layer";
            if (!links.has(blob.digest)) {
              found("blob-unlinked", key, `its ${what} ${blob.digest} is not linked in ${name}`);
            }
            if (!stored(blob.digest)) {
              found("blob-missing", key, `its ${what} ${blob.digest} has no stored bytes`);
            }
            sized(blob, what, sizes.get(blob.digest));
          }
        }
        if (record.subject !== undefined) {
          const entry = `${referrersKey(name, record.subject)}/${digest.replace(":", "-")}`;
          if ((await driver.stat(entry)) === null) {
            found("referrer-missing", key, `has subject ${record.subject} but no entry ${entry}`);
          }
        }
      }

      // Layer links.
      for (const digest of links) {
        checked.links++;
        if (!stored(digest)) {
          found("link-dangling", layerKey(name, digest), `${digest} has no stored bytes`);
        }
      }

      // Referrer entries: `_referrers/<alg>/<hex>/<alg>-<hex>`.
      const referrersRoot = `${repositoryKey(name)}/_referrers`;
      for (const algorithm of await driver.list(referrersRoot)) {
        for (const hex of await driver.list(`${referrersRoot}/${algorithm}`)) {
          const subject = `${algorithm}:${hex}`;
          const folder = `${referrersRoot}/${algorithm}/${hex}`;
          for (const entry of await driver.list(folder)) {
            checked.referrers++;
            const key = `${folder}/${entry}`;
            const referrer = entry.replace("-", ":");
            if (!isDigest(subject) || !isDigest(referrer)) {
              found("referrer-invalid", key, "not named <alg>/<hex>/<alg>-<hex> by digests");
              continue;
            }
            const record = revisions.get(referrer);
            if (record === undefined) {
              found("referrer-dangling", key, `names ${referrer}, not a revision of ${name}`);
            } else if (record !== null && record.subject !== subject) {
              found("referrer-dangling", key, `${referrer} has no subject ${subject}`);
            }
            const bytes = await driver.get(key);
            if (bytes !== null && !isDescriptorOf(decoder.decode(bytes), referrer)) {
              found("referrer-invalid", key, `not a descriptor of ${referrer}`);
            }
          }
        }
      }
    } catch (error) {
      // A folder that cannot be read (a planted symbolic link, permissions): the rest goes on.
      found("unreadable", repositoryKey(name), errorText(error));
    }
  }

  // Upload sessions.
  for (const id of await driver.list(AREAS.uploads)) {
    checked.uploads++;
    const folder = `${AREAS.uploads}/${id}`;
    let present: Set<string>;
    try {
      present = new Set(await driver.list(folder));
    } catch (error) {
      found("unreadable", folder, errorText(error));
      continue;
    }
    const missing = UPLOAD_FILES.filter((file) => !present.has(file));
    if (missing.length === 0) continue;
    const data = present.has("data") ? await driver.stat(`${folder}/data`) : null;
    if (data !== null && young(data.modifiedAt)) continue; // being created
    found("upload-incomplete", folder, `missing ${missing.join(", ")}`);
  }

  // Temporary files of atomic writes cut short (only the filesystem has them).
  if (options.root !== undefined) {
    for (const temp of await findTemporaries(options.root)) {
      if (young(temp.modifiedAt)) continue;
      found("temp-file", temp.key, `${temp.size} bytes, left by a write cut short`);
    }
  }
  return { findings, checked };
}

/** One line per finding: kind, key, detail. */
export function formatFinding(finding: Finding): string {
  return `${finding.kind} ${finding.key} ${finding.detail}`;
}

async function checkFormatRecord(
  driver: StorageDriver,
  found: (kind: string, key: string, detail: string) => void,
): Promise<void> {
  const bytes = await driver.get(FORMAT_KEY);
  if (bytes === null) return; // a root of an older version: the registry marks it at start
  let format: unknown;
  try {
    format = (JSON.parse(decoder.decode(bytes)) as { format?: unknown }).format;
  } catch {
    format = undefined;
  }
  if (typeof format !== "number" || !Number.isInteger(format) || format < 1) {
    found("format", FORMAT_KEY, "not a format record");
  } else if (format > FORMAT_VERSION) {
    found("format", FORMAT_KEY, `format ${format} is newer than this version's ${FORMAT_VERSION}`);
  }
}

/** Streams an object through its digest's hash; null when it does not exist. */
async function hashObject(
  driver: StorageDriver,
  key: string,
  digest: Digest,
  backend?: "native" | "portable",
): Promise<{ hex: string; size: number } | null> {
  const reader = await driver.read(key);
  if (reader === null) return null;
  if (digestAlgorithm(digest) === "sha256") {
    const hash = createSha256(undefined, backend ? { backend } : undefined);
    for await (const chunk of reader.stream) await hash.updateAsync(chunk);
    return { hex: hash.digestHex(), size: reader.size };
  }
  const hash = createHash(digestAlgorithm(digest));
  for await (const chunk of reader.stream) hash.update(chunk);
  return { hex: hash.digest("hex"), size: reader.size };
}

function isDescriptorOf(text: string, digest: Digest): boolean {
  try {
    const value = JSON.parse(text) as { digest?: unknown; mediaType?: unknown };
    return value.digest === digest && typeof value.mediaType === "string";
  } catch {
    return false;
  }
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}
