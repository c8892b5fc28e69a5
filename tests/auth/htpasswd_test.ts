/**
 * The htpasswd file (reload on change, refused hash kinds, the success cache), bcrypt, the
 * policy globs, the failure delay per address, and immutable tags.
 */

import assert from "node:assert/strict";
import { costOf, hashPassword, isBcrypt, verifyPassword } from "../../src/auth/bcrypt.ts";
import { FailDelay } from "../../src/auth/fail_delay.ts";
import { HtpasswdFile } from "../../src/auth/htpasswd.ts";
import { AccessPolicies, immutableMatcher, repositoryGlob } from "../../src/auth/policy.ts";
import { createLogger } from "../../src/log.ts";
import { ociManifest, pushImageBlobs } from "../helpers/manifests.ts";
import { OCI_MANIFEST } from "../helpers/media_types.ts";
import { errorCode, memoryRegistry, type TempRegistry } from "../helpers/registry.ts";
import { as, authRegistry, basic, htpasswdFile, htpasswdLines, USERS } from "./helpers.ts";

function testLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ sink: (line) => lines.push(line), format: "text" }) };
}

Deno.test("bcrypt: $2y$ entries as htpasswd -B writes them verify", async () => {
  const hash = await hashPassword("s3cret", 4);
  assert.match(hash, /^\$2y\$04\$/);
  assert.ok(isBcrypt(hash));
  assert.equal(costOf(hash), 4);
  assert.ok(await verifyPassword("s3cret", hash));
  assert.ok(!(await verifyPassword("s3cret!", hash)));
  for (const prefix of ["$2a$", "$2b$"]) {
    assert.ok(await verifyPassword("s3cret", prefix + hash.slice(4)));
  }
  assert.ok(!isBcrypt("{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="));
  assert.ok(!(await verifyPassword("test", "$apr1$xyz$abc")));
});

Deno.test("htpasswd: non-bcrypt entries are refused with a warning naming the user only", async () => {
  await using file = await htpasswdFile({ alice: "a" });
  const md5 = "$apr1$O1lK7LlY$gTzBRHx5Fpl9tTn1sIHbF.";
  await Deno.writeTextFile(file.path, `old:${md5}\n# comment\n\nbroken\n`, { append: true });
  const { lines, log } = testLog();
  const users = await HtpasswdFile.open(file.path, log);
  log.flush();
  assert.equal(users.size, 1);
  assert.ok(!(await users.verify("old", "anything")));
  assert.ok(await users.verify("alice", "a"));
  const warning = lines.find((line) => line.includes("only bcrypt"));
  assert.ok(warning?.includes("user=old"), lines.join("\n"));
  assert.ok(!lines.join("\n").includes(md5));
  // the count logged is of the users who can log in
  const loaded = lines.find((line) => line.includes("htpasswd file loaded"));
  assert.match(loaded ?? "", / users=1 refused=1\b/, lines.join("\n"));
});

Deno.test("htpasswd: a changed file is re-read, and cached successes are dropped", async () => {
  await using file = await htpasswdFile({ alice: "one" });
  const { log } = testLog();
  const users = await HtpasswdFile.open(file.path, log, { checkIntervalMs: 0 });
  assert.ok(await users.verify("alice", "one"));
  await Deno.writeTextFile(file.path, await htpasswdLines({ alice: "two", bob: "b" }));
  assert.ok(!(await users.verify("alice", "one")));
  assert.ok(await users.verify("alice", "two"));
  assert.ok(await users.verify("bob", "b"));
  // A file that disappears keeps the users read before.
  await Deno.remove(file.path);
  assert.ok(await users.verify("bob", "b"));
});

Deno.test("htpasswd: a success is cached, so a repeated check costs no bcrypt", async () => {
  await using file = await htpasswdFile({ alice: "pw" });
  await Deno.writeTextFile(file.path, `alice:${await hashPassword("pw", 10)}\n`);
  const users = await HtpasswdFile.open(file.path, testLog().log);
  let start = performance.now();
  assert.ok(await users.verify("alice", "pw"));
  const first = performance.now() - start;
  start = performance.now();
  for (let i = 0; i < 20; i++) assert.ok(await users.verify("alice", "pw"));
  const twenty = performance.now() - start;
  assert.ok(twenty < first, `20 cached checks took ${twenty} ms, one bcrypt ${first} ms`);
  // A wrong password is never cached, and an unknown user costs a bcrypt at the file's cost.
  start = performance.now();
  assert.ok(!(await users.verify("nobody", "pw")));
  assert.ok(performance.now() - start > first / 4, "an unknown user answered too fast");
});

Deno.test("policy: * within one component, ** across; groups, anonymous, admins", () => {
  assert.ok(repositoryGlob("team/*").test("team/app"));
  assert.ok(!repositoryGlob("team/*").test("team/a/b"));
  assert.ok(repositoryGlob("team/**").test("team/a/b"));
  assert.ok(!repositoryGlob("team/**").test("teams/a"));
  assert.ok(repositoryGlob("a.b/c*d").test("a.b/cxd"));
  assert.ok(!repositoryGlob("a.b/c*d").test("axb/cxd"));
  const policies = new AccessPolicies({
    admins: ["root"],
    groups: { devs: ["dan"] },
    policies: [
      { repositories: ["dev/*"], users: [], groups: ["devs"], anonymous: false, actions: ["push"] },
      { repositories: ["pub/**"], users: [], groups: [], anonymous: true, actions: ["pull"] },
    ],
  });
  assert.ok(policies.allows("dan", "dev/x", "push"));
  assert.ok(!policies.allows("dan", "dev/x", "pull"));
  assert.ok(!policies.allows("eve", "dev/x", "push"));
  assert.ok(policies.allows(null, "pub/a/b", "pull"));
  assert.ok(policies.allows("eve", "pub/a/b", "pull"));
  assert.ok(!policies.allows(null, "pub/a/b", "push"));
  assert.ok(policies.allows("root", "anything/at/all", "delete"));
  assert.ok(!policies.allows(null, "other", "pull"));
  const immutable = immutableMatcher(["v*", "release-*"]);
  assert.deepEqual(["v1", "v1.2", "release-2", "latest", "xv1"].map(immutable), [
    true,
    true,
    true,
    false,
    false,
  ]);
});

Deno.test("fail delay: grows per address up to ten times the base; a success resets", () => {
  const delays = new FailDelay(100);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => delays.fail("a")), [
    100,
    200,
    400,
    800,
    1000,
    1000,
  ]);
  assert.equal(delays.fail("b"), 100);
  delays.succeed("a");
  assert.equal(delays.fail("a"), 100);
  assert.equal(new FailDelay(0).fail("a"), 0);
});

Deno.test("fail delay over HTTP: failing requests of one address wait, others do not", async () => {
  await using file = await htpasswdFile();
  await using reg = await authRegistry(file.path, { failDelayMs: 60 });
  const request = async (address: string, authorization: string) => {
    const start = performance.now();
    const response = await reg.app(
      new Request("http://registry.test/v2/", { headers: { authorization } }),
      { remoteAddr: { transport: "tcp", hostname: address, port: 1 } } as Deno.ServeHandlerInfo,
    );
    await response.body?.cancel();
    return { status: response.status, ms: performance.now() - start };
  };
  const bad = basic("alice", "wrong");
  const first = await request("10.0.0.1", bad);
  const second = await request("10.0.0.1", bad);
  const third = await request("10.0.0.1", bad);
  assert.deepEqual([first.status, second.status, third.status], [401, 401, 401]);
  assert.ok(
    first.ms >= 55 && second.ms >= 115 && third.ms >= 235,
    JSON.stringify([first, second, third]),
  );
  const other = await request("10.0.0.2", bad);
  assert.ok(other.ms < 150, `another address waited ${other.ms} ms`);
  const good = await request("10.0.0.2", basic("alice", USERS.alice));
  assert.equal(good.status, 200);
});

Deno.test("immutable tags: moving one answers 403 DENIED, re-putting the same digest works", async () => {
  for (const withAuth of [false, true]) {
    await using file = await htpasswdFile();
    await using reg = withAuth
      ? await authRegistry(file.path, {}, { immutableTags: ["v*", "release-*"] })
      : await memoryRegistry({ config: { immutableTags: ["v*", "release-*"] } });
    const client = (withAuth ? as(reg, "bob") : reg) as unknown as TempRegistry;
    const parts = await pushImageBlobs(client, "team/app");
    const one = await ociManifest(parts);
    const two = await ociManifest(parts, { annotations: { n: "2" } });
    const put = (tag: string, bytes: Uint8Array<ArrayBuffer>) =>
      client.fetch(`/v2/team/app/manifests/${tag}`, {
        method: "PUT",
        headers: { "content-type": OCI_MANIFEST },
        body: bytes,
      });
    const statuses = [];
    for (const [tag, m] of [["v1", one], ["v1", one], ["latest", one], ["latest", two]] as const) {
      const response = await put(tag, m.bytes);
      await response.body?.cancel();
      statuses.push(response.status);
    }
    assert.deepEqual(statuses, [201, 201, 201, 201]);
    const moved = await put("v1", two.bytes);
    assert.equal(moved.status, 403);
    assert.equal(await errorCode(moved), "DENIED");
    const get = await client.fetch("/v2/team/app/manifests/v1", {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(get.headers.get("docker-content-digest"), one.digest);
    await get.body?.cancel();
  }
});
