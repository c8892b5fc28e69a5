/**
 * OCI types: branded identifiers, media types, descriptors, manifests and error codes.
 *
 * Branded values (`RepositoryName`, `Digest`, `Tag`, `UploadId`) can only be made by the
 * parsers in `src/http/params.ts` and `src/digest/digest.ts`, so the storage layer never
 * sees an unvalidated string.
 */

declare const brand: unique symbol;
/** A string that has passed a named validation. */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A repository name matching the OCI name grammar, e.g. `myorg/team/image`. */
export type RepositoryName = Brand<string, "RepositoryName">;
/** A tag matching `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. */
export type Tag = Brand<string, "Tag">;
/** An upload session id: a lowercase RFC 4122 UUID. */
export type UploadId = Brand<string, "UploadId">;
/** A digest algorithm this registry understands. */
export type DigestAlgorithm = "sha256" | "sha512";
/** A validated digest such as `sha256:<64 lowercase hex>`. */
export type Digest = Brand<string, "Digest">;

/** A manifest reference: a tag or a digest. */
export type Reference =
  | { readonly kind: "tag"; readonly tag: Tag }
  | { readonly kind: "digest"; readonly digest: Digest };

/** Media types the registry treats specially. */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociEmpty: "application/vnd.oci.empty.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerForeignLayer: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  octetStream: "application/octet-stream",
  json: "application/json",
} as const;

/** The manifest media types accepted on PUT. */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
]);

/** A content descriptor as it appears inside manifests. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly artifactType?: string;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Readonly<Record<string, unknown>>;
}

/** An image manifest (OCI or Docker schema2), possibly an artifact. */
export interface ImageManifest {
  readonly kind: "manifest";
  readonly schemaVersion: 2;
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** An image index (OCI) or manifest list (Docker). */
export interface ImageIndex {
  readonly kind: "index";
  readonly schemaVersion: 2;
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly manifests: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** A parsed, validated manifest of either kind. */
export type Manifest = ImageManifest | ImageIndex;

/** The OCI error codes (distribution-spec) plus UNKNOWN for unexpected failures. */
export type ErrorCode =
  | "BLOB_UNKNOWN"
  | "BLOB_UPLOAD_INVALID"
  | "BLOB_UPLOAD_UNKNOWN"
  | "DIGEST_INVALID"
  | "MANIFEST_BLOB_UNKNOWN"
  | "MANIFEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "SIZE_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED"
  | "TOOMANYREQUESTS"
  | "UNKNOWN";
