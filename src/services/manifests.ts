/**
 * Manifest semantics: store exact bytes by digest as a repository revision, move tags (except
 * immutable ones), index referrers by subject, resolve references, and delete tags or
 * revisions.
 *
 * The consistency guarantee is enforced here: every write of a repository's manifests and
 * tags runs under that repository's lock (the same lock the blob service takes to unlink or
 * mount), so these operations are linearizable per repository and at every instant a tag
 * names a stored revision, a stored index's children are stored, a stored image manifest's
 * blobs are linked (and their bytes exist), and the referrers index lists exactly the stored
 * manifests with that subject. Reads take no lock: each reads objects that are replaced
 * atomically, in an order (tag, then revision, then bytes) that the writers never break.
 */

import { createHash } from "node:crypto";
import { digestAlgorithm, makeDigest } from "../digest/digest.ts";
import { RegistryError } from "../errors.ts";
import type { EventSpec } from "../events/event.ts";
import { type EventSink, NO_EVENTS } from "../events/sink.ts";
import type { Activity } from "../storage/activity.ts";
import type { BlobStore } from "../storage/blobs.ts";
import type { LockManager } from "../storage/lock.ts";
import type { MetadataStore, RevisionRecord } from "../storage/metadata/metadata.ts";
import { SlabCache } from "../storage/slab_cache.ts";
import type { Descriptor, Digest, Manifest, Reference, RepositoryName } from "../types/oci.ts";
import { Dependents } from "./dependents.ts";
import { blobLock, repositoryLock } from "./locks.ts";
import {
  artifactTypeOf,
  isExternalLayer,
  parseManifest,
  referencesOf,
  refuseByteOrderMark,
} from "./manifest_parse.ts";

/** A resolved manifest: its digest and what was recorded about it. */
export interface ManifestInfo extends RevisionRecord {
  readonly digest: Digest;
}

/** The outcome of a manifest PUT. */
export interface PutResult {
  readonly digest: Digest;
  readonly subject?: Digest;
}

/**
 * The cache of manifest bytes (recently read manifests, by digest; each of up to 256 KiB, a
 * sixteenth of it). 4 MiB, not 8: on a store of a million manifests, GETs spread over 100,000 of
 * them were served as fast with either, and the 4 MiB saved keep the registry's peak under its
 * memory target (BENCHMARKS.md, "Memory at 1,000,000 manifests with room to spare").
 */
const CACHE_BYTES = 4 * 1024 * 1024;

/** Registry semantics of manifests. */
export class ManifestService {
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;
  readonly #locks: LockManager;
  readonly #dependents: Dependents;
  readonly #events: EventSink;
  readonly #immutable: (tag: string) => boolean;
  readonly #activity: Activity | null;
  readonly #bytes = new SlabCache<Digest>(CACHE_BYTES);

  /**
   * Makes the service over its stores, the lock manager shared with the blob service, and the
   * sink of its events (default: none), and which tags are immutable (default: none).
   */
  constructor(
    stores: {
      blobs: BlobStore;
      meta: MetadataStore;
      locks: LockManager;
      events?: EventSink;
      activity?: Activity;
    },
    options: { readonly immutableTag?: (tag: string) => boolean } = {},
  ) {
    this.#activity = stores.activity ?? null;
    this.#immutable = options.immutableTag ?? (() => false);
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
    this.#locks = stores.locks;
    this.#dependents = new Dependents(stores);
    this.#events = stores.events ?? NO_EVENTS;
  }

  /**
   * Validates and stores a manifest under a tag or digest reference, and queues its push event
   * durably before returning. Throws DIGEST_INVALID
   * when a digest reference does not match the body, MANIFEST_INVALID for a malformed body or a
   * descriptor whose size is not its content's,
   * MANIFEST_BLOB_UNKNOWN (detail: the digest) for a missing blob or child manifest.
   */
  async put(
    name: RepositoryName,
    reference: Reference,
    body: { bytes: Uint8Array; contentType: string | null },
  ): Promise<PutResult> {
    const { bytes } = body;
    const algorithm = reference.kind === "digest" ? digestAlgorithm(reference.digest) : "sha256";
    const digest = makeDigest(algorithm, createHash(algorithm).update(bytes).digest("hex"));
    if (reference.kind === "digest" && reference.digest !== digest) {
      throw new RegistryError(
        "DIGEST_INVALID",
        `Manifest body has digest "${digest}", not "${reference.digest}"`,
        { detail: { expected: reference.digest, actual: digest } },
      );
    }
    refuseByteOrderMark(bytes);
    const manifest = parseManifest(bytes, body.contentType);
    const subject = manifest.subject?.digest;
    const record: RevisionRecord = {
      mediaType: manifest.mediaType,
      size: bytes.length,
      ...(subject ? { subject } : {}),
      refs: referencesOf(manifest),
    };
    // Linearizable with deletes, unlinks and mounts of the repository: what is checked here
    // cannot go before the revision and its tag are written. The manifest's own bytes are a
    // blob: under its lock (taken first, see locks.ts) a collection cannot delete them between
    // their write and the revision's.
    await this.#locks.run(
      blobLock(digest),
      () =>
        this.#locks.run(repositoryLock(name), async () => {
          if (reference.kind === "tag" && this.#immutable(reference.tag)) {
            const current = await this.#meta.getTag(name, reference.tag);
            if (current !== null && current !== digest) {
              throw new RegistryError(
                "DENIED",
                `Tag "${reference.tag}" of "${name}" is immutable and points to "${current}"`,
                { detail: { tag: reference.tag, digest: current } },
              );
            }
          }
          await this.#checkReferences(name, manifest);
          await this.#blobs.write(digest, bytes);
          await this.#meta.putRevision(name, digest, record);
          // After the revision's write (see locks.ts), before anything else can fail: a stored
          // revision is always touched.
          if (this.#activity) {
            for (const ref of record.refs ?? []) this.#activity.touch(ref);
            this.#activity.touch(digest);
          }
          if (subject) {
            const descriptor = referrerDescriptor(manifest, digest, bytes);
            await this.#meta.putReferrer(name, subject, digest, descriptor);
          }
          if (reference.kind === "tag") await this.#meta.putTag(name, reference.tag, digest);
          await this.#events.record([{
            ...manifestEvent("push", name, digest, record),
            ...(reference.kind === "tag" ? { tag: reference.tag } : {}),
          }]);
        }),
    );
    return subject ? { digest, subject } : { digest };
  }

  /**
   * Resolves a reference to a stored revision (a HEAD: a pull event, as in Distribution);
   * throws NAME_UNKNOWN or MANIFEST_UNKNOWN.
   */
  async resolve(name: RepositoryName, reference: Reference): Promise<ManifestInfo> {
    const info = await this.#resolve(name, reference);
    this.#pulled(name, reference, info);
    return info;
  }

  async #resolve(name: RepositoryName, reference: Reference): Promise<ManifestInfo> {
    const digest = reference.kind === "tag"
      ? await this.#meta.getTag(name, reference.tag)
      : reference.digest;
    const record = digest ? await this.#meta.getRevision(name, digest) : null;
    if (digest && record) return { digest, ...record };
    if (!(await this.#meta.repositoryExists(name))) {
      throw new RegistryError("NAME_UNKNOWN", `Repository "${name}" is not known`, {
        detail: { name },
      });
    }
    throw new RegistryError(
      "MANIFEST_UNKNOWN",
      `Manifest "${
        reference.kind === "tag" ? reference.tag : reference.digest
      }" is not in "${name}"`,
      { detail: reference.kind === "tag" ? { tag: reference.tag } : { digest: reference.digest } },
    );
  }

  /** Resolves a reference and reads the stored bytes (a pull event); throws as `resolve`. */
  async get(
    name: RepositoryName,
    reference: Reference,
  ): Promise<ManifestInfo & { bytes: Uint8Array<ArrayBuffer> }> {
    const info = await this.#resolve(name, reference);
    const bytes = this.#bytes.get(info.digest) ?? await this.#blobs.read(info.digest);
    if (bytes === null) {
      throw new RegistryError("MANIFEST_UNKNOWN", `Manifest "${info.digest}" has no content`);
    }
    this.#bytes.set(info.digest, bytes);
    this.#pulled(name, reference, info);
    return { ...info, bytes };
  }

  #pulled(name: RepositoryName, reference: Reference, info: ManifestInfo): void {
    if (this.#activity) {
      this.#activity.touch(info.digest);
      this.#activity.pulled(name, info.digest);
    }
    this.#events.pulled({
      ...manifestEvent("pull", name, info.digest, info),
      ...(reference.kind === "tag" ? { tag: reference.tag } : {}),
    });
  }

  /**
   * Deletes a tag (the manifest stays reachable by digest), or a revision with every tag
   * pointing to it and its referrers entry. Throws NAME_UNKNOWN or MANIFEST_UNKNOWN, and
   * DENIED (409, detail: the index) for a revision that a stored index of the repository
   * still lists: deleting it would leave that index incomplete. The delete events (a tag
   * delete; or the manifest's, then one per tag it took along, as Distribution sends them)
   * are queued durably before returning.
   */
  delete(name: RepositoryName, reference: Reference): Promise<void> {
    return this.#locks.run(repositoryLock(name), async () => {
      const info = await this.#resolve(name, reference);
      if (reference.kind === "tag") {
        await this.#meta.deleteTag(name, reference.tag);
        await this.#events.record([tagDeleted(name, reference.tag)]);
        return;
      }
      const index = await this.#dependents.first(name, info.digest, "child");
      if (index !== null) {
        throw new RegistryError(
          "DENIED",
          `Manifest "${info.digest}" is listed by index "${index}" in "${name}"; delete the index first`,
          { status: 409, detail: { digest: info.digest, index } },
        );
      }
      // Tags first, then the referrers entry, then the revision: a reader that found a tag
      // finds its revision.
      const untagged: string[] = [];
      for (const tag of [...((await this.#meta.listTags(name)) ?? [])]) {
        if ((await this.#meta.getTag(name, tag)) === info.digest) {
          await this.#meta.deleteTag(name, tag);
          untagged.push(tag);
        }
      }
      if (info.subject) await this.#meta.deleteReferrer(name, info.subject, info.digest);
      await this.#meta.deleteRevision(name, info.digest);
      await this.#events.record([
        { action: "delete", kind: "manifest", repository: name, digest: info.digest },
        ...untagged.map((tag) => tagDeleted(name, tag)),
      ]);
    });
  }

  /**
   * Checks that every blob or child manifest the manifest needs is in the repository, with the
   * size its descriptor gives: a client that trusted a wrong size would fail every pull of it.
   */
  async #checkReferences(name: RepositoryName, manifest: Manifest): Promise<void> {
    const missing = (d: Descriptor, what: string) =>
      new RegistryError(
        "MANIFEST_BLOB_UNKNOWN",
        `Manifest references ${what} "${d.digest}" that is not in repository "${name}"`,
        { detail: { digest: d.digest } },
      );
    const check = (d: Descriptor, what: string, size: number | null) => {
      if (size === null) throw missing(d, what);
      if (size !== d.size) {
        throw new RegistryError(
          "MANIFEST_INVALID",
          `Manifest gives ${what} "${d.digest}" a size of ${d.size} bytes, but it has ${size}`,
          { detail: { digest: d.digest, size: d.size, stored: size } },
        );
      }
    };
    if (manifest.kind === "index") {
      for (const child of manifest.manifests) {
        check(child, "manifest", (await this.#meta.getRevision(name, child.digest))?.size ?? null);
      }
      return;
    }
    for (const blob of [manifest.config, ...manifest.layers]) {
      if (blob !== manifest.config && isExternalLayer(blob)) continue;
      const linked = await this.#meta.hasLayer(name, blob.digest);
      const size = linked ? await this.#blobs.size(blob.digest) : null;
      check(blob, blob === manifest.config ? "config blob" : "layer", size);
    }
  }
}

/** A push or pull event of a manifest revision. */
function manifestEvent(
  action: "push" | "pull",
  name: RepositoryName,
  digest: Digest,
  record: RevisionRecord,
): EventSpec {
  const { mediaType, size } = record;
  return { action, kind: "manifest", repository: name, digest, mediaType, size };
}

/** The delete event of a tag. */
function tagDeleted(name: RepositoryName, tag: string): EventSpec {
  return { action: "delete", kind: "tag", repository: name, tag };
}

/** The descriptor of a referrer as the referrers API lists it. */
function referrerDescriptor(manifest: Manifest, digest: Digest, bytes: Uint8Array): string {
  const artifactType = artifactTypeOf(manifest);
  return JSON.stringify({
    mediaType: manifest.mediaType,
    digest,
    size: bytes.length,
    ...(artifactType !== undefined ? { artifactType } : {}),
    ...(manifest.annotations ? { annotations: manifest.annotations } : {}),
  });
}
