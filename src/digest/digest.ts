/**
 * Digest parsing: `sha256:<64 lowercase hex>` and `sha512:<128 lowercase hex>`.
 */

import { RegistryError } from "../errors.ts";
import type { Digest, DigestAlgorithm } from "../types/oci.ts";

const DIGEST_RE = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

/** Whether a string is a digest this registry accepts. */
export function isDigest(value: string): value is Digest {
  return DIGEST_RE.test(value);
}

/** Parses a digest; throws DIGEST_INVALID naming the value when it is malformed or unsupported. */
export function parseDigest(value: string | null): Digest {
  if (value === null || value === "") {
    throw new RegistryError("DIGEST_INVALID", "Missing digest");
  }
  if (!isDigest(value)) {
    throw new RegistryError(
      "DIGEST_INVALID",
      `Invalid digest ${JSON.stringify(value.slice(0, 200))}: expected sha256:<64 lowercase hex>`,
      { detail: { digest: value.slice(0, 200) } },
    );
  }
  return value;
}

/** The algorithm part of a digest. */
export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.startsWith("sha256:") ? "sha256" : "sha512";
}

/** The encoded (hex) part of a digest. */
export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(":") + 1);
}

/** Builds a digest from an algorithm and a lowercase hex string produced by a hasher. */
export function makeDigest(algorithm: DigestAlgorithm, hex: string): Digest {
  return parseDigest(`${algorithm}:${hex}`);
}
