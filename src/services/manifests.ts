/**
 * Manifest semantics: store exact bytes by digest as a repository revision, move tags,
 * index referrers by subject, resolve references, and delete tags or revisions.
 */

import { createHash } from "node:crypto";
import { digestAlgorithm, makeDigest } from "../digest/digest.ts";
import { RegistryError } from "../errors.ts";
import type { BlobStore } from "../storage/blobs.ts";
import type { MetadataStore, RevisionRecord } from "../storage/repositories.ts";
import type { Descriptor, Digest, Manifest, Reference, RepositoryName } from "../types/oci.ts";
import { artifactTypeOf, isExternalLayer, parseManifest } from "./manifest_parse.ts";

/** A resolved manifest: its digest and what was recorded about it. */
export interface ManifestInfo extends RevisionRecord {
  readonly digest: Digest;
}

/** The outcome of a manifest PUT. */
export interface PutResult {
  readonly digest: Digest;
  readonly subject?: Digest;
}

const CACHE_BYTES = 16 * 1024 * 1024;

/** Registry semantics of manifests. */
export class ManifestService {
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;
  readonly #bytes = new Map<Digest, Uint8Array<ArrayBuffer>>();
  #cachedBytes = 0;

  /** Makes the service over its stores. */
  constructor(stores: { blobs: BlobStore; meta: MetadataStore }) {
    this.#blobs = stores.blobs;
    this.#meta = stores.meta;
  }

  /**
   * Validates and stores a manifest under a tag or digest reference. Throws DIGEST_INVALID
   * when a digest reference does not match the body, MANIFEST_INVALID for a malformed body,
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
    const manifest = parseManifest(bytes, body.contentType);
    await this.#checkReferences(name, manifest);
    await this.#blobs.write(digest, bytes);
    const subject = manifest.subject?.digest;
    await this.#meta.putRevision(name, digest, {
      mediaType: manifest.mediaType,
      size: bytes.length,
      ...(subject ? { subject } : {}),
    });
    if (subject) {
      await this.#meta.putReferrer(
        name,
        subject,
        digest,
        referrerDescriptor(manifest, digest, bytes),
      );
    }
    if (reference.kind === "tag") await this.#meta.putTag(name, reference.tag, digest);
    return subject ? { digest, subject } : { digest };
  }

  /** Resolves a reference to a stored revision; throws NAME_UNKNOWN or MANIFEST_UNKNOWN. */
  async resolve(name: RepositoryName, reference: Reference): Promise<ManifestInfo> {
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

  /** Resolves a reference and reads the stored bytes; throws as `resolve`. */
  async get(
    name: RepositoryName,
    reference: Reference,
  ): Promise<ManifestInfo & { bytes: Uint8Array<ArrayBuffer> }> {
    const info = await this.resolve(name, reference);
    const bytes = this.#bytes.get(info.digest) ?? await this.#blobs.read(info.digest);
    if (bytes === null) {
      throw new RegistryError("MANIFEST_UNKNOWN", `Manifest "${info.digest}" has no content`);
    }
    this.#remember(info.digest, bytes);
    return { ...info, bytes };
  }

  /**
   * Deletes a tag (the manifest stays reachable by digest), or a revision with every tag
   * pointing to it and its referrers entry. Throws NAME_UNKNOWN or MANIFEST_UNKNOWN.
   */
  async delete(name: RepositoryName, reference: Reference): Promise<void> {
    if (reference.kind === "tag") {
      await this.resolve(name, reference);
      await this.#meta.deleteTag(name, reference.tag);
      return;
    }
    const info = await this.resolve(name, reference);
    for (const tag of [...((await this.#meta.listTags(name)) ?? [])]) {
      if ((await this.#meta.getTag(name, tag)) === info.digest) {
        await this.#meta.deleteTag(name, tag);
      }
    }
    if (info.subject) await this.#meta.deleteReferrer(name, info.subject, info.digest);
    await this.#meta.deleteRevision(name, info.digest);
  }

  async #checkReferences(name: RepositoryName, manifest: Manifest): Promise<void> {
    const missing = (d: Descriptor, what: string) =>
      new RegistryError(
        "MANIFEST_BLOB_UNKNOWN",
        `Manifest references ${what} "${d.digest}" that is not in repository "${name}"`,
        { detail: { digest: d.digest } },
      );
    if (manifest.kind === "index") {
      for (const child of manifest.manifests) {
        if ((await this.#meta.getRevision(name, child.digest)) === null) {
          throw missing(child, "manifest");
        }
      }
      return;
    }
    for (const blob of [manifest.config, ...manifest.layers]) {
      if (blob !== manifest.config && isExternalLayer(blob)) continue;
      const linked = await this.#meta.hasLayer(name, blob.digest) &&
        (await this.#blobs.size(blob.digest)) !== null;
      if (!linked) throw missing(blob, blob === manifest.config ? "config blob" : "layer");
    }
  }

  #remember(digest: Digest, bytes: Uint8Array<ArrayBuffer>): void {
    if (this.#bytes.has(digest) || bytes.length > CACHE_BYTES / 16) return;
    if (this.#cachedBytes + bytes.length > CACHE_BYTES) {
      this.#bytes.clear();
      this.#cachedBytes = 0;
    }
    this.#bytes.set(digest, bytes);
    this.#cachedBytes += bytes.length;
  }
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
