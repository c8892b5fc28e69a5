/**
 * Manifest validation: parses the JSON body of a manifest PUT into a typed manifest and
 * checks the fields each media type requires. Pure: no storage, no HTTP.
 */

import { isDigest } from "../digest/digest.ts";
import { RegistryError } from "../errors.ts";
import {
  type Descriptor,
  type Digest,
  type Manifest,
  MANIFEST_MEDIA_TYPES,
  MediaType,
} from "../types/oci.ts";

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);

/** Whether a manifest media type is an index (OCI index or Docker manifest list). */
export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType);
}

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError("MANIFEST_INVALID", message, detail === undefined ? {} : { detail });
}

/** The media type of a Content-Type header value, without parameters, lowercased. */
export function baseMediaType(contentType: string | null): string | null {
  if (contentType === null) return null;
  const base = contentType.split(";")[0].trim().toLowerCase();
  return base === "" ? null : base;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw invalid(`${where} must be an object of strings`);
  }
  return value as Record<string, string>;
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isRecord(value)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size, artifactType, urls } = value;
  if (typeof mediaType !== "string" || mediaType === "") {
    throw invalid(`${where}.mediaType must be a non-empty string`);
  }
  if (typeof digest !== "string" || !isDigest(digest)) {
    throw invalid(`${where}.digest ${JSON.stringify(String(digest).slice(0, 150))} is invalid`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  if (artifactType !== undefined && typeof artifactType !== "string") {
    throw invalid(`${where}.artifactType must be a string`);
  }
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== "string"))) {
    throw invalid(`${where}.urls must be an array of strings`);
  }
  stringMap(value.annotations, `${where}.annotations`);
  return { ...(value as object), mediaType, digest, size } as Descriptor;
}

/**
 * Throws MANIFEST_INVALID for a body that starts with a UTF-8 byte order mark: the decoder of
 * `parseManifest` drops it, but Go's encoding/json (Docker, containerd) refuses it, so such a
 * manifest could be pushed and not pulled. Checked on upload only: one stored by an earlier
 * version still parses (and keeps what it references).
 */
export function refuseByteOrderMark(bytes: Uint8Array): void {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw invalid("Manifest starts with a byte order mark: JSON without one is expected");
  }
}

/**
 * Parses and validates a manifest body. The media type is the body's `mediaType`, else the
 * Content-Type; they must agree when both are given. Throws MANIFEST_INVALID naming the
 * failing field.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | null): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw invalid(`Manifest is not valid UTF-8 JSON: ${(error as Error).message}`);
  }
  if (!isRecord(json)) throw invalid("Manifest must be a JSON object");
  if (json.schemaVersion !== 2) {
    throw invalid(`Unsupported schemaVersion ${JSON.stringify(json.schemaVersion)}: expected 2`);
  }
  const declared = json.mediaType;
  if (declared !== undefined && typeof declared !== "string") {
    throw invalid("mediaType must be a string");
  }
  const header = baseMediaType(contentType);
  if (declared !== undefined && header !== null && header !== declared) {
    throw invalid(
      `Content-Type "${header}" does not match the manifest's mediaType "${declared}"`,
    );
  }
  const mediaType = declared ?? header ??
    (json.manifests !== undefined ? MediaType.ociIndex : MediaType.ociManifest);
  if (!MANIFEST_MEDIA_TYPES.has(mediaType)) {
    throw invalid(`Unsupported manifest media type "${mediaType}"`, { mediaType });
  }
  if (json.artifactType !== undefined && typeof json.artifactType !== "string") {
    throw invalid("artifactType must be a string");
  }
  const common = {
    schemaVersion: 2 as const,
    mediaType,
    ...(typeof json.artifactType === "string" ? { artifactType: json.artifactType } : {}),
    ...(json.subject !== undefined ? { subject: descriptor(json.subject, "subject") } : {}),
    ...(json.annotations !== undefined
      ? { annotations: stringMap(json.annotations, "annotations") }
      : {}),
  };
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(json.manifests)) throw invalid("manifests must be an array");
    const manifests = json.manifests.map((m, i) => descriptor(m, `manifests[${i}]`));
    return { kind: "index", ...common, manifests };
  }
  if (json.manifests !== undefined) {
    throw invalid(`An image manifest of type "${mediaType}" cannot carry "manifests"`);
  }
  const config = descriptor(json.config, "config");
  if (!Array.isArray(json.layers)) throw invalid("layers must be an array");
  const layers = json.layers.map((l, i) => descriptor(l, `layers[${i}]`));
  return { kind: "manifest", ...common, config, layers };
}

/** The `artifactType` a referrers response reports: the manifest's, else its config's type. */
export function artifactTypeOf(manifest: Manifest): string | undefined {
  if (manifest.artifactType !== undefined) return manifest.artifactType;
  return manifest.kind === "manifest" ? manifest.config.mediaType : undefined;
}

/**
 * What a manifest needs in its repository: an index's child manifests; an image manifest's
 * config and the layers the registry must hold (not foreign ones).
 */
export function referencesOf(manifest: Manifest): Digest[] {
  if (manifest.kind === "index") return manifest.manifests.map((child) => child.digest);
  const layers = manifest.layers.filter((layer) => !isExternalLayer(layer));
  return [manifest.config.digest, ...layers.map((layer) => layer.digest)];
}

/** Whether a layer may live outside the registry (foreign or non-distributable with URLs). */
export function isExternalLayer(layer: Descriptor): boolean {
  return (layer.urls?.length ?? 0) > 0 &&
    (layer.mediaType === MediaType.dockerForeignLayer ||
      layer.mediaType.includes("nondistributable"));
}
