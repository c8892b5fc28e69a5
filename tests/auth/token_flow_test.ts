/**
 * Token authentication flows: Docker's (ping 401 → GET /token with Basic and scope → Bearer),
 * containerd's POST form with refresh tokens, `docker login` without scope, anonymous tokens,
 * the intersection of asked and allowed access, the catalog scope, the key kept in the data
 * root, and the configuration errors.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadSigningKey } from "../../src/auth/jwt.ts";
import { FsDriver } from "../../src/storage/drivers/fs.ts";
import { MemoryDriver } from "../../src/storage/drivers/memory.ts";
import { StartupError } from "../../src/errors.ts";
import { TOKEN_SIGNING_KEY } from "../../src/storage/keys.ts";
import { ociManifest, pushImageBlobs } from "../helpers/manifests.ts";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import { errorCode, memoryRegistry, type TempRegistry } from "../helpers/registry.ts";
import { fails, file as configFile } from "../config/helpers.ts";
import { as, htpasswdFile, TEST_AUTH, USERS } from "./helpers.ts";
import {
  challengeOf,
  type TokenBody,
  tokenFor,
  tokenRegistry,
  tokenRequest,
  withToken,
} from "./token_helpers.ts";
import { DEFAULTS } from "../../src/config/mod.ts";

async function pushImage(reg: { fetch: TempRegistry["fetch"] }, name: string, tag: string) {
  const parts = await pushImageBlobs(reg as TempRegistry, name);
  const manifest = await ociManifest(parts);
  const put = await reg.fetch(`/v2/${name}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest.bytes,
  });
  assert.equal(put.status, 201, await put.text());
  return manifest;
}

Deno.test("the Docker flow: ping 401, a token with Basic and scope, then push and pull", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const ping = await reg.fetch("/v2/");
  assert.equal(ping.status, 401);
  assert.equal(await errorCode(ping), "UNAUTHORIZED");
  const challenge = challengeOf(ping);
  assert.deepEqual(challenge, { realm: "http://registry.test/token", service: "test-registry" });

  const denied = await reg.fetch("/v2/team/app/blobs/uploads/", { method: "POST" });
  await denied.body?.cancel();
  assert.deepEqual(challengeOf(denied), {
    realm: "http://registry.test/token",
    service: "test-registry",
    scope: "repository:team/app:pull,push",
  });

  const response = await tokenRequest(reg, "bob", ["repository:team/app:pull,push"]);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("cache-control"), "no-store");
  const body = await response.json() as TokenBody;
  assert.equal(body.token, body.access_token);
  assert.equal(body.expires_in, 300);
  assert.ok(Math.abs(Date.parse(body.issued_at) - Date.now()) < 5000);
  assert.equal(body.refresh_token, undefined);
  const [header, payload] = body.token.split(".").slice(0, 2).map((p) =>
    JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/")))
  );
  assert.equal(header.alg, "ES256");
  assert.match(header.kid, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(payload.iss, "test-issuer");
  assert.equal(payload.aud, "test-registry");
  assert.equal(payload.sub, "bob");
  assert.deepEqual(payload.access, [
    { type: "repository", name: "team/app", actions: ["pull", "push"] },
  ]);
  assert.ok(payload.jti && payload.iat && payload.nbf && payload.exp - payload.iat === 300);

  const bob = withToken(reg, body.token);
  const pinged = await bob.fetch("/v2/");
  assert.equal(pinged.status, 200);
  await pinged.body?.cancel();
  const manifest = await pushImage(bob, "team/app", "v1");
  const pulled = await bob.fetch("/v2/team/app/manifests/v1", {
    headers: { accept: OCI_MANIFEST },
  });
  assert.equal(pulled.status, 200);
  assert.equal(pulled.headers.get("docker-content-digest"), manifest.digest);
  await pulled.body?.cancel();
  assert.ok(reg.logs.some((l) => l.includes("user=bob") || l.includes('"user":"bob"')));
});

Deno.test("Basic credentials are refused on registry routes when tokens are on", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const response = await as(reg, "alice").fetch("/v2/");
  assert.equal(response.status, 401);
  await response.body?.cancel();
  assert.equal(challengeOf(response)?.realm, "http://registry.test/token");
});

Deno.test("the containerd POST form flow, with a refresh token", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const post = (form: Record<string, string>) =>
    reg.fetch("/token", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
      body: new URLSearchParams(form).toString(),
    });
  const first = await post({
    grant_type: "password",
    username: "bob",
    password: USERS.bob,
    service: "test-registry",
    scope: "repository:team/app:pull",
    client_id: "containerd-client",
  });
  assert.equal(first.status, 200);
  const body = await first.json() as TokenBody;
  assert.ok(body.refresh_token);
  const pull = await withToken(reg, body.token).fetch("/v2/team/app/tags/list");
  assert.equal(pull.status, 404); // allowed; the repository does not exist
  await pull.body?.cancel();

  const refreshed = await post({
    grant_type: "refresh_token",
    refresh_token: body.refresh_token,
    service: "test-registry",
    scope: "repository:team/app:pull,push",
    client_id: "containerd-client",
  });
  assert.equal(refreshed.status, 200);
  const again = await refreshed.json() as TokenBody;
  assert.equal(again.refresh_token, body.refresh_token);
  await pushImage(withToken(reg, again.token), "team/app", "v1");

  // A refresh token is not an access token, nor the other way round.
  const misuse = await withToken(reg, body.refresh_token).fetch("/v2/");
  assert.equal(misuse.status, 401);
  await misuse.body?.cancel();
  const forms: Record<string, string>[] = [
    { grant_type: "refresh_token", refresh_token: body.token },
    { grant_type: "password", username: "bob", password: "wrong" },
    { grant_type: "password", username: "mallory", password: "x" },
  ];
  for (const form of forms) {
    const response = await post(form);
    assert.equal(response.status, 401, JSON.stringify(form));
    assert.match(response.headers.get("www-authenticate") ?? "", /^Basic realm=/);
    await response.body?.cancel();
  }
  const bad = await post({ grant_type: "client_credentials" });
  assert.equal(bad.status, 400);
  await bad.body?.cancel();

  // Once bob leaves the htpasswd file, his refresh token buys nothing.
  await Deno.writeTextFile(
    file.path,
    (await Deno.readTextFile(file.path)).replace(/^bob:.*\n/m, ""),
  );
  const gone = await post({ grant_type: "refresh_token", refresh_token: body.refresh_token! });
  assert.equal(gone.status, 401);
  await gone.body?.cancel();
});

Deno.test("docker login (no scope): 200 for good credentials, 401 otherwise", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const good = await tokenRequest(reg, "carol", [], { offline_token: "true", client_id: "docker" });
  assert.equal(good.status, 200);
  const body = await good.json() as TokenBody;
  assert.ok(body.refresh_token);
  for (
    const response of [
      await tokenRequest(reg, "carol", [], {}, "wrong"),
      await tokenRequest(reg, null, []),
      await reg.fetch("/token", { headers: { authorization: "Basic !!" } }),
    ]
  ) {
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("www-authenticate"), 'Basic realm="Test Realm"');
    await response.body?.cancel();
  }
});

Deno.test("anonymous tokens get what anonymous policies allow", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const token = await tokenFor(reg, null, [
    "repository:public/lib:pull,push",
    "repository:team/app:pull",
  ]);
  const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  assert.equal(payload.sub, "");
  assert.deepEqual(payload.access, [
    { type: "repository", name: "public/lib", actions: ["pull"] },
  ]);
  const anon = withToken(reg, token);
  const pull = await anon.fetch("/v2/public/lib/tags/list");
  assert.equal(pull.status, 404);
  await pull.body?.cancel();
  const team = await anon.fetch("/v2/team/app/tags/list");
  assert.equal(team.status, 401);
  assert.equal(challengeOf(team)?.error, "insufficient_scope");
  await team.body?.cancel();
});

Deno.test("a pull-only user asking pull,push gets pull only; push answers insufficient_scope", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const token = await tokenFor(reg, "carol", ["repository:team/app:pull,push,delete"]);
  const carol = withToken(reg, token);
  const pull = await carol.fetch("/v2/team/app/tags/list");
  assert.equal(pull.status, 404);
  await pull.body?.cancel();
  const push = await carol.fetch("/v2/team/app/blobs/uploads/", { method: "POST" });
  assert.equal(push.status, 401);
  assert.equal(await errorCode(push), "UNAUTHORIZED");
  assert.deepEqual(challengeOf(push), {
    realm: "http://registry.test/token",
    service: "test-registry",
    scope: "repository:team/app:pull,push",
    error: "insufficient_scope",
  });
});

Deno.test("scopes: host:port names, unknown types, the catalog for admins", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const alice = await tokenFor(reg, "alice", [
    "repository:team/app:* registry:catalog:* unknown:thing:x",
    "repository:localhost:5000/team/app:pull",
  ]);
  const payload = JSON.parse(atob(alice.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  assert.deepEqual(payload.access, [
    { type: "repository", name: "team/app", actions: ["pull", "push", "delete"] },
    { type: "registry", name: "catalog", actions: ["*"] },
    { type: "repository", name: "localhost:5000/team/app", actions: ["pull"] },
  ]);
  await pushImage(withToken(reg, alice), "team/app", "v1");
  const catalog = await withToken(reg, alice).fetch("/v2/_catalog");
  assert.deepEqual(await catalog.json(), { repositories: ["team/app"] });
  // bob's token has no catalog scope (not an admin): he sees what he may pull.
  const bob = await tokenFor(reg, "bob", ["registry:catalog:*"]);
  const listed = await withToken(reg, bob).fetch("/v2/_catalog");
  assert.deepEqual(await listed.json(), { repositories: ["team/app"] });
  // names no repository can have get nothing, whatever bob's `team/*` and `team/**` match
  const odd = await tokenFor(reg, "bob", [
    "repository:team/x/../../team/app:pull,push",
    "repository:team/..:pull repository:team/:pull repository:team//x:pull",
    "repository:localhost:5000/../team/app:pull repository:team/App:pull",
  ]);
  assert.deepEqual(
    JSON.parse(atob(odd.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).access,
    [],
  );
  const anon = await withToken(reg, await tokenFor(reg, null, ["repository:public/x:pull"]))
    .fetch("/v2/_catalog");
  assert.equal(anon.status, 401);
  assert.equal(challengeOf(anon)?.scope, "registry:catalog:*");
  await anon.body?.cancel();
});

Deno.test("the generated signing key is kept in the data root and reused", async () => {
  await using file = await htpasswdFile();
  const driver = new MemoryDriver();
  const config = {
    auth: {
      ...DEFAULTS.auth,
      ...TEST_AUTH,
      htpasswdPath: file.path,
      token: { ...DEFAULTS.auth.token, builtin: true, service: "test-registry" },
    },
  };
  let token: string;
  {
    await using reg = await memoryRegistry({ config, driver });
    token = await tokenFor(reg, "bob", ["repository:team/app:pull"]);
  }
  assert.ok(await driver.get(TOKEN_SIGNING_KEY));
  await using reg = await memoryRegistry({ config, driver });
  const response = await withToken(reg, token).fetch("/v2/");
  assert.equal(response.status, 200);
  await response.body?.cancel();
});

Deno.test("token configuration: keys, external key files, startup checks", async () => {
  await using file = await htpasswdFile();
  const yaml = `
auth:
  htpasswd:
    path: ${file.path}
  token:
    realm: https://registry.example.com/token
    service: registry.example.com
    issuer: our-issuer
registry:
  auth:
    token:
      builtin: true
      expiration: 10m
`;
  const { load } = await import("../config/helpers.ts");
  const c = load(["--config", configFile(yaml)]);
  assert.deepEqual(c.auth.token, {
    realm: "https://registry.example.com/token",
    service: "registry.example.com",
    issuer: "our-issuer",
    builtin: true,
    path: "/token",
    expirationMs: 600_000,
    signingKey: null,
    rootCertBundle: null,
    jwks: null,
  });
  const external = load([
    "--config",
    configFile("auth:\n  token:\n    rootcertbundle: /b.pem\n    jwks: /k.json\n"),
  ]);
  assert.deepEqual([external.auth.token.rootCertBundle, external.auth.token.jwks], [
    "/b.pem",
    "/k.json",
  ]);
  const fromEnv = load([], {
    REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: "/e.pem",
    REGISTRY_AUTH_TOKEN_JWKS: "/e.json",
  });
  assert.deepEqual([fromEnv.auth.token.rootCertBundle, fromEnv.auth.token.jwks], [
    "/e.pem",
    "/e.json",
  ]);
  fails(
    ["--config", configFile("registry:\n  auth:\n    token:\n      expiration: 30s\n")],
    {},
    /registry\.auth\.token\.expiration/,
  );
  const base = { ...DEFAULTS.auth, htpasswdPath: file.path };
  await assert.rejects(
    memoryRegistry({
      config: {
        auth: { ...base, token: { ...base.token, realm: "https://auth.example.com/auth" } },
      },
    }),
    (e: Error) =>
      e instanceof StartupError && /not this registry's token endpoint/.test(e.message) &&
      /auth\.token\.rootcertbundle or auth\.token\.jwks/.test(e.message),
  );
  await assert.rejects(
    memoryRegistry({
      config: { auth: { ...base, htpasswdPath: null, token: { ...base.token, builtin: true } } },
    }),
    (e: Error) => e instanceof StartupError && /auth\.htpasswd\.path/.test(e.message),
  );
});

Deno.test("a configured PEM signing key is used; a key of another kind is refused", async () => {
  await using file = await htpasswdFile();
  const { generateKeyPairSync } = await import("node:crypto");
  const pem = (type: "ec" | "rsa") => {
    const { privateKey } = type === "ec"
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : generateKeyPairSync("rsa", { modulusLength: 2048 });
    return privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  };
  const ecPath = `${file.dir}/token.pem`;
  const rsaPath = `${file.dir}/rsa.pem`;
  await Deno.writeTextFile(ecPath, pem("ec"));
  await Deno.writeTextFile(rsaPath, pem("rsa"));
  {
    await using reg = await tokenRegistry(file.path, { signingKey: ecPath });
    const token = await tokenFor(reg, "bob", ["repository:team/app:pull"]);
    assert.equal(await reg.driver.get(TOKEN_SIGNING_KEY), null);
    const response = await withToken(reg, token).fetch("/v2/team/app/tags/list");
    assert.equal(response.status, 404);
    await response.body?.cancel();
  }
  for (const path of [rsaPath, `${file.dir}/missing.pem`]) {
    await assert.rejects(
      tokenRegistry(file.path, { signingKey: path }),
      (e: Error) => e instanceof StartupError && e.message.includes(path),
    );
  }
});

Deno.test("the generated signing key's file is readable by the registry's user only", async () => {
  const root = await Deno.makeTempDir({ prefix: "signing-key-" });
  const path = join(root, TOKEN_SIGNING_KEY);
  try {
    const driver = new FsDriver(root);
    const key = await loadSigningKey(driver, null);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    // a key an earlier version left readable by everyone is made private, and kept
    await Deno.chmod(path, 0o644);
    const bytes = await Deno.readFile(path);
    const before = await Deno.stat(path);
    const again = await loadSigningKey(driver, null);
    assert.equal(again.kid, key.kid);
    const after = await Deno.stat(path);
    assert.equal(after.mode! & 0o777, 0o600);
    assert.deepEqual(await Deno.readFile(path), bytes);
    assert.equal(after.ino, before.ino, "the same file, not written again");
    assert.deepEqual(after.mtime, before.mtime);
    // nothing else of the data root is made private: an ordinary put has the umask's mode
    await driver.put("repositories/x/tag", "1");
    await Deno.writeTextFile(join(root, "plain"), "1");
    assert.equal(
      (await Deno.stat(join(root, "repositories/x/tag"))).mode! & 0o777,
      (await Deno.stat(join(root, "plain"))).mode! & 0o777,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
