/**
 * Access control over HTTP: the Basic challenge on every route and method, credentials,
 * permissions (403 DENIED), anonymous pull by repository glob, `/v2/` for anonymous clients,
 * the filtered catalog, mounts from unreadable repositories, the user in the access log.
 */

import assert from "node:assert/strict";
import { ociManifest, pushImageBlobs } from "../helpers/manifests.ts";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import { errorCode, pushBlob, randomBytes, type TempRegistry } from "../helpers/registry.ts";
import { startReceiver, waitUntil } from "../events/helpers.ts";
import { as, authRegistry, basic, htpasswdFile, USERS } from "./helpers.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;
const UUID = "0f0e0d0c-0b0a-4908-8706-050403020100";

/** Every route and method, on repository `name`. */
function requests(name: string): [string, string][] {
  return [
    ["GET", "/v2/_catalog"],
    ["GET", `/v2/${name}/tags/list`],
    ["GET", `/v2/${name}/referrers/${DIGEST}`],
    ["GET", `/v2/${name}/manifests/latest`],
    ["HEAD", `/v2/${name}/manifests/latest`],
    ["PUT", `/v2/${name}/manifests/latest`],
    ["DELETE", `/v2/${name}/manifests/${DIGEST}`],
    ["GET", `/v2/${name}/blobs/${DIGEST}`],
    ["HEAD", `/v2/${name}/blobs/${DIGEST}`],
    ["DELETE", `/v2/${name}/blobs/${DIGEST}`],
    ["POST", `/v2/${name}/blobs/uploads/`],
    ["GET", `/v2/${name}/blobs/uploads/${UUID}`],
    ["PATCH", `/v2/${name}/blobs/uploads/${UUID}`],
    ["PUT", `/v2/${name}/blobs/uploads/${UUID}?digest=${DIGEST}`],
    ["DELETE", `/v2/${name}/blobs/uploads/${UUID}`],
  ];
}

async function assertChallenge(response: Response, what: string): Promise<void> {
  assert.equal(response.status, 401, what);
  assert.equal(response.headers.get("www-authenticate"), 'Basic realm="Test Realm"', what);
  if (!what.startsWith("HEAD") && response.headers.get("content-type")?.includes("json")) {
    assert.equal(await errorCode(response), "UNAUTHORIZED", what);
  } else {
    await response.body?.cancel();
  }
}

Deno.test("without credentials every route and method answers 401 with the challenge", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  for (const [method, path] of [["GET", "/v2/"], ...requests("team/app")]) {
    const body = method === "PUT" || method === "PATCH" ? "{}" : undefined;
    await assertChallenge(await reg.fetch(path, { method, body }), `${method} ${path}`);
  }
  // Health probes stay open.
  for (const path of ["/livez", "/readyz"]) {
    const response = await reg.fetch(path);
    await response.body?.cancel();
    assert.notEqual(response.status, 401, path);
  }
});

Deno.test("anonymous pull is allowed where a policy says so, and nothing else", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  for (const [method, path] of requests("public/lib/x")) {
    const body = method === "PUT" || method === "PATCH" ? "{}" : undefined;
    const response = await reg.fetch(path, { method, body });
    const pull = method === "GET" || method === "HEAD";
    if (pull && path !== "/v2/_catalog") {
      assert.notEqual(response.status, 401, `${method} ${path}`);
      await response.body?.cancel();
    } else {
      await assertChallenge(response, `${method} ${path}`);
    }
  }
  // `/v2/` still challenges an anonymous client (Docker logs in only after that 401).
  await assertChallenge(await reg.fetch("/v2/"), "/v2/");
  const ok = await as(reg, "carol").fetch("/v2/");
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
});

Deno.test("empty Basic credentials, as containers/image sends without any, are anonymous", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  const empty = { headers: { authorization: basic("", "") } };
  const open = await reg.fetch("/v2/public/lib/x/manifests/latest", empty);
  assert.equal(open.status, 404, "anonymous pull reaches the (empty) repository");
  assert.equal(await errorCode(open), "NAME_UNKNOWN");
  const closed = await reg.fetch("/v2/team/app/manifests/latest", empty);
  assert.match(await closed.clone().text(), /Authentication required to pull/);
  await assertChallenge(closed, "a private repository");
  await assertChallenge(await reg.fetch("/v2/", empty), "/v2/");
  // Only both empty: an empty password of a user is a failed login.
  const noPassword = await reg.fetch("/v2/public/lib/x/manifests/latest", {
    headers: { authorization: basic("alice", "") },
  });
  assert.match(await noPassword.clone().text(), /Authentication failed/);
  await assertChallenge(noPassword, "alice without a password");
});

Deno.test("wrong password and unknown user get the same 401", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  const answers = [];
  for (
    const header of [basic("alice", "nope"), basic("mallory", "nope"), "Bearer abc", "Basic !!"]
  ) {
    const response = await reg.fetch("/v2/", { headers: { authorization: header } });
    assert.equal(response.headers.get("www-authenticate"), 'Basic realm="Test Realm"');
    answers.push([response.status, await response.text()]);
  }
  for (const answer of answers) assert.deepEqual(answer, answers[0]);
  assert.equal(answers[0][0], 401);
});

Deno.test("good credentials push and pull; a pull-only user gets 403 DENIED", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  const bob = as(reg, "bob") as unknown as TempRegistry;
  const parts = await pushImageBlobs(bob, "team/app");
  const manifest = await ociManifest(parts);
  const put = await bob.fetch("/v2/team/app/manifests/v1", {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest.bytes,
  });
  assert.equal(put.status, 201);
  const carol = as(reg, "carol");
  const get = await carol.fetch("/v2/team/app/manifests/v1");
  assert.equal(get.status, 200);
  await get.body?.cancel();
  for (
    const [method, path] of [
      ["POST", "/v2/team/app/blobs/uploads/"],
      ["PUT", "/v2/team/app/manifests/v2"],
      ["DELETE", `/v2/team/app/manifests/${manifest.digest}`],
      ["DELETE", `/v2/team/app/blobs/${parts.layers[0].digest}`],
    ]
  ) {
    const response = await carol.fetch(path, { method, body: method === "PUT" ? "{}" : undefined });
    assert.equal(response.status, 403, `${method} ${path}`);
    assert.equal(await errorCode(response), "DENIED");
  }
  // bob may push team/* but not deeper, and may not delete.
  const deep = await as(reg, "bob").fetch("/v2/team/a/b/blobs/uploads/", { method: "POST" });
  assert.equal(deep.status, 403);
  await deep.body?.cancel();
  const del = await as(reg, "bob").fetch(`/v2/team/app/manifests/${manifest.digest}`, {
    method: "DELETE",
  });
  assert.equal(del.status, 403);
  await del.body?.cancel();
  // alice (admin) may.
  const admin = await as(reg, "alice").fetch(`/v2/team/app/manifests/${manifest.digest}`, {
    method: "DELETE",
  });
  assert.equal(admin.status, 202);
  await admin.body?.cancel();
});

Deno.test("the catalog lists only what the user may pull", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  const alice = as(reg, "alice");
  for (const name of ["team/app", "public/base", "secret/x"]) {
    await pushBlob(alice, name, randomBytes(10));
  }
  const list = async (user: keyof typeof USERS) => {
    const response = await as(reg, user).fetch("/v2/_catalog");
    assert.equal(response.status, 200);
    return (await response.json()).repositories;
  };
  assert.deepEqual(await list("alice"), ["public/base", "secret/x", "team/app"]);
  assert.deepEqual(await list("carol"), ["public/base", "team/app"]);
  const paged = await as(reg, "carol").fetch("/v2/_catalog?n=1");
  assert.deepEqual((await paged.json()).repositories, ["public/base"]);
  assert.match(paged.headers.get("link") ?? "", /last=public%2Fbase/);
});

Deno.test("a mount from a repository the user cannot pull opens a session and links nothing", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  const digest = await pushBlob(as(reg, "alice"), "secret/x", randomBytes(100));
  const bob = as(reg, "bob");
  for (const query of [`mount=${digest}&from=secret/x`, `mount=${digest}`]) {
    const response = await bob.fetch(`/v2/team/app/blobs/uploads/?${query}`, { method: "POST" });
    assert.equal(response.status, 202, query);
    await response.body?.cancel();
    const head = await bob.fetch(`/v2/team/app/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 404, query);
  }
  // From a readable repository the mount works.
  const shared = await pushBlob(as(reg, "alice"), "team/base", randomBytes(100));
  const mount = await bob.fetch(`/v2/team/app/blobs/uploads/?mount=${shared}&from=team/base`, {
    method: "POST",
  });
  assert.equal(mount.status, 201);
  await mount.body?.cancel();
});

Deno.test("the user goes into the access log, credentials never do", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path);
  for (const password of [USERS.carol, "wrong-password-xyz"]) {
    const response = await as(reg, "carol", password).fetch("/v2/team/app/tags/list");
    await response.body?.cancel();
  }
  reg.app.log.flush();
  const text = reg.logs.join("\n");
  assert.match(text, /user=carol/);
  for (const secret of [USERS.carol, "wrong-password-xyz", btoa(`carol:${USERS.carol}`)]) {
    assert.ok(!text.includes(secret), "a credential was logged");
  }
});

Deno.test("events name the authenticated user as actor.name", async () => {
  await using receiver = startReceiver();
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path, {}, {
    notifications: [{
      name: "hook",
      url: receiver.url,
      headers: {},
      timeoutMs: 1000,
      threshold: 10,
      backoffMs: 100,
      ignoredMediaTypes: [],
      ignoredActions: [],
      disabled: false,
    }],
  });
  await pushBlob(as(reg, "bob"), "team/app", randomBytes(10));
  await waitUntil(() => receiver.events.length >= 1, 5000, "the push event");
  assert.deepEqual(receiver.events[0].actor, { name: "bob" });
});
