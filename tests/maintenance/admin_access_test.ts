/**
 * Who may use the admin endpoints (`src/maintenance/admin_access.ts`): admins only with
 * access control on (Basic or tokens); loopback clients only with it off, unless
 * `registry.adminendpoints.allowremote`.
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import { adminAllowed, adminRule, isLoopbackAddress } from "../../src/maintenance/admin_access.ts";
import { RegistryError } from "../../src/errors.ts";
import { externalRegistry, externalToken, jwksKey, tempDir } from "../auth/external_helpers.ts";
import { as, authRegistry, htpasswdFile } from "../auth/helpers.ts";
import { tokenFor, tokenRegistry, withToken } from "../auth/token_helpers.ts";
import { memoryRegistry, tempRegistry } from "../helpers/registry.ts";
import { type Api, buildStore } from "./fixtures.ts";

async function statusAndCode(api: Api, path: string, method: string) {
  const response = await api.fetch(path, { method });
  const text = await response.text();
  const code = text.startsWith('{"errors"')
    ? (JSON.parse(text) as { errors: { code: string }[] }).errors[0].code
    : null;
  return { status: response.status, code };
}

Deno.test("with Basic authentication only admins may use the admin endpoints", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  await buildStore(as(reg, "alice"));
  // bob may push to team/* but is no admin; nobody at all gets a challenge.
  assert.deepEqual(await statusAndCode(as(reg, null), "/admin/usage", "GET"), {
    status: 401,
    code: "UNAUTHORIZED",
  });
  assert.deepEqual(await statusAndCode(as(reg, "bob"), "/admin/usage", "GET"), {
    status: 403,
    code: "DENIED",
  });
  assert.deepEqual(await statusAndCode(as(reg, "bob", "wrong"), "/admin/usage", "GET"), {
    status: 401,
    code: "UNAUTHORIZED",
  });
  assert.deepEqual(
    await statusAndCode(as(reg, "bob"), "/admin/repositories/app", "DELETE"),
    { status: 403, code: "DENIED" },
  );
  assert.deepEqual(
    await statusAndCode(as(reg, null), "/admin/repositories/app", "DELETE"),
    { status: 401, code: "UNAUTHORIZED" },
  );
  assert.equal((await as(reg, "alice").fetch("/v2/app/tags/list")).status, 200);
  assert.deepEqual(await statusAndCode(as(reg, "alice"), "/admin/usage", "GET"), {
    status: 200,
    code: null,
  });
  assert.deepEqual(
    await statusAndCode(as(reg, "alice"), "/admin/repositories/app", "DELETE"),
    { status: 202, code: null },
  );
});

Deno.test("a repository policy never grants an admin endpoint", async () => {
  await using file = await htpasswdFile();
  // Everyone may do everything to every repository, but only alice is an admin.
  await using reg = await authRegistry(file.path, {
    policies: [{
      repositories: ["**"],
      users: [],
      groups: [],
      anonymous: true,
      actions: ["pull", "push", "delete"],
    }],
  });
  await buildStore(as(reg, "bob"));
  assert.equal(
    (await statusAndCode(as(reg, "bob"), "/admin/repositories/app", "DELETE")).status,
    403,
  );
  assert.equal((await statusAndCode(as(reg, "carol"), "/admin/usage", "GET")).status, 403);
  assert.equal(
    (await statusAndCode(as(reg, "alice"), "/admin/repositories/app", "DELETE")).status,
    202,
  );
});

Deno.test("with token authentication the token's user must be an admin", async () => {
  await using file = await htpasswdFile();
  await using reg = await tokenRegistry(file.path);
  const bob = withToken(reg, await tokenFor(reg, "bob", []));
  const alice = withToken(reg, await tokenFor(reg, "alice", []));
  assert.equal((await statusAndCode(reg, "/admin/usage", "GET")).status, 401);
  assert.deepEqual(await statusAndCode(bob, "/admin/usage", "GET"), {
    status: 403,
    code: "DENIED",
  });
  assert.deepEqual(await statusAndCode(alice, "/admin/usage", "GET"), { status: 200, code: null });
  assert.deepEqual(
    await statusAndCode(alice, "/admin/repositories/nothing", "DELETE"),
    { status: 404, code: "NAME_UNKNOWN" },
  );
});

Deno.test("without authentication a loopback client may use the admin endpoints", async () => {
  await using reg = await tempRegistry();
  await buildStore(reg);
  assert.deepEqual(await statusAndCode(reg, "/admin/usage", "GET"), { status: 200, code: null });
  assert.deepEqual(await statusAndCode(reg, "/admin/repositories/app", "DELETE"), {
    status: 202,
    code: null,
  });
});

Deno.test("without authentication a remote client is refused unless allowremote is on", async () => {
  // The test client is on loopback; a trusted proxy's X-Forwarded-For makes it remote.
  const remote = (reg: Api): Api => ({
    fetch: (path, init = {}) =>
      reg.fetch(path, { ...init, headers: { "x-forwarded-for": "203.0.113.7" } }),
  });
  // Behind a trusted proxy upload locations are absolute: build the stores without one.
  const built = async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "registry-admin-" });
    await using reg = await tempRegistry({ dataDir });
    await buildStore(reg);
    return dataDir;
  };
  const proxied = { trustedProxies: ["127.0.0.1"] };
  const first = await built();
  try {
    await using reg = await tempRegistry({ dataDir: first, config: proxied });
    assert.deepEqual(await statusAndCode(remote(reg), "/admin/usage", "GET"), {
      status: 403,
      code: "DENIED",
    });
    assert.deepEqual(await statusAndCode(remote(reg), "/admin/repositories/app", "DELETE"), {
      status: 403,
      code: "DENIED",
    });
    // A forwarded loopback client is local.
    const local = await reg.fetch("/admin/usage", { headers: { "x-forwarded-for": "127.0.0.1" } });
    await local.body?.cancel();
    assert.equal(local.status, 200);
    const tags = await reg.fetch("/v2/app/tags/list");
    await tags.body?.cancel();
    assert.equal(tags.status, 200);
  } finally {
    await Deno.remove(first, { recursive: true });
  }
  const second = await built();
  try {
    await using reg = await tempRegistry({
      dataDir: second,
      config: { ...proxied, adminAllowRemote: true },
    });
    assert.deepEqual(await statusAndCode(remote(reg), "/admin/repositories/app", "DELETE"), {
      status: 202,
      code: null,
    });
  } finally {
    await Deno.remove(second, { recursive: true });
  }
});

Deno.test("a request with no known peer address is not local", async () => {
  await using reg = await memoryRegistry(); // requests without a socket: no client address
  assert.deepEqual(await statusAndCode(reg, "/admin/usage", "GET"), {
    status: 403,
    code: "DENIED",
  });
});

Deno.test("adminAllowed: the rule as a function", () => {
  const off = adminRule({ ...DEFAULTS, dataDir: "x" });
  const on = adminRule({
    ...DEFAULTS,
    dataDir: "x",
    auth: { ...DEFAULTS.auth, htpasswdPath: "/h", admins: ["alice"] },
  });
  type Ctx = Omit<Parameters<typeof adminAllowed>[0], "request">;
  const refusal = (ctx: Ctx, headers: Record<string, string> = {}) => {
    const request = {
      method: "GET",
      url: "http://registry/admin/usage",
      headers: new Headers(headers),
      remoteAddress: ctx.client,
    } as unknown as Parameters<typeof adminAllowed>[0]["request"];
    try {
      adminAllowed({ ...ctx, request });
      return null;
    } catch (error) {
      assert.ok(error instanceof RegistryError);
      return error.status;
    }
  };
  assert.equal(refusal({ admin: off, client: "127.0.0.1", user: null }), null);
  assert.equal(refusal({ admin: off, client: "::1", user: null }), null);
  assert.equal(refusal({ admin: off, client: "10.1.2.3", user: null }), 403);
  assert.equal(
    refusal({ admin: { ...off, allowRemote: true }, client: "10.1.2.3", user: null }),
    null,
  );
  // A proxy on this machine that is not trusted forwards someone else's request: not local.
  for (const header of ["x-forwarded-for", "forwarded"]) {
    assert.equal(
      refusal({ admin: off, client: "127.0.0.1", user: null }, { [header]: "203.0.113.9" }),
      403,
    );
  }
  assert.equal(refusal({ admin: on, client: "127.0.0.1", user: null }), 401);
  assert.equal(refusal({ admin: on, client: "127.0.0.1", user: "bob" }), 403);
  assert.equal(refusal({ admin: on, client: "10.1.2.3", user: "alice" }), null);
  assert.equal(
    refusal({ admin: off, client: "10.1.2.3", user: null, adminToken: true }),
    null,
    "the data root's admin token",
  );
});

Deno.test("isLoopbackAddress", () => {
  for (const address of ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1", "[::1]"]) {
    assert.ok(isLoopbackAddress(address), address);
  }
  for (const address of ["", "10.0.0.1", "::2", "0.0.0.0", "::", "128.0.0.1", "localhost"]) {
    assert.ok(!isLoopbackAddress(address), address);
  }
});

Deno.test("with an external token issuer alone the token's subject must be an admin", async () => {
  await using dir = await tempDir();
  const key = await jwksKey("ES256", "k1");
  await using reg = await externalRegistry(dir.dir, { jwks: { keys: [key.jwk] } });
  const tokenOf = async (sub: string) =>
    withToken(reg, await externalToken(key.privateKey, { header: { kid: "k1" }, claims: { sub } }));
  assert.equal((await statusAndCode(reg, "/admin/usage", "GET")).status, 401);
  assert.deepEqual(await statusAndCode(await tokenOf("bob"), "/admin/usage", "GET"), {
    status: 403,
    code: "DENIED",
  });
  assert.deepEqual(await statusAndCode(await tokenOf("alice"), "/admin/usage", "GET"), {
    status: 200,
    code: null,
  });
});
