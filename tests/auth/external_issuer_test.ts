/**
 * Tokens of an external issuer (`auth.token.rootcertbundle`, `auth.token.jwks`), through the
 * real request pipeline: what is accepted (an `x5c` chain ending in the bundle, a `kid` naming a
 * bundle key by libtrust ID or RFC 7638 thumbprint, a JWKS key, 60 s leeway, the `access` claim
 * granting anonymous pulls and the catalog), and one test per attack (another repository,
 * action, audience or issuer; expired or not yet valid beyond the leeway; `alg: none`; HS256
 * keyed with the public key; a changed payload; a truncated token; a key not in the bundle; an
 * `x5c` chain not ending in the bundle; the built-in issuer's token when only the external one
 * is trusted).
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { SignJWT } from "jose";
import { randomKey, signToken } from "../../src/auth/jwt.ts";
import type { MemoryRegistry } from "../helpers/registry.ts";
import { pushBlob, randomBytes } from "../helpers/registry.ts";
import { basic, USERS } from "./helpers.ts";
import {
  EXTERNAL_ISSUER,
  EXTERNAL_REALM,
  externalRegistry,
  externalToken,
  jwksKey,
  makePki,
  privateKeyOf,
  tempDir,
} from "./external_helpers.ts";
import { challengeOf, SERVICE, withToken } from "./token_helpers.ts";

const dir = await Deno.makeTempDir({ prefix: "registry-ext-pki-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const pki = await makePki(dir);
const BUNDLE = pki.root.certPem + pki.signer.certPem;
const leafKey = await privateKeyOf(pki.leaf);
const signerKey = await privateKeyOf(pki.signer);
const chain = { x5c: [pki.leaf.x5c, pki.intermediate.x5c] };

function b64url(value: unknown): string {
  return btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A registry trusting the test bundle (and `more` options). */
async function bundleRegistry(
  more: Omit<Parameters<typeof externalRegistry>[1], "bundle"> = {},
): Promise<MemoryRegistry> {
  return await externalRegistry(dir, { bundle: BUNDLE, ...more });
}

/** GET the tags of team/app with `token`; the status and the challenge's error. */
async function pull(reg: MemoryRegistry, token: string): Promise<[number, string | undefined]> {
  const response = await withToken(reg, token).fetch("/v2/team/app/tags/list");
  await response.body?.cancel();
  return [response.status, challengeOf(response)?.error];
}

/** Asserts that `token` is refused as invalid on a pull of team/app. */
async function assertInvalid(reg: MemoryRegistry, token: string, what: string): Promise<void> {
  assert.deepEqual(await pull(reg, token), [401, "invalid_token"], what);
}

Deno.test("an x5c chain ending in the bundle: the token's access decides", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain });
  assert.deepEqual(await pull(reg, token), [404, undefined]); // passed auth; no such repository
  const digest = await pushBlob(withToken(reg, token), "team/app", randomBytes(100));
  const head = await withToken(reg, token).fetch(`/v2/team/app/blobs/${digest}`, {
    method: "HEAD",
  });
  assert.equal(head.status, 200);
});

Deno.test("the bundle certificate itself in x5c is accepted", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(signerKey, { header: { x5c: [pki.signer.x5c] } });
  assert.deepEqual(await pull(reg, token), [404, undefined]);
});

Deno.test("a kid naming a bundle key by libtrust ID or by RFC 7638 thumbprint is accepted", async () => {
  await using reg = await bundleRegistry();
  for (const kid of [pki.signer.libtrustId, pki.signer.thumbprint]) {
    const token = await externalToken(signerKey, { header: { kid } });
    assert.deepEqual(await pull(reg, token), [404, undefined], kid);
  }
});

Deno.test("libtrust key IDs match Go's computation (Distribution 2.x kid)", async () => {
  const { libtrustKeyId } = await import("../../src/auth/trusted_keys.ts");
  const fixtures = new URL("../fixtures/auth/", import.meta.url);
  const expected: Record<string, string> = {
    "libtrust_rsa.pem": "KGWQ:PEBR:V6GD:KY6Z:ME6N:LYFH:3IZS:RJPA:ND4R:KG5S:YKHV:EXJV",
    "libtrust_ec.pem": "PZYS:4VR7:ESZJ:WCIF:RE25:BXDJ:FN42:BOGD:DREQ:7CBA:EG7W:AU7O",
  };
  for (const [name, id] of Object.entries(expected)) {
    const cert = new X509Certificate(await Deno.readTextFile(new URL(name, fixtures)));
    assert.equal(libtrustKeyId(cert.publicKey.export({ type: "spki", format: "der" })), id);
  }
});

Deno.test("a jwk header must be a bundle key", async () => {
  await using reg = await bundleRegistry();
  const publicJwk = new X509Certificate(pki.signer.certPem).publicKey.export({ format: "jwk" });
  const good = await externalToken(signerKey, { header: { jwk: publicJwk } });
  assert.deepEqual(await pull(reg, good), [404, undefined]);
  const stranger = await privateKeyOf(pki.strangerLeaf);
  const strangerJwk = new X509Certificate(pki.strangerLeaf.certPem).publicKey.export({
    format: "jwk",
  });
  await assertInvalid(reg, await externalToken(stranger, { header: { jwk: strangerJwk } }), "jwk");
});

Deno.test("JWKS keys (ES256, RS256, PS256, EdDSA) by kid or thumbprint are accepted", async () => {
  const keys = [
    await jwksKey("ES256", "es"),
    await jwksKey("RS256", "rs"),
    await jwksKey("PS256", "ps"),
    await jwksKey("EdDSA", "ed"),
  ];
  await using reg = await externalRegistry(dir, { jwks: { keys: keys.map((k) => k.jwk) } });
  for (const key of keys) {
    const alg = key.jwk.alg!;
    const token = await externalToken(key.privateKey, { alg, header: { kid: key.jwk.kid } });
    assert.deepEqual(await pull(reg, token), [404, undefined], alg);
  }
  const { calculateJwkThumbprint } = await import("jose");
  const { kid: _, alg: __, use: ___, ...bare } = keys[0].jwk;
  const kid = await calculateJwkThumbprint(bare, "sha256");
  const token = await externalToken(keys[0].privateKey, { header: { kid } });
  assert.deepEqual(await pull(reg, token), [404, undefined], "thumbprint");
});

Deno.test("a JWKS key is only good for its own alg", async () => {
  const rs = await jwksKey("RS256", "rs");
  await using reg = await externalRegistry(dir, { jwks: { keys: [rs.jwk] } });
  const { importJWK, exportJWK } = await import("jose");
  const privateJwk = await exportJWK(rs.privateKey);
  const ps = await importJWK({ ...privateJwk, alg: "PS256" }, "PS256");
  await assertInvalid(
    reg,
    await externalToken(ps as CryptoKey, { alg: "PS256", header: { kid: "rs" } }),
    "PS256 with an RS256 key",
  );
});

Deno.test("anonymous pull granted by the issuer's access claim works", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(signerKey, {
    header: { kid: pki.signer.libtrustId },
    claims: { sub: "", access: [{ type: "repository", name: "team/app", actions: ["pull"] }] },
  });
  assert.deepEqual(await pull(reg, token), [404, undefined]);
  const push = await withToken(reg, token).fetch("/v2/team/app/blobs/uploads/", {
    method: "POST",
  });
  await push.body?.cancel();
  assert.equal(push.status, 401);
  assert.equal(challengeOf(push)?.error, "insufficient_scope");
  assert.equal(challengeOf(push)?.scope, "repository:team/app:pull,push");
});

Deno.test("the catalog needs registry:catalog:* in the access claim", async () => {
  await using reg = await bundleRegistry();
  const header = { kid: pki.signer.libtrustId };
  const writer = await externalToken(signerKey, { header });
  await pushBlob(withToken(reg, writer), "team/app", randomBytes(10));
  const without = await withToken(reg, writer).fetch("/v2/_catalog");
  await without.body?.cancel();
  assert.equal(without.status, 401);
  assert.equal(challengeOf(without)?.error, "insufficient_scope");
  assert.equal(challengeOf(without)?.scope, "registry:catalog:*");
  const token = await externalToken(signerKey, {
    header,
    claims: { access: [{ type: "registry", name: "catalog", actions: ["*"] }] },
  });
  const response = await withToken(reg, token).fetch("/v2/_catalog");
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { repositories: ["team/app"] });
});

Deno.test("no token, or Basic credentials: 401 with the external realm's Bearer challenge", async () => {
  await using file = await (await import("./helpers.ts")).htpasswdFile();
  await using reg = await bundleRegistry({ auth: { htpasswdPath: file.path } });
  for (const headers of [{}, { authorization: basic("alice", USERS.alice) }] as HeadersInit[]) {
    const response = await reg.fetch("/v2/team/app/tags/list", { headers });
    await response.body?.cancel();
    assert.equal(response.status, 401);
    assert.deepEqual(challengeOf(response), {
      realm: EXTERNAL_REALM,
      service: SERVICE,
      scope: "repository:team/app:pull",
    });
  }
  const token = await reg.fetch("/token?service=" + SERVICE, {
    headers: { authorization: basic("alice", USERS.alice) },
  });
  await token.body?.cancel();
  assert.equal(token.status, 401, "no built-in token endpoint in external mode");
});

// Attacks, one test each.

Deno.test("attack: a token for another repository", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, {
    header: chain,
    claims: { access: [{ type: "repository", name: "team/other", actions: ["pull", "push"] }] },
  });
  assert.deepEqual(await pull(reg, token), [401, "insufficient_scope"]);
});

Deno.test("attack: a token for another action", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain }); // pull, push
  const response = await withToken(reg, token).fetch("/v2/team/app/manifests/latest", {
    method: "DELETE",
  });
  await response.body?.cancel();
  assert.equal(response.status, 401);
  assert.equal(challengeOf(response)?.error, "insufficient_scope");
  assert.equal(challengeOf(response)?.scope, "repository:team/app:delete");
});

Deno.test("attack: a token for another audience", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain, claims: { aud: "other-registry" } });
  await assertInvalid(reg, token, "audience");
});

Deno.test("attack: a token of another issuer", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain, claims: { iss: "evil.example" } });
  await assertInvalid(reg, token, "issuer");
});

Deno.test("attack: an expired token (beyond the 60 s leeway)", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain, nbf: -600, exp: -61 });
  await assertInvalid(reg, token, "expired");
});

Deno.test("attack: a token not yet valid (beyond the 60 s leeway)", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain, nbf: 90, exp: 600 });
  await assertInvalid(reg, token, "not yet valid");
});

Deno.test("within the 60 s leeway, expired and not-yet-valid tokens are accepted", async () => {
  await using reg = await bundleRegistry();
  const late = await externalToken(leafKey, { header: chain, nbf: -600, exp: -30 });
  assert.deepEqual(await pull(reg, late), [404, undefined], "expired 30 s ago");
  const early = await externalToken(leafKey, { header: chain, nbf: 30, exp: 600 });
  assert.deepEqual(await pull(reg, early), [404, undefined], "valid in 30 s");
});

Deno.test("attack: a token without exp", async () => {
  await using reg = await bundleRegistry();
  const token = await new SignJWT({
    iss: EXTERNAL_ISSUER,
    aud: SERVICE,
    sub: "bob",
    access: [{ type: "repository", name: "team/app", actions: ["pull"] }],
  }).setProtectedHeader({ alg: "ES256", kid: pki.signer.libtrustId }).sign(signerKey);
  await assertInvalid(reg, token, "no exp");
});

Deno.test("attack: alg none", async () => {
  await using reg = await bundleRegistry();
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: EXTERNAL_ISSUER,
    aud: SERVICE,
    sub: "bob",
    nbf: now,
    exp: now + 300,
    access: [{ type: "repository", name: "team/app", actions: ["pull"] }],
  };
  for (const header of [{ alg: "none", kid: pki.signer.libtrustId }, { alg: "none", ...chain }]) {
    await assertInvalid(reg, `${b64url(header)}.${b64url(claims)}.`, "none");
    await assertInvalid(reg, `${b64url(header)}.${b64url(claims)}`, "none, two parts");
  }
});

Deno.test("attack: HS256 keyed with the public key's bytes", async () => {
  await using reg = await bundleRegistry();
  const cert = new X509Certificate(pki.signer.certPem);
  const secrets = [
    new TextEncoder().encode(pki.signer.certPem),
    new TextEncoder().encode(cert.publicKey.export({ type: "spki", format: "pem" }) as string),
    new Uint8Array(cert.publicKey.export({ type: "spki", format: "der" })),
  ];
  for (const secret of secrets) {
    for (const alg of ["HS256", "HS384", "HS512"]) {
      const token = await externalToken(secret, { alg, header: { kid: pki.signer.libtrustId } });
      await assertInvalid(reg, token, alg);
      const x5c = await externalToken(secret, { alg, header: { x5c: [pki.signer.x5c] } });
      await assertInvalid(reg, x5c, `${alg} x5c`);
    }
  }
});

Deno.test("attack: a changed payload", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(signerKey, {
    header: { kid: pki.signer.libtrustId },
    claims: { access: [{ type: "repository", name: "team/other", actions: ["pull"] }] },
  });
  const [header, payload, signature] = token.split(".");
  const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
  claims.access = [{ type: "repository", name: "team/app", actions: ["pull", "push", "delete"] }];
  await assertInvalid(reg, `${header}.${b64url(claims)}.${signature}`, "changed payload");
});

Deno.test("attack: a truncated token", async () => {
  await using reg = await bundleRegistry();
  const token = await externalToken(leafKey, { header: chain });
  for (const cut of [1, 10, token.length - token.lastIndexOf(".") - 1, token.length / 2]) {
    await assertInvalid(reg, token.slice(0, token.length - Math.floor(cut)), `cut ${cut}`);
  }
});

Deno.test("attack: a token signed by a key not in the bundle", async () => {
  await using reg = await bundleRegistry();
  const other = await randomKey();
  // its own kid, and the kid of a trusted key (the signature then fails)
  for (const kid of [other.kid, pki.signer.libtrustId, pki.signer.thumbprint]) {
    await assertInvalid(reg, await externalToken(other.privateKey, { header: { kid } }), kid);
  }
  // no key named at all
  await assertInvalid(reg, await externalToken(other.privateKey), "no kid");
});

Deno.test("attack: an x5c chain not ending in the bundle", async () => {
  await using reg = await bundleRegistry();
  const strangerKey = await privateKeyOf(pki.strangerLeaf);
  const cases: [string, string[], CryptoKey][] = [
    ["a stranger CA's chain", [pki.strangerLeaf.x5c, pki.stranger.x5c], strangerKey],
    ["a stranger leaf alone", [pki.strangerLeaf.x5c], strangerKey],
    ["the leaf without its intermediate", [pki.leaf.x5c], leafKey],
    ["a stranger leaf claiming the bundle root", [pki.strangerLeaf.x5c, pki.root.x5c], strangerKey],
    ["a non-CA leaf as the issuer", [pki.strangerLeaf.x5c, pki.leaf.x5c], strangerKey],
  ];
  for (const [what, x5c, key] of cases) {
    await assertInvalid(reg, await externalToken(key, { header: { x5c } }), what);
  }
  // a good chain, but the token is signed by another key than the leaf's
  const wrongSigner = await externalToken(strangerKey, { header: chain });
  await assertInvalid(reg, wrongSigner, "signed by another key than the leaf's");
});

Deno.test("attack: the built-in issuer's token when only the external one is trusted", async () => {
  await using reg = await bundleRegistry();
  const builtinKey = await randomKey(); // what the built-in issuer would sign with
  const token = await signToken(
    builtinKey,
    { access: [{ type: "repository", name: "team/app", actions: ["pull", "push"] }] },
    { issuer: EXTERNAL_ISSUER, audience: SERVICE, subject: "bob", typ: "JWT", expiresInS: 300 },
  );
  await assertInvalid(reg, token, "built-in token");
});

Deno.test("with builtin on as well, both issuers' tokens are accepted", async () => {
  await using file = await (await import("./helpers.ts")).htpasswdFile();
  await using reg = await bundleRegistry({
    auth: { htpasswdPath: file.path },
    token: { builtin: true },
  });
  const query = `service=${SERVICE}&scope=repository:team/app:pull`;
  const answer = await reg.fetch(`/token?${query}`, {
    headers: { authorization: basic("bob", USERS.bob) },
  });
  assert.equal(answer.status, 200);
  const own = ((await answer.json()) as { token: string }).token;
  const foreign = await externalToken(leafKey, { header: chain });
  for (const round of ["checked", "remembered"]) {
    assert.deepEqual(await pull(reg, own), [404, undefined], `built-in, ${round}`);
    assert.deepEqual(await pull(reg, foreign), [404, undefined], `external, ${round}`);
  }
  const at = own.length - 10; // inside the signature, away from the last character's spare bits
  const forged = own.slice(0, at) + (own[at] === "A" ? "B" : "A") + own.slice(at + 1);
  await assertInvalid(reg, forged, "a remembered token with one signature character changed");
  const challenge = await reg.fetch("/v2/team/app/tags/list");
  await challenge.body?.cancel();
  assert.equal(challengeOf(challenge)?.realm, EXTERNAL_REALM);
});

Deno.test("reloading the key files trusts the new keys; a bad file keeps the old ones", async () => {
  await using tmp = await tempDir();
  const path = `${tmp.dir}/bundle.pem`;
  await Deno.writeTextFile(path, pki.signer.certPem);
  await using reg = await externalRegistry(tmp.dir, { token: { rootCertBundle: path } });
  const bySigner = await externalToken(signerKey, { header: { kid: pki.signer.libtrustId } });
  const byLeaf = await externalToken(leafKey, { header: chain });
  assert.deepEqual(await pull(reg, bySigner), [404, undefined]);
  await assertInvalid(reg, byLeaf, "root not yet trusted");
  await Deno.writeTextFile(path, "not a certificate");
  assert.equal(await reg.app.reloadTokenKeys!(), false);
  assert.deepEqual(await pull(reg, bySigner), [404, undefined], "old keys kept");
  assert.ok(reg.logs.some((l) => l.includes("token key reload failed")));
  await Deno.writeTextFile(path, pki.root.certPem);
  assert.equal(await reg.app.reloadTokenKeys!(), true);
  await assertInvalid(reg, bySigner, "signer no longer trusted");
  assert.deepEqual(await pull(reg, byLeaf), [404, undefined], "root now trusted");
});

Deno.test("unusable key files or a missing realm stop the start with one line", async () => {
  await using tmp = await tempDir();
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(`${tmp.dir}/${name}`, text);
    return `${tmp.dir}/${name}`;
  };
  const rs = await jwksKey("RS256", "rs");
  const { exportJWK } = await import("jose");
  const cases: [Parameters<typeof externalRegistry>[1], RegExp][] = [
    [
      { bundle: BUNDLE, token: { realm: null } },
      /^auth\.token\.realm is needed with auth\.token\.rootcertbundle or auth\.token\.jwks/,
    ],
    [
      { token: { rootCertBundle: `${tmp.dir}/missing.pem` } },
      /^Cannot read the token root certificate bundle .*missing\.pem: /,
    ],
    [{ bundle: "no certificate here\n" }, /^The token root certificate bundle .* holds no PEM/],
    [
      { bundle: BUNDLE + pki.signer.keyPem },
      /^The token root certificate bundle .* holds a PRIVATE KEY block/,
    ],
    [
      { bundle: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" },
      /certificate 1 is not a valid certificate/,
    ],
    [{ token: { jwks: await write("bad.json", "{") } }, /^The token JWKS file .* is not JSON$/],
    [{ jwks: { keys: [] } }, /^The token JWKS file .* holds no signing key$/],
    [
      { jwks: { keys: [{ kty: "oct", k: "c2VjcmV0", kid: "h" }] } },
      /key 1 is a symmetric \(oct\) key/,
    ],
    [
      { jwks: { keys: [{ ...(await exportJWK(rs.privateKey)), kid: "p" }] } },
      /key 1 holds private key members/,
    ],
    [{ jwks: { keys: [{ ...rs.jwk, alg: "HS256" }] } }, /key 1 has alg "HS256"/],
    [{ jwks: { keys: [{ ...rs.jwk, n: "AAAA" }] } }, /key 1 is not a valid public key/],
  ];
  const { StartupError } = await import("../../src/errors.ts");
  for (const [options, message] of cases) {
    await assert.rejects(externalRegistry(tmp.dir, options), (error: Error) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.match(error.message, message);
      assert.ok(!error.message.includes("\n"), error.message);
      return true;
    });
  }
});

Deno.test("an x5c chain is checked against its certificates' validity dates", async () => {
  await using tmp = await tempDir();
  const path = `${tmp.dir}/bundle.pem`;
  await Deno.writeTextFile(path, BUNDLE);
  const { loadTrustStore } = await import("../../src/auth/trusted_keys.ts");
  const store = await loadTrustStore(path, null);
  const header = { alg: "ES256", ...chain };
  const day = 24 * 3600 * 1000;
  assert.equal(store.resolve(header).kty, "EC");
  for (const when of [Date.now() + 3 * day, Date.now() - day]) {
    assert.throws(() => store.resolve(header, new Date(when)), /outside its validity dates/);
  }
  // a kid names a key, not a certificate: no dates (as Distribution)
  assert.equal(store.resolve({ alg: "ES256", kid: pki.signer.libtrustId }).kty, "EC");
});
