/**
 * Attacks on token authentication, one test each: tokens for another repository, action,
 * audience or issuer, expired or not yet valid, `alg: none`, HS256 keyed with the public key, a
 * changed payload, a truncated token, another ES256 key; path tricks on the token endpoint;
 * credentials and tokens never in the logs; 2,000 random Bearer headers never a 5xx.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { exportJWK, SignJWT } from "jose";
import { randomKey, type SigningKey } from "../../src/auth/jwt.ts";
import type { MemoryRegistry } from "../helpers/registry.ts";
import { portOf, rawRequest } from "../helpers/raw_http.ts";
import { basic, htpasswdFile, USERS } from "./helpers.ts";
import {
  challengeOf,
  ISSUER,
  registryKey,
  SERVICE,
  tokenFor,
  tokenRegistry,
  tokenTempRegistry,
  withToken,
} from "./token_helpers.ts";

const PULL = [{ type: "repository", name: "team/app", actions: ["pull"] }];
const ALL = [{ type: "repository", name: "team/app", actions: ["pull", "push", "delete"] }];

interface Forged {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  iat?: number;
  nbf?: number;
  exp?: number;
}

/** A token signed with `key` (ES256), with the registry's claims unless overridden. */
async function forge(key: SigningKey, forged: Forged = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({
    iss: ISSUER,
    aud: SERVICE,
    sub: "bob",
    jti: crypto.randomUUID(),
    access: ALL,
    ...forged.claims,
  })
    .setProtectedHeader({ alg: "ES256", typ: "JWT", kid: key.kid, ...forged.header })
    .setIssuedAt(forged.iat ?? now)
    .setNotBefore(forged.nbf ?? now)
    .setExpirationTime(forged.exp ?? now + 300)
    .sign(key.privateKey);
}

function b64url(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Asserts that `token` gets 401 invalid_token on a pull of team/app. */
async function assertRefused(reg: MemoryRegistry, token: string, what: string): Promise<void> {
  const response = await withToken(reg, token).fetch("/v2/team/app/tags/list");
  assert.equal(response.status, 401, what);
  await response.body?.cancel();
  assert.equal(challengeOf(response)?.error, "invalid_token", what);
}

async function setup() {
  const file = await htpasswdFile();
  const reg = await tokenRegistry(file.path);
  const key = await registryKey(reg);
  return {
    reg,
    key,
    async [Symbol.asyncDispose]() {
      await reg[Symbol.asyncDispose]();
      await file[Symbol.asyncDispose]();
    },
  };
}

Deno.test("a forged token with the registry's own key and claims is accepted (control)", async () => {
  await using s = await setup();
  const response = await withToken(s.reg, await forge(s.key)).fetch("/v2/team/app/tags/list");
  assert.equal(response.status, 404);
  await response.body?.cancel();
});

Deno.test("a token for another repository is refused", async () => {
  await using s = await setup();
  const token = await tokenFor(s.reg, "bob", ["repository:team/other:pull,push"]);
  const response = await withToken(s.reg, token).fetch("/v2/team/app/tags/list");
  assert.equal(response.status, 401);
  assert.equal(challengeOf(response)?.error, "insufficient_scope");
  assert.equal(challengeOf(response)?.scope, "repository:team/app:pull");
  await response.body?.cancel();
});

Deno.test("a token for another action is refused", async () => {
  await using s = await setup();
  const token = await forge(s.key, { claims: { access: PULL } });
  const response = await withToken(s.reg, token).fetch(`/v2/team/app/manifests/latest`, {
    method: "DELETE",
  });
  assert.equal(response.status, 401);
  assert.equal(challengeOf(response)?.error, "insufficient_scope");
  assert.equal(challengeOf(response)?.scope, "repository:team/app:delete");
  await response.body?.cancel();
});

Deno.test("a token for another audience is refused", async () => {
  await using s = await setup();
  await assertRefused(s.reg, await forge(s.key, { claims: { aud: "other" } }), "audience");
});

Deno.test("a token of another issuer is refused", async () => {
  await using s = await setup();
  await assertRefused(s.reg, await forge(s.key, { claims: { iss: "evil" } }), "issuer");
});

Deno.test("an expired token is refused (beyond the 60 s leeway)", async () => {
  await using s = await setup();
  const now = Math.floor(Date.now() / 1000);
  const expired = await forge(s.key, { iat: now - 600, nbf: now - 600, exp: now - 90 });
  await assertRefused(s.reg, expired, "expired");
  const withinLeeway = await forge(s.key, { iat: now - 600, nbf: now - 600, exp: now - 30 });
  const response = await withToken(s.reg, withinLeeway).fetch("/v2/team/app/tags/list");
  assert.equal(response.status, 404);
  await response.body?.cancel();
});

Deno.test("a token not yet valid is refused", async () => {
  await using s = await setup();
  const now = Math.floor(Date.now() / 1000);
  await assertRefused(s.reg, await forge(s.key, { nbf: now + 600, exp: now + 900 }), "nbf");
});

Deno.test("an alg: none token is refused", async () => {
  await using s = await setup();
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: ISSUER, aud: SERVICE, sub: "bob", iat: now, nbf: now, exp: now + 300 };
  for (const alg of ["none", "None", "NONE"]) {
    const token = `${b64url({ alg, typ: "JWT", kid: s.key.kid })}.${
      b64url({ ...payload, access: ALL })
    }.`;
    await assertRefused(s.reg, token, alg);
  }
});

Deno.test("an HS256 token keyed with the public key is refused", async () => {
  await using s = await setup();
  const jwk = await exportJWK(s.key.publicKey);
  for (const secret of [JSON.stringify(jwk), jwk.x!, `${jwk.x}${jwk.y}`]) {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ iss: ISSUER, aud: SERVICE, sub: "bob", access: ALL })
      .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: s.key.kid })
      .setIssuedAt(now).setNotBefore(now).setExpirationTime(now + 300)
      .sign(new TextEncoder().encode(secret));
    await assertRefused(s.reg, token, "HS256");
  }
});

Deno.test("a token whose payload was changed is refused", async () => {
  await using s = await setup();
  const token = await tokenFor(s.reg, "carol", ["repository:team/app:pull"]);
  const [header, payload, signature] = token.split(".");
  const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
  claims.access = ALL;
  await assertRefused(s.reg, `${header}.${b64url(claims)}.${signature}`, "payload");
  claims.sub = "alice";
  await assertRefused(s.reg, `${header}.${b64url(claims)}.${signature}`, "sub");
});

Deno.test("a truncated token is refused", async () => {
  await using s = await setup();
  const token = await tokenFor(s.reg, "carol", ["repository:team/app:pull"]);
  for (const cut of [1, 10, 40, token.length - token.lastIndexOf(".")]) {
    await assertRefused(s.reg, token.slice(0, token.length - cut), `cut ${cut}`);
  }
  await assertRefused(s.reg, token.split(".").slice(0, 2).join("."), "two parts");
});

Deno.test("a token signed by another ES256 key is refused (its kid, or ours)", async () => {
  await using s = await setup();
  const other = await randomKey();
  await assertRefused(s.reg, await forge(other), "other kid");
  await assertRefused(s.reg, await forge(other, { header: { kid: s.key.kid } }), "our kid");
  await assertRefused(s.reg, await forge(s.key, { header: { kid: other.kid } }), "wrong kid");
});

Deno.test("path tricks on the token endpoint do not reach registry routes", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenTempRegistry(file.path);
  const auth = basic("alice", USERS.alice);
  for (
    const path of [
      "/token/../v2/",
      "/token/..%2fv2/",
      "/token%2f..",
      "/token%2F..%2Fv2%2F",
      "/token/",
      "/token/../v2/_catalog",
      "/v2/../token",
    ]
  ) {
    const response = await rawRequest(
      portOf(reg.url),
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`,
    );
    assert.ok(response, path);
    assert.ok([400, 401, 404].includes(response.status), `${path}: ${response.status}`);
    assert.ok(!response.body.includes('"token"'), path);
    assert.ok(!response.body.includes("repositories"), path);
  }
  const good = await rawRequest(
    portOf(reg.url),
    `GET /token?scope=repository:team/app:pull HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Authorization: ${auth}\r\nConnection: close\r\n\r\n`,
  );
  assert.equal(good?.status, 200);
});

Deno.test("credentials and tokens never reach the logs", async () => {
  await using s = await setup();
  const response = await s.reg.fetch("/token", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "password",
      username: "bob",
      password: USERS.bob,
      scope: "repository:team/app:pull",
    }).toString(),
  });
  const body = await response.json();
  const token = await tokenFor(s.reg, "bob", ["repository:team/app:pull"]);
  const bad = await s.reg.fetch(`/token?scope=x&account=bob`, {
    headers: { authorization: basic("bob", "wrong-password-123") },
  });
  await bad.body?.cancel();
  for (const t of [token, body.token, "not-a-token-value"]) {
    const r = await withToken(s.reg, t).fetch("/v2/team/app/tags/list?access_token=xyz");
    await r.body?.cancel();
  }
  const logs = s.reg.logs.join("\n");
  assert.ok(logs.includes("/token"));
  for (
    const secret of [
      USERS.bob,
      "wrong-password-123",
      btoa(`bob:${USERS.bob}`),
      token,
      token.split(".")[2],
      body.token,
      body.refresh_token,
      "not-a-token-value",
      "xyz",
    ]
  ) {
    assert.ok(!logs.includes(secret), `secret in logs: ${secret.slice(0, 12)}`);
  }
});

Deno.test("2,000 random Bearer headers answer 401, never a 5xx", async () => {
  await using s = await setup();
  const good = await tokenFor(s.reg, "bob", ["repository:team/app:pull"]);
  const parts = good.split(".");
  const edge = new Set<number>();
  for (let i = 0; i < good.length; i++) {
    if (i + 1 === good.length || good[i + 1] === ".") edge.add(i);
  }
  const segment = fc.oneof(
    fc.string(),
    fc.base64String(),
    fc.constantFrom(...parts),
    fc.uint8Array({ maxLength: 96 }).map((b) => b64url(String.fromCharCode(...b))),
    fc.jsonValue().map((v) => b64url(v)),
  );
  const token = fc.oneof(
    fc.string(),
    fc.array(segment, { minLength: 1, maxLength: 4 }).map((p) => p.join(".")),
    fc.tuple(fc.nat({ max: good.length - 1 }), fc.string({ minLength: 1, maxLength: 1 })).map((
      [i, c],
    ) => good.slice(0, i) + c + good.slice(i + 1)),
  );
  const paths = ["/v2/", "/v2/_catalog", "/v2/team/app/tags/list", "/v2/team/app/blobs/uploads/"];
  await fc.assert(
    fc.asyncProperty(token, fc.constantFrom(...paths), async (t, path) => {
      let response: Response;
      try {
        response = await s.reg.fetch(path, { headers: { authorization: `Bearer ${t}` } });
      } catch {
        return; // a header the Fetch API refuses never reaches the registry
      }
      await response.body?.cancel();
      assert.ok(response.status < 500, `${response.status} for ${path}`);
      // The last character of a base64url segment has unused bits: changing them may not
      // change the bytes, so such a token can still be the good one.
      if (t.length === good.length && [...t].every((c, i) => c === good[i] || edge.has(i))) return;
      assert.equal(response.status, 401, `${response.status} for ${path} ${JSON.stringify(t)}`);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("an absolute-form target's host wins over Host in the challenge's realm (RFC 9112 §3.2.2)", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenTempRegistry(file.path);
  const ask = (target: string) =>
    rawRequest(portOf(reg.url), `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const absolute = await ask("http://registry.example:8080/v2/");
  assert.equal(absolute?.status, 401);
  assert.match(
    absolute!.headers.get("www-authenticate") ?? "",
    /realm="http:\/\/registry\.example:8080\/token"/,
  );
  const origin = await ask("/v2/");
  assert.match(origin!.headers.get("www-authenticate") ?? "", /realm="http:\/\/x\/token"/);
});
