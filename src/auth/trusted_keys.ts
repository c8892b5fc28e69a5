/**
 * The public keys of an external token issuer (`auth.token.rootcertbundle`, `auth.token.jwks`),
 * and which of them signed a token, as CNCF Distribution decides it (`registry/auth/token`):
 *
 * - an `x5c` header: the chain must verify up to a certificate of the bundle (each certificate's
 *   signature by the next, issuers marked as CAs, every certificate within its validity dates);
 *   the leaf's key is the signing key;
 * - else a `jwk` header: it must be one of the trusted keys (or carry an `x5c` chain that
 *   verifies as above, whose leaf is that key);
 * - else a `kid` header: it must name a trusted key.
 *
 * A key is named by its libtrust key ID (Distribution 2.x: SHA-256 of the DER
 * SubjectPublicKeyInfo, the first 240 bits in base32, 12 groups of 4 joined by `:`), by its RFC
 * 7638 JWK thumbprint (Distribution 3), and for a JWKS key also by its own `kid`. Certificates
 * are parsed and checked with `node:crypto`'s `X509Certificate`.
 */

import {
  createHash,
  createPublicKey,
  type JsonWebKey as NodeJwk,
  X509Certificate,
} from "node:crypto";
import { FOREIGN_ALGORITHMS, type JWK, publicPart, thumbprintOf, type TokenHeader } from "./jwt.ts";

/** The most certificates an `x5c` chain may hold. */
const MAX_CHAIN = 10;
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** A trusted public key (with `alg` when a JWKS key names it), and where it came from. */
export interface TrustedKey {
  readonly jwk: JWK;
  readonly from: string;
}

/** The libtrust key ID of a DER SubjectPublicKeyInfo (Distribution 2.x's `kid`). */
export function libtrustKeyId(spki: Uint8Array): string {
  const hash = createHash("sha256").update(spki).digest().subarray(0, 30);
  let bits = 0;
  let value = 0;
  let text = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      text += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= 0xff;
  }
  return text.match(/.{1,4}/g)!.join(":");
}

/** The trusted keys and root certificates of an external issuer; immutable. */
export class TrustStore {
  readonly #byId: ReadonlyMap<string, TrustedKey>;
  readonly #byKey: ReadonlyMap<string, TrustedKey>;
  readonly #roots: readonly X509Certificate[];

  constructor(
    byId: ReadonlyMap<string, TrustedKey>,
    byKey: ReadonlyMap<string, TrustedKey>,
    roots: readonly X509Certificate[],
  ) {
    this.#byId = byId;
    this.#byKey = byKey;
    this.#roots = roots;
  }

  /** How many distinct keys are trusted. */
  get size(): number {
    return this.#byKey.size;
  }

  /** How many root certificates `x5c` chains may end in. */
  get roots(): number {
    return this.#roots.length;
  }

  /** The trusted public key that signed a token with `header`; throws when there is none. */
  resolve(header: TokenHeader, now: Date = new Date()): JWK {
    if (header.x5c !== undefined) return this.#chainKey(header.x5c, now);
    if (header.jwk !== undefined) {
      const jwk = header.jwk as JWK & { x5c?: unknown };
      if (typeof jwk !== "object" || jwk === null) throw new Error("Malformed jwk header");
      if (jwk.x5c !== undefined) {
        const leaf = this.#chainKey(jwk.x5c, now);
        if (canonical(leaf) !== canonical(jwk)) {
          throw new Error("The jwk header is not the key of its certificate chain");
        }
        return leaf;
      }
      const trusted = this.#byKey.get(canonical(jwk));
      if (trusted === undefined) throw new Error("The jwk header is not a trusted key");
      return trusted.jwk;
    }
    if (typeof header.kid === "string") {
      const trusted = this.#byId.get(header.kid);
      if (trusted === undefined) throw new Error("The kid names no trusted key");
      return trusted.jwk;
    }
    throw new Error("The token names no signing key");
  }

  /** The leaf key of an `x5c` chain that verifies up to a root certificate. */
  #chainKey(x5c: unknown, now: Date): JWK {
    if (!Array.isArray(x5c) || x5c.length === 0 || x5c.length > MAX_CHAIN) {
      throw new Error("Malformed x5c chain");
    }
    const chain = x5c.map((item) => {
      if (typeof item !== "string" || !/^[A-Za-z0-9+/]+={0,2}$/.test(item)) {
        throw new Error("Malformed x5c certificate");
      }
      return new X509Certificate(Uint8Array.from(atob(item), (c) => c.charCodeAt(0)));
    });
    for (let i = 0; i < chain.length; i++) {
      const cert = chain[i];
      checkDates(cert, now);
      if (i > 0 && !cert.ca) throw new Error("An x5c issuer is not a CA");
      if (this.#roots.some((root) => root.fingerprint256 === cert.fingerprint256)) {
        return keyOfCert(chain[0]);
      }
      const root = this.#roots.find((r) => r.ca && cert.checkIssued(r) && cert.verify(r.publicKey));
      if (root !== undefined) {
        checkDates(root, now);
        return keyOfCert(chain[0]);
      }
      const next = chain[i + 1];
      if (next === undefined || !cert.checkIssued(next) || !cert.verify(next.publicKey)) {
        throw new Error("The x5c chain does not end in the root certificate bundle");
      }
    }
    throw new Error("The x5c chain does not end in the root certificate bundle");
  }
}

/**
 * Reads the bundle and the key set (either may be null). Throws one line naming the file when
 * one cannot be read, holds no usable key, or holds something else than public keys.
 */
export async function loadTrustStore(
  bundlePath: string | null,
  jwksPath: string | null,
): Promise<TrustStore> {
  const byId = new Map<string, TrustedKey>();
  const byKey = new Map<string, TrustedKey>();
  const roots: X509Certificate[] = [];
  const add = async (jwk: JWK, from: string, ids: string[], path: string) => {
    const alg = typeof jwk.alg === "string" ? { alg: jwk.alg } : {};
    const key = { jwk: { ...publicPart(jwk), ...alg }, from };
    const spki = createPublicKey({ key: publicPart(jwk) as NodeJwk, format: "jwk" })
      .export({ type: "spki", format: "der" });
    byKey.set(canonical(key.jwk), key);
    for (const id of [libtrustKeyId(spki), await thumbprintOf(key.jwk), ...ids]) {
      const other = byId.get(id);
      if (other !== undefined && canonical(other.jwk) !== canonical(key.jwk)) {
        throw new Error(`${path}: ${from} and ${other.from} have the same key ID ${id}`);
      }
      byId.set(id, key);
    }
  };
  if (bundlePath !== null) {
    const text = await readFile(bundlePath, "token root certificate bundle");
    let count = 0;
    for (const [, type, body] of text.matchAll(PEM_BLOCK)) {
      count++;
      if (type !== "CERTIFICATE") {
        throw new Error(
          `The token root certificate bundle ${bundlePath} holds a ${type} block: only ` +
            "certificates belong there",
        );
      }
      const where = `certificate ${count}`;
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(`-----BEGIN CERTIFICATE-----${body}-----END CERTIFICATE-----`);
      } catch {
        throw new Error(
          `The token root certificate bundle ${bundlePath}: ${where} is not a valid certificate`,
        );
      }
      roots.push(cert);
      await add(
        keyOfCertFor(cert, bundlePath, where),
        `${where} (${subjectOf(cert)})`,
        [],
        bundlePath,
      );
    }
    if (count === 0) {
      throw new Error(
        `The token root certificate bundle ${bundlePath} holds no PEM certificate`,
      );
    }
  }
  if (jwksPath !== null) {
    const text = await readFile(jwksPath, "token JWKS file");
    let set: unknown;
    try {
      set = JSON.parse(text);
    } catch {
      throw new Error(`The token JWKS file ${jwksPath} is not JSON`);
    }
    const keys = (set as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys)) {
      throw new Error(
        `The token JWKS file ${jwksPath} is not a JSON Web Key Set ({"keys": [...]})`,
      );
    }
    let usable = 0;
    for (const [i, item] of keys.entries()) {
      const where = `key ${i + 1}`;
      const bad = (why: string) => new Error(`The token JWKS file ${jwksPath}: ${where} ${why}`);
      if (typeof item !== "object" || item === null || Array.isArray(item)) {
        throw bad("is not a JSON Web Key");
      }
      const jwk = item as JWK;
      if (jwk.kty === "oct") throw bad("is a symmetric (oct) key: only public keys are trusted");
      if (PRIVATE_MEMBERS.some((m) => m in jwk)) {
        throw bad("holds private key members: give the public keys only");
      }
      if (jwk.use !== undefined && jwk.use !== "sig") continue; // an encryption key
      if (jwk.kid !== undefined && typeof jwk.kid !== "string") {
        throw bad("has a kid that is not text");
      }
      if (jwk.alg !== undefined && !FOREIGN_ALGORITHMS.includes(jwk.alg)) {
        throw bad(
          `has alg ${JSON.stringify(jwk.alg)}: accepted are ${FOREIGN_ALGORITHMS.join(", ")}`,
        );
      }
      if (
        !(jwk.kty === "RSA" || jwk.kty === "EC" || (jwk.kty === "OKP" && jwk.crv === "Ed25519"))
      ) {
        throw bad("is not an RSA, EC or Ed25519 public key");
      }
      try {
        await add(
          jwk,
          jwk.kid ? `${where} (kid ${jwk.kid})` : where,
          jwk.kid ? [jwk.kid] : [],
          jwksPath,
        );
      } catch (error) {
        if (error instanceof Error && error.message.startsWith(jwksPath)) throw error;
        throw bad("is not a valid public key");
      }
      usable++;
    }
    if (usable === 0) throw new Error(`The token JWKS file ${jwksPath} holds no signing key`);
  }
  return new TrustStore(byId, byKey, roots);
}

async function readFile(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot read the ${what} ${path}: ${reason.split("\n")[0]}`);
  }
}

/** A JWK's public members as one string, for comparing keys. */
function canonical(jwk: JWK): string {
  return JSON.stringify(publicPart(jwk), Object.keys(publicPart(jwk)).sort());
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ", ");
}

function checkDates(cert: X509Certificate, now: Date): void {
  const dated = cert as X509Certificate & { validFromDate?: Date; validToDate?: Date };
  const from = dated.validFromDate ?? new Date(cert.validFrom);
  const to = dated.validToDate ?? new Date(cert.validTo);
  if (!(now >= from && now <= to)) {
    throw new Error("An x5c certificate is outside its validity dates");
  }
}

/** The public key of a certificate as a JWK (RSA, EC or Ed25519). */
function keyOfCert(cert: X509Certificate): JWK {
  const type = cert.publicKey.asymmetricKeyType;
  if (type !== "rsa" && type !== "ec" && type !== "ed25519") {
    throw new Error(`Unsupported certificate key type ${type}`);
  }
  return cert.publicKey.export({ format: "jwk" }) as JWK;
}

function keyOfCertFor(cert: X509Certificate, path: string, where: string): JWK {
  try {
    return keyOfCert(cert);
  } catch {
    throw new Error(
      `The token root certificate bundle ${path}: ${where} has a key that is not RSA, EC or ` +
        "Ed25519",
    );
  }
}
