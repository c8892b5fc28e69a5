/**
 * CNCF Distribution's own configuration files as drop-ins (src/config/distribution.ts): the
 * file Debian's docker-registry package ships, Distribution's example files, and the snippets
 * of its configuration reference (tests/fixtures/distribution/). Each one loads, with warnings
 * for the cosmetic keys, or fails with one line naming the unsupported key.
 */

import assert from "node:assert/strict";
import { type Config, ConfigError, parseCommandLine } from "../../src/config/mod.ts";
import { IGNORED, REFUSED } from "../../src/config/distribution.ts";
import { SETTINGS } from "../../src/config/settings.ts";

const FIXTURES = new URL("../fixtures/distribution/", import.meta.url).pathname;

type Expect =
  | { ignored: string[]; check?: (c: Config) => void }
  | { refused: string }
  | { error: RegExp };

const EXPECT: Record<string, Expect> = {
  "debian.yml": {
    ignored: ["log.fields", "storage.cache"],
    check: (c) =>
      assert.deepEqual(
        [c.auth.realm, c.auth.htpasswdPath],
        ["basic-realm", "/etc/docker/registry"],
      ),
  },
  "debian_noauth.yml": {
    ignored: ["log.fields", "storage.cache"],
    check: (c) => {
      assert.deepEqual([c.host, c.port], ["0.0.0.0", 5000]);
      assert.equal(c.dataDir, "/var/lib/docker-registry");
      assert.equal(c.deleteEnabled, true);
      assert.deepEqual(c.responseHeaders, { "X-Content-Type-Options": ["nosniff"] });
      assert.deepEqual(c.storageHealth, { enabled: true, intervalMs: 10_000, threshold: 3 });
    },
  },
  "example.yml": {
    ignored: ["log.fields", "storage.cache"],
    check: (c) => assert.equal(c.dataDir, "/var/lib/registry"),
  },
  "dev.yml": {
    ignored: ["log.fields", "log.hooks", "storage.cache", "redis", "notifications.events"],
    check: (c) => {
      assert.equal(c.logLevel, "debug");
      assert.equal(c.uploadPurging, false);
      assert.deepEqual(c.debugAddr, { host: "0.0.0.0", port: 5001 });
      assert.deepEqual(c.metrics, { enabled: true, path: "/metrics" });
      assert.deepEqual(c.notifications.map((e) => [e.name, e.disabled]), [
        ["local-5003", true],
        ["local-8083", true],
      ]);
      assert.deepEqual(c.notifications[0].headers, {
        Authorization: ["Bearer <an example token>"],
      });
    },
  },
  "cache.yml": { refused: "proxy" },
  "docs/development.yml": {
    ignored: [],
    check: (c) => {
      assert.deepEqual([c.host, c.port, c.logLevel], ["localhost", 5000, "debug"]);
      assert.equal(c.httpSecret, "asecretforlocaldevelopment");
      assert.deepEqual(c.debugAddr, { host: "localhost", port: 5001 });
    },
  },
  "docs/middleware.yml": { refused: "middleware" },
  "docs/log.yml": {
    ignored: ["log.fields"],
    check: (c) =>
      assert.deepEqual([c.logRequests, c.logLevel, c.logFormat], [false, "debug", "text"]),
  },
  "docs/hooks.yml": { ignored: ["log.hooks"] },
  "docs/loglevel.yml": { ignored: ["loglevel"] },
  "docs/storage.yml": { refused: "storage.azure" },
  "docs/maintenance.yml": {
    ignored: [],
    check: (c) => {
      assert.deepEqual([c.uploadPurging, c.uploadMaxAgeMs, c.purgeIntervalMs, c.readOnly], [
        true,
        168 * 3_600_000,
        24 * 3_600_000,
        false,
      ]);
    },
  },
  "docs/delete.yml": { ignored: [], check: (c) => assert.equal(c.deleteEnabled, true) },
  "docs/redirect.yml": { ignored: [], check: (c) => assert.equal(c.redirectDisabled, true) },
  "docs/auth.yml": { refused: "auth.silly" },
  "docs/htpasswd.yml": {
    ignored: [],
    check: (c) => assert.equal(c.auth.htpasswdPath, "/path/to/htpasswd"),
  },
  "docs/token.yml": {
    error: /"token-realm" for .* key auth\.token\.realm \(line 6\): expected an absolute http/,
  },
  "docs/http.yml": { refused: "http.prefix" },
  "docs/letsencrypt.yml": { refused: "http.tls.letsencrypt" },
  "docs/http_plain.yml": {
    ignored: ["http.relativeurls", "http.http2", "http.h2c"],
    check: (c) => {
      assert.equal(c.publicUrl, "https://myregistryaddress.org:5000");
      assert.equal(c.shutdownGraceMs, 60_000);
      assert.deepEqual(c.metrics, { enabled: true, path: "/metrics" });
    },
  },
  "docs/notifications.yml": {
    error:
      /^Invalid value "<http\.Header>" for .* key notifications\.endpoints\[0\]\.headers \(line 10\): expected a mapping/,
  },
  "docs/notifications_headers.yml": {
    ignored: ["notifications.events"],
    check: (c) => {
      const [e] = c.notifications;
      assert.deepEqual(e.ignoredMediaTypes, ["application/octet-stream"]);
      assert.deepEqual(e.ignoredActions, ["pull"]);
      assert.deepEqual([e.timeoutMs, e.threshold, e.backoffMs], [1000, 10, 1000]);
    },
  },
  "docs/redis.yml": { ignored: ["redis"] },
  "docs/health.yml": {
    ignored: ["health.file", "health.http", "health.tcp"],
    check: (c) => assert.equal(c.storageHealth.enabled, true),
  },
  "docs/proxy.yml": { refused: "proxy" },
  "docs/validation.yml": { refused: "validation.manifests.urls" },
  "docs/version.yml": { ignored: [] },
  "docs/reference.yml": {
    error: /^Invalid YAML in .*reference\.yml at line \d+, column \d+: map keys must be unique$/,
  },
};

Deno.test("every fixture has an expectation", () => {
  const found: string[] = [];
  for (const dir of ["", "docs/"]) {
    for (const entry of Deno.readDirSync(FIXTURES + dir)) {
      if (entry.isFile && entry.name.endsWith(".yml")) found.push(dir + entry.name);
    }
  }
  assert.deepEqual(found.sort(), Object.keys(EXPECT).sort());
});

for (const [name, expect] of Object.entries(EXPECT)) {
  Deno.test(`Distribution's ${name}: ${"refused" in expect ? `refused for ${expect.refused}` : "error" in expect ? "a clear error" : "loads"}`, () => {
    const path = FIXTURES + name;
    if ("ignored" in expect) {
      const result = parseCommandLine(["--config", path], {});
      assert.ok(result.action === "run");
      const keys = result.warnings.map((w) =>
        /^Ignoring \S+ key (\S+) \(line \d+\): /.exec(w)?.[1]
      );
      assert.deepEqual(keys, expect.ignored, result.warnings.join("\n"));
      expect.check?.(result.config);
      return;
    }
    assert.throws(() => parseCommandLine(["--config", path], {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.ok(!error.message.includes("\n"));
      if ("refused" in expect) {
        const key = expect.refused.replaceAll(".", "\\.");
        assert.match(
          error.message,
          new RegExp(`^Unsupported ${path} key ${key} \\(line \\d+\\): \\S`),
        );
      } else assert.match(error.message, expect.error);
      return true;
    });
  });
}

Deno.test("the Debian file with its root directory and address overridden from the environment", () => {
  const result = parseCommandLine(["--config", FIXTURES + "debian_noauth.yml"], {
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: "/tmp/registry",
    REGISTRY_HTTP_ADDR: "127.0.0.1:0",
  });
  assert.ok(result.action === "run");
  assert.deepEqual([result.config.dataDir, result.config.port], ["/tmp/registry", 0]);
});

Deno.test("the refused and ignored lists name distinct keys that no setting implements", () => {
  const keys = [...REFUSED, ...IGNORED].map((u) => u.key);
  assert.equal(new Set(keys).size, keys.length);
  for (const u of [...REFUSED, ...IGNORED]) {
    assert.ok(
      !SETTINGS.some((s) => s.key === u.key || s.key.startsWith(`${u.key}.`)) ||
        u.key === "log.accesslog",
      u.key,
    );
    assert.match(u.why, /^[a-zA-Z].*[^.]$/, u.key);
  }
});
