/**
 * Test helpers for an external token issuer: certificates made with openssl (a root CA, an
 * intermediate CA, a leaf; a self-signed signer; a CA outside the bundle), JWKS keys made with
 * jose, registries trusting them, and tokens signed as an external token server signs them.
 */

import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importPKCS8,
  type JWK,
  SignJWT,
} from "jose";
import type { AuthConfig, TokenAuthConfig } from "../../src/config/mod.ts";
import { DEFAULTS } from "../../src/config/mod.ts";
import { libtrustKeyId } from "../../src/auth/trusted_keys.ts";
import { type MemoryRegistry, memoryRegistry } from "../helpers/registry.ts";
import { TEST_AUTH } from "./helpers.ts";
import { SERVICE } from "./token_helpers.ts";

/** The external token server's realm and issuer name. */
export const EXTERNAL_REALM = "https://auth.example.com/token";
export const EXTERNAL_ISSUER = "auth.example.com";

/** A certificate and its private key. */
export interface Pair {
  readonly certPem: string;
  readonly keyPem: string;
  /** The certificate as an `x5c` entry (standard base64 DER). */
  readonly x5c: string;
  /** The libtrust key ID and the RFC 7638 thumbprint of the certificate's key. */
  readonly libtrustId: string;
  readonly thumbprint: string;
}

/** A temporary folder; disposing removes it. */
export async function tempDir(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "registry-ext-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
const CA_EXT =
  "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature\n";
const LEAF_EXT = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n";
let serial = 1;

async function pairOf(dir: string, name: string): Promise<Pair> {
  const certPem = await Deno.readTextFile(join(dir, `${name}.pem`));
  const keyPem = await Deno.readTextFile(join(dir, `${name}.key`));
  const cert = new X509Certificate(certPem);
  const jwk = cert.publicKey.export({ format: "jwk" }) as JWK;
  return {
    certPem,
    keyPem,
    x5c: btoa(String.fromCharCode(...new Uint8Array(cert.raw))),
    libtrustId: libtrustKeyId(cert.publicKey.export({ type: "spki", format: "der" })),
    thumbprint: await calculateJwkThumbprint(jwk, "sha256"),
  };
}

/** A self-signed certificate (a CA unless `ca` is false) of a new P-256 key. */
export async function selfSigned(dir: string, name: string, ca = true): Promise<Pair> {
  await openssl(dir, [
    ...["req", "-x509", ...EC, "-keyout", `${name}.key`, "-out", `${name}.pem`],
    ...["-subj", `/CN=${name}`, "-days", "2", "-config", "/dev/null"],
    ...["-addext", ca ? "basicConstraints=critical,CA:TRUE" : "basicConstraints=critical,CA:FALSE"],
    ...["-addext", `keyUsage=critical,${ca ? "keyCertSign," : ""}digitalSignature`],
  ]);
  return await pairOf(dir, name);
}

/** A certificate of a new P-256 key issued by `issuer` (a CA when `ca`). */
export async function issued(
  dir: string,
  name: string,
  issuer: string,
  ca: boolean,
): Promise<Pair> {
  await Deno.writeTextFile(join(dir, `${name}.ext`), ca ? CA_EXT : LEAF_EXT);
  await openssl(dir, [
    ...["req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`],
    ...["-config", "/dev/null"],
  ]);
  await openssl(dir, [
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${issuer}.pem`, "-CAkey", `${issuer}.key`],
    ...["-set_serial", String(serial++), "-days", "1", "-extfile", `${name}.ext`],
    ...["-out", `${name}.pem`],
  ]);
  return await pairOf(dir, name);
}

/** The PKI of the tests: a bundle root, its intermediate and leaf, a signer, a stranger CA. */
export interface Pki {
  readonly root: Pair;
  readonly intermediate: Pair;
  readonly leaf: Pair;
  /** A self-signed certificate in the bundle whose key signs `kid` tokens. */
  readonly signer: Pair;
  /** A CA outside the bundle, and a leaf it issued. */
  readonly stranger: Pair;
  readonly strangerLeaf: Pair;
}

/** Makes the test PKI in `dir`. */
export async function makePki(dir: string): Promise<Pki> {
  const root = await selfSigned(dir, "root");
  const intermediate = await issued(dir, "intermediate", "root", true);
  const leaf = await issued(dir, "leaf", "intermediate", false);
  const signer = await selfSigned(dir, "signer", false);
  const stranger = await selfSigned(dir, "stranger");
  const strangerLeaf = await issued(dir, "strangerleaf", "stranger", false);
  return { root, intermediate, leaf, signer, stranger, strangerLeaf };
}

/** Options of a registry trusting an external issuer. */
export interface ExternalOptions {
  /** PEM text of the root certificate bundle (written to a file). */
  readonly bundle?: string;
  /** The JWKS (written to a file). */
  readonly jwks?: { keys: JWK[] };
  /** More token settings (builtin, realm, …). */
  readonly token?: Partial<TokenAuthConfig>;
  /** More auth settings (htpasswdPath, policies, …). */
  readonly auth?: Partial<AuthConfig>;
}

/** A memory registry trusting the external issuer, its key files written in `dir`. */
export async function externalRegistry(
  dir: string,
  options: ExternalOptions,
): Promise<MemoryRegistry> {
  let rootCertBundle: string | null = null;
  let jwks: string | null = null;
  if (options.bundle !== undefined) {
    rootCertBundle = join(dir, `bundle-${crypto.randomUUID()}.pem`);
    await Deno.writeTextFile(rootCertBundle, options.bundle);
  }
  if (options.jwks !== undefined) {
    jwks = join(dir, `jwks-${crypto.randomUUID()}.json`);
    await Deno.writeTextFile(jwks, JSON.stringify(options.jwks));
  }
  return await memoryRegistry({
    config: {
      auth: {
        ...DEFAULTS.auth,
        ...TEST_AUTH,
        htpasswdPath: null,
        ...options.auth,
        token: {
          ...DEFAULTS.auth.token,
          realm: EXTERNAL_REALM,
          service: SERVICE,
          issuer: EXTERNAL_ISSUER,
          rootCertBundle,
          jwks,
          ...options.token,
        },
      },
    },
    auth: { checkIntervalMs: 0 },
  });
}

/** A key pair of `alg` made with jose, and its public JWK (with `kid`, `alg`, `use`). */
export async function jwksKey(
  alg: string,
  kid: string,
): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" };
  return { privateKey: pair.privateKey, jwk };
}

/** The private key of a certificate pair, for `alg`. */
export async function privateKeyOf(pair: Pair, alg = "ES256"): Promise<CryptoKey> {
  return await importPKCS8(pair.keyPem, alg);
}

/** What an external token carries; every field has a default. */
export interface ExternalToken {
  readonly alg?: string;
  readonly header?: Record<string, unknown>;
  readonly claims?: Record<string, unknown>;
  /** Seconds from now. */
  readonly nbf?: number;
  readonly exp?: number;
}

/** A token signed with `key` as the external server signs it (bob, pull+push on team/app). */
export async function externalToken(
  key: CryptoKey | Uint8Array,
  token: ExternalToken = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({
    iss: EXTERNAL_ISSUER,
    aud: SERVICE,
    sub: "bob",
    jti: crypto.randomUUID(),
    access: [{ type: "repository", name: "team/app", actions: ["pull", "push"] }],
    ...token.claims,
  })
    .setProtectedHeader({ alg: token.alg ?? "ES256", typ: "JWT", ...token.header })
    .setIssuedAt(now + Math.min(0, token.nbf ?? 0))
    .setNotBefore(now + (token.nbf ?? 0))
    .setExpirationTime(now + (token.exp ?? 300))
    .sign(key);
}
