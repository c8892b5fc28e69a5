/**
 * JSON Web Tokens, behind this module only (`jose`): the registry's ES256 signing key and the
 * signing and verification of its tokens. The key is a PEM (PKCS #8) file when one is
 * configured, otherwise a key generated on first start and kept in the data root as a JWK
 * (`auth/token_signing_key.jwk`). Tokens name the key by `kid`, the RFC 7638 thumbprint of its
 * public JWK. Verification allows ES256 only (never `none`, never HS*), checks the issuer, the
 * audience, the type and the times (60 s leeway), and refuses a `kid` that is not ours.
 *
 * Tokens of an external issuer (`verifyForeignToken`) may use any of `FOREIGN_ALGORITHMS`
 * (asymmetric only: never `none`, never HS*); the caller resolves the header to a trusted
 * public key, and the key's type must fit the algorithm.
 */

import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  importPKCS8,
  type JWK,
  type JWSHeaderParameters,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from "jose";
import type { StorageDriver } from "../storage/driver.ts";
import { TOKEN_SIGNING_KEY } from "../storage/keys.ts";

export type { JWK };

/** The clock leeway of verification, in seconds. */
export const CLOCK_LEEWAY_S = 60;

/** The only algorithm signed and accepted. */
const ALGORITHM = "ES256";

/** The registry's signing key pair and its key id. */
export interface SigningKey {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** RFC 7638 SHA-256 thumbprint of the public JWK. */
  readonly kid: string;
}

/** What a token says beyond the standard claims. */
export type TokenClaims = Record<string, unknown>;

/** How a token is signed: its issuer, audience, subject, type and lifetime. */
export interface SignOptions {
  readonly issuer: string;
  readonly audience: string;
  readonly subject: string;
  /** The `typ` header (`JWT` for access tokens). */
  readonly typ: string;
  readonly expiresInS: number;
}

/** What verification insists on. */
export interface VerifyOptions {
  readonly issuer: string;
  readonly audience: string;
  readonly typ: string;
}

/**
 * Loads the signing key: from the PEM file at `pemPath` when given, otherwise from the data
 * root through `driver` (generated and stored there on first start). Throws with a sentence
 * naming the file when a PEM cannot be read or is not an ES256 (P-256) private key.
 */
export async function loadSigningKey(
  driver: StorageDriver,
  pemPath: string | null,
): Promise<SigningKey> {
  let privateJwk: JWK;
  if (pemPath !== null) {
    let pem: string;
    try {
      pem = await Deno.readTextFile(pemPath);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`Cannot read the token signing key ${pemPath}: ${reason}`);
    }
    try {
      const key = await importPKCS8(pem, ALGORITHM, { extractable: true });
      privateJwk = await exportJWK(key);
    } catch {
      throw new Error(
        `The token signing key ${pemPath} is not a PKCS #8 PEM of a P-256 (ES256) private key`,
      );
    }
  } else {
    const stored = await driver.get(TOKEN_SIGNING_KEY);
    if (stored !== null) {
      privateJwk = JSON.parse(new TextDecoder().decode(stored)) as JWK;
      const key = await keyOf(privateJwk);
      // Earlier versions wrote the key readable by every local user. At best: on a data root
      // that cannot be written the key stays as it is.
      await driver.makeSecret?.(TOKEN_SIGNING_KEY).catch(() => {});
      return key;
    }
    const pair = await generateKeyPair(ALGORITHM, { extractable: true });
    privateJwk = await exportJWK(pair.privateKey);
    await driver.put(TOKEN_SIGNING_KEY, JSON.stringify(privateJwk), { secret: true });
  }
  return await keyOf(privateJwk);
}

/** A signing key from a private JWK (tests make foreign keys this way). */
export async function keyOf(privateJwk: JWK): Promise<SigningKey> {
  if (privateJwk.kty !== "EC" || privateJwk.crv !== "P-256" || !privateJwk.d) {
    throw new Error("The token signing key is not a P-256 (ES256) private key");
  }
  const { kty, crv, x, y } = privateJwk;
  const publicJwk: JWK = { kty, crv, x, y };
  const privateKey = await importJWK({ ...privateJwk, alg: ALGORITHM }, ALGORITHM);
  const publicKey = await importJWK({ ...publicJwk, alg: ALGORITHM }, ALGORITHM);
  if (!(privateKey instanceof CryptoKey) || !(publicKey instanceof CryptoKey)) {
    throw new Error("The token signing key is not a P-256 (ES256) key");
  }
  return { privateKey, publicKey, kid: await calculateJwkThumbprint(publicJwk, "sha256") };
}

/** A new random key (tests: a key that is not the registry's). */
export async function randomKey(): Promise<SigningKey> {
  const pair = await generateKeyPair(ALGORITHM, { extractable: true });
  return await keyOf(await exportJWK(pair.privateKey));
}

/** Signs `claims` with `key`: iss, sub, aud, iat, nbf, exp and a random jti are added. */
export async function signToken(
  key: SigningKey,
  claims: TokenClaims,
  options: SignOptions,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT(claims)
    .setProtectedHeader({ alg: ALGORITHM, typ: options.typ, kid: key.kid })
    .setIssuer(options.issuer)
    .setSubject(options.subject)
    .setAudience(options.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + options.expiresInS)
    .setJti(crypto.randomUUID())
    .sign(key.privateKey);
}

/** The verified payload of `token`, or null when it is not a valid token of ours. */
export async function verifyToken(
  key: SigningKey,
  token: string,
  options: VerifyOptions,
): Promise<JWTPayload | null> {
  if (token.length > 16 * 1024) return null;
  try {
    const { payload } = await jwtVerify(
      token,
      (header) => {
        if (header.alg !== ALGORITHM || header.kid !== key.kid) {
          throw new Error("Unknown key");
        }
        return key.publicKey;
      },
      {
        algorithms: [ALGORITHM],
        issuer: options.issuer,
        audience: options.audience,
        typ: options.typ,
        clockTolerance: CLOCK_LEEWAY_S,
        requiredClaims: ["iss", "sub", "aud", "exp", "nbf", "iat"],
      },
    );
    return payload;
  } catch {
    return null;
  }
}

/** The algorithms accepted from an external issuer: asymmetric only (no `none`, no HS*). */
export const FOREIGN_ALGORITHMS: readonly string[] = [
  "ES256",
  "ES384",
  "ES512",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "EdDSA",
];

/** The protected header of a token, as the key resolver sees it. */
export type TokenHeader = JWSHeaderParameters;

/** The trusted public JWK that signed a token with `header`; throws when none is trusted. */
export type KeyResolver = (header: TokenHeader) => JWK;

/** What the verification of an external issuer's token insists on. */
export interface ForeignVerifyOptions {
  readonly issuer: string;
  readonly audience: string;
}

/** The RFC 7638 SHA-256 thumbprint of a public JWK. */
export async function thumbprintOf(jwk: JWK): Promise<string> {
  return await calculateJwkThumbprint(jwk, "sha256");
}

/**
 * The verified payload of an external issuer's `token`, or null when it is not valid: an
 * algorithm of `FOREIGN_ALGORITHMS` that fits the key `resolve` returns (and the key's own
 * `alg` when it names one), a good signature, the issuer, the audience (one of `aud`), `exp`
 * (required) and `nbf` with 60 s leeway. `typ` is not checked (Distribution does not either).
 */
export async function verifyForeignToken(
  token: string,
  resolve: KeyResolver,
  options: ForeignVerifyOptions,
): Promise<JWTPayload | null> {
  if (token.length > 64 * 1024) return null;
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const alg = header.alg ?? "";
        if (!FOREIGN_ALGORITHMS.includes(alg)) throw new Error("Algorithm not allowed");
        const jwk = resolve(header);
        if (jwk.alg !== undefined && jwk.alg !== alg) throw new Error("Not the key's algorithm");
        const key = await importJWK(publicPart(jwk), alg);
        if (!(key instanceof CryptoKey) || key.type !== "public") {
          throw new Error("Not a public key");
        }
        return key;
      },
      {
        algorithms: [...FOREIGN_ALGORITHMS],
        issuer: options.issuer,
        audience: options.audience,
        clockTolerance: CLOCK_LEEWAY_S,
        requiredClaims: ["iss", "aud", "exp"],
      },
    );
    return payload;
  } catch {
    return null;
  }
}

/** The public members of a JWK (`kty`, `crv`, `x`, `y`, `n`, `e`), nothing else. */
export function publicPart(jwk: JWK): JWK {
  const out: JWK = {};
  for (const name of ["kty", "crv", "x", "y", "n", "e"] as const) {
    if (typeof jwk[name] === "string") out[name] = jwk[name];
  }
  return out;
}
