/**
 * The access-control settings: the policy shape and its one-line errors, variables, and a
 * registry that cannot read its htpasswd file not starting.
 */

import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config/mod.ts";
import { StartupError } from "../../src/errors.ts";
import { fails, file, load } from "../config/helpers.ts";
import { memoryRegistry } from "../helpers/registry.ts";

const POLICIES = `
auth:
  htpasswd:
    realm: Our Registry
    path: /etc/registry/htpasswd
registry:
  immutabletags: ["v*", "release-*"]
  auth:
    admins: [alice]
    groups:
      readers: [carol, dave]
    faildelay: 250ms
    policies:
      - repositories: ["team/*"]
        users: [bob]
        actions: [pull, push]
      - repositories: ["public/**"]
        anonymous: true
        actions: [pull]
      - repositories: ["**"]
        groups: [readers]
        actions: ["*"]
`;

Deno.test("the policy file shape loads", () => {
  const c = load(["--config", file(POLICIES)]);
  assert.equal(c.auth.realm, "Our Registry");
  assert.equal(c.auth.htpasswdPath, "/etc/registry/htpasswd");
  assert.deepEqual(c.auth.admins, ["alice"]);
  assert.deepEqual(c.auth.groups, { readers: ["carol", "dave"] });
  assert.equal(c.auth.failDelayMs, 250);
  assert.deepEqual(c.immutableTags, ["v*", "release-*"]);
  assert.deepEqual(c.auth.policies, [
    {
      repositories: ["team/*"],
      users: ["bob"],
      groups: [],
      anonymous: false,
      actions: ["pull", "push"],
    },
    { repositories: ["public/**"], users: [], groups: [], anonymous: true, actions: ["pull"] },
    {
      repositories: ["**"],
      users: [],
      groups: ["readers"],
      anonymous: false,
      actions: ["pull", "push", "delete"],
    },
  ]);
});

Deno.test("variables: htpasswd keys, comma-separated admins and tags, policies as YAML", () => {
  const c = load([], {
    REGISTRY_AUTH_HTPASSWD_REALM: "R",
    REGISTRY_AUTH_HTPASSWD_PATH: "/h",
    REGISTRY_REGISTRY_AUTH_ADMINS: "alice, bob",
    REGISTRY_REGISTRY_IMMUTABLETAGS: "v*,stable",
    REGISTRY_REGISTRY_AUTH_POLICIES: "[{repositories: [x/*], anonymous: true, actions: [pull]}]",
  });
  assert.deepEqual([c.auth.realm, c.auth.htpasswdPath], ["R", "/h"]);
  assert.deepEqual(c.auth.admins, ["alice", "bob"]);
  assert.deepEqual(c.immutableTags, ["v*", "stable"]);
  assert.equal(c.auth.policies[0].anonymous, true);
  assert.equal(DEFAULTS.auth.htpasswdPath, null);
});

Deno.test("bad policies fail with one line naming the place", () => {
  const policy = (yaml: string) => file(`registry:\n  auth:\n    policies:\n${yaml}`);
  const cases: [string, RegExp][] = [
    [
      "      - repositories: [a]\n        actions: [pull]\n        user: [x]\n",
      /^Unknown key "user" in .* key registry\.auth\.policies\[0\] \(line 4\): expected repositories/,
    ],
    ["      - actions: [pull]\n", /^Missing repositories in .*registry\.auth\.policies\[0\]/],
    ["      - repositories: [a]\n", /^Missing actions in .*registry\.auth\.policies\[0\]/],
    [
      "      - repositories: [a]\n        actions: [pul]\n",
      /"pul" for .*registry\.auth\.policies\[0\]\.actions\[0\] \(line 5\): expected one of actions/,
    ],
    [
      "      - repositories: [Team/A]\n        actions: [pull]\n",
      /"Team\/A" for .*policies\[0\]\.repositories\[0\]/,
    ],
    [
      "      - repositories: [a]\n        actions: [pull]\n        anonymous: maybe\n",
      /"maybe" for .*policies\[0\]\.anonymous/,
    ],
    [
      "      - just-a-string\n",
      /for .*registry\.auth\.policies\[0\] \(line 4\): expected a policy/,
    ],
  ];
  for (const [yaml, message] of cases) fails(["--config", policy(yaml)], {}, message);
  fails(
    ["--config", file("registry:\n  auth:\n    groups: [a]\n")],
    {},
    /expected a mapping of group names/,
  );
  fails(
    ["--config", file("registry:\n  auth:\n    admins: ['a:b']\n")],
    {},
    /"a:b" for .*admins\[0\]/,
  );
  fails(
    ["--config", file("registry:\n  immutabletags: ['v/1']\n")],
    {},
    /expected one of tag patterns/,
  );
  fails(["--config", file("auth:\n  htpasswd:\n    realm: 'a\"b'\n")], {}, /expected a realm/);
  fails(
    [],
    { REGISTRY_REGISTRY_AUTH_FAILDELAY: "2m" },
    /REGISTRY_REGISTRY_AUTH_FAILDELAY: expected a duration/,
  );
});

Deno.test("an unreadable htpasswd file stops the start with one line", async () => {
  await assert.rejects(
    memoryRegistry({
      config: { auth: { ...DEFAULTS.auth, htpasswdPath: "/nonexistent/htpasswd" } },
    }),
    (error: unknown) => {
      assert.ok(error instanceof StartupError);
      assert.match(error.message, /^Cannot read the htpasswd file \/nonexistent\/htpasswd: /);
      assert.ok(!error.message.includes("\n"));
      return true;
    },
  );
});
