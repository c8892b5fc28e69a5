/**
 * The settings table (src/config/settings.ts, own_settings.ts): keys, variables in
 * Distribution's scheme, the legacy flags and variables all present, documented defaults equal
 * to the real ones, and our own keys under `registry.`.
 */

import assert from "node:assert/strict";
import { printConfig } from "../../src/config/load.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { envName, SETTINGS } from "../../src/config/settings.ts";
import { IGNORED, REFUSED } from "../../src/config/distribution.ts";
import { SCALE_OUT_ENV } from "./helpers.ts";

const LEGACY_FLAGS = [
  "host",
  "port",
  "data",
  "max-manifest-bytes",
  "upload-max-age",
  "max-header-bytes",
  "body-idle-timeout",
  "shutdown-grace",
  "log-requests",
  "server",
  "automatic-mount",
];
const LEGACY_VARIABLES = [
  "REGISTRY_HOST",
  "REGISTRY_PORT",
  "REGISTRY_DATA_DIR",
  "REGISTRY_MAX_MANIFEST_BYTES",
  "REGISTRY_UPLOAD_MAX_AGE",
  "REGISTRY_MAX_HEADER_BYTES",
  "REGISTRY_BODY_IDLE_TIMEOUT",
  "REGISTRY_SHUTDOWN_GRACE",
  "REGISTRY_LOG_REQUESTS",
  "REGISTRY_SERVER",
  "REGISTRY_AUTOMATIC_MOUNT",
];

Deno.test("keys are unique, lower case, dotted, without underscores", () => {
  const keys = SETTINGS.map((s) => s.key);
  assert.equal(new Set(keys).size, keys.length);
  for (const key of keys) assert.match(key, /^[a-z0-9]+(\.[a-z0-9]+)*$/, key);
});

Deno.test("variables follow Distribution's scheme: REGISTRY_ + the key upper-cased, _ for .", () => {
  assert.equal(
    envName("storage.filesystem.rootdirectory"),
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
  );
  for (const s of SETTINGS) {
    if (s.key === "version") assert.equal(s.env, null);
    else assert.equal(s.env, `REGISTRY_${s.key.toUpperCase().replaceAll(".", "_")}`);
  }
  assert.ok(SETTINGS.some((s) => s.env === "REGISTRY_HTTP_ADDR"));
  assert.ok(SETTINGS.some((s) => s.env === "REGISTRY_STORAGE_DELETE_ENABLED"));
});

Deno.test("every flag and legacy variable of earlier versions is in the table, once", () => {
  const flags = SETTINGS.flatMap((s) => s.aliases.map((a) => a.flag).filter(Boolean));
  const variables = SETTINGS.flatMap((s) => s.aliases.map((a) => a.env).filter(Boolean));
  assert.deepEqual([...flags].sort(), [...LEGACY_FLAGS].sort());
  assert.deepEqual([...variables].sort(), [...LEGACY_VARIABLES].sort());
});

Deno.test("our own settings live under registry.; Distribution's nowhere near it", () => {
  const distribution = [...REFUSED, ...IGNORED].map((u) => u.key);
  for (const s of SETTINGS) {
    if (s.key.startsWith("registry.")) continue;
    assert.ok(
      !distribution.some((d) => s.key === d || s.key.startsWith(`${d}.`) && d !== "log.accesslog"),
      s.key,
    );
  }
  assert.ok(!distribution.some((d) => d === "registry" || d.startsWith("registry.")));
});

Deno.test("the documented defaults are the real ones", () => {
  const plain = loadConfig([], {});
  assert.ok(plain !== "help");
  // the S3 driver's defaults show once it is selected
  const scaleOut = loadConfig([], SCALE_OUT_ENV);
  assert.ok(scaleOut !== "help");
  for (const s of SETTINGS) {
    const withS3 = s.key.startsWith("storage.s3.") && s.default !== "none";
    const shown = s.show(withS3 ? scaleOut : plain, true);
    if (s.default === "none") {
      const empty = shown === null ||
        (typeof shown === "object" && Object.keys(shown).length === 0);
      assert.ok(empty, `${s.key}: ${JSON.stringify(shown)}`);
    } else if (s.key === "storage.filesystem.rootdirectory") {
      assert.ok(String(shown).endsWith("/data"));
    } else {
      assert.equal(/^`([^`]*)`/.exec(s.default)?.[1], String(shown), s.key);
    }
  }
});

Deno.test("every setting has help text without a trailing period", () => {
  for (const s of SETTINGS) {
    assert.match(s.help, /^\S.*[^.]$/, s.key);
    for (const a of s.aliases) assert.match(a.help, /^[a-zA-Z].*[^.]$/, `${s.key} ${a.flag}`);
  }
});

Deno.test("http.secret, the S3 secret key and the database URL are secrets, masked when printed", () => {
  assert.deepEqual(SETTINGS.filter((s) => s.secret).map((s) => s.key).sort(), [
    "database.url",
    "http.secret",
    "storage.s3.secretkey",
  ]);
  const config = loadConfig([], { REGISTRY_HTTP_SECRET: "abc123" });
  assert.ok(config !== "help");
  assert.ok(!printConfig(config).includes("abc123"));
  assert.ok(printConfig(config, false).includes("abc123"));
});
