/**
 * Keys and variables beyond the settings (src/config/load.ts with distribution.ts): unknown
 * keys are fatal with a suggestion; Distribution's auth, TLS, other storage drivers, proxy,
 * prefix and middleware are refused naming the key; cosmetic keys warn; unknown `REGISTRY_`
 * variables warn; section variables take YAML.
 */

import assert from "node:assert/strict";
import { fails, file, load, run } from "./helpers.ts";

Deno.test("an unknown key is fatal, with a suggestion when one is close", () => {
  fails(
    ["--config", file("http:\n  adr: :5000\n")],
    {},
    /^Unknown .* key http\.adr \(line 2\); did you mean http\.addr\?$/,
  );
  fails(["--config", file("limits:\n  x: 1\n")], {}, /^Unknown .* key limits \(line 1\)$/);
  fails(
    ["--config", file("registry:\n  automaticmont: true\n")],
    {},
    /did you mean registry\.automaticmount/,
  );
  fails(["--config", file("- a\n")], {}, /expected a mapping of keys/);
});

Deno.test("auth, http.tls, storage drivers, proxy, http.prefix and middleware are refused", () => {
  const cases: [string, string][] = [
    ["auth:\n  token:\n    signingalgorithms: [ES256]\n", "auth.token.signingalgorithms"],
    ["auth: silly\n", "auth.silly"],
    ["http:\n  tls:\n    clientcas: [/ca.pem]\n", "http.tls.clientcas"],
    ["http:\n  tls:\n    letsencrypt:\n      email: a@b.c\n", "http.tls.letsencrypt"],
    ["storage:\n  azure:\n    container: c\n", "storage.azure"],
    ["storage: gcs\n", "storage.gcs"],
    ["storage:\n  inmemory:\n", "storage.inmemory"],
    ["proxy:\n  remoteurl: https://registry-1.docker.io\n", "proxy"],
    ["http:\n  prefix: /r/\n", "http.prefix"],
    ["middleware:\n  storage: []\n", "middleware"],
  ];
  for (const [yaml, key] of cases) {
    fails(
      ["--config", file(yaml)],
      {},
      new RegExp(`^Unsupported .* key ${key.replaceAll(".", "\\.")} \\(line \\d\\): .+`),
    );
  }
  fails(
    [],
    { REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS: "ES256" },
    /^Unsupported REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS \(auth\.token\.signingalgorithms\): the accepted algorithms are fixed/,
  );
  fails(
    [],
    { REGISTRY_STORAGE: "swift" },
    /^Unsupported REGISTRY_STORAGE key storage\.swift: only the filesystem and s3/,
  );
  assert.deepEqual(
    load([], { REGISTRY_HTTP_TLS_CERTIFICATE: "/c.pem", REGISTRY_HTTP_TLS_KEY: "/k.pem" }).tls,
    { certificate: "/c.pem", key: "/k.pem" },
  );
  fails([], { REGISTRY_HTTP_TLS_MINIMUMTLS: "tls1.3" }, /expected tls1\.2 or lower/);
  assert.equal(load([], { REGISTRY_STORAGE: "filesystem" }).port, 5000);
});

Deno.test("cosmetic keys are ignored with one warning each", () => {
  const path = file(
    "log:\n  fields:\n    service: registry\n    env: x\nstorage:\n  cache:\n    blobdescriptor: inmemory\n",
  );
  const { warnings } = run(["--config", path]);
  assert.deepEqual(warnings, [
    `Ignoring ${path} key log.fields (line 2): extra log fields are not implemented`,
    `Ignoring ${path} key storage.cache (line 6): metadata is always cached in memory`,
  ]);
  const env = run([], { REGISTRY_LOG_FIELDS_SERVICE: "x", REGISTRY_REDIS_ADDR: "h:1" }).warnings;
  assert.equal(env.length, 2);
  assert.match(env[0], /^Ignoring REGISTRY_LOG_FIELDS_SERVICE \(log\.fields\): /);
});

Deno.test("variables: unknown REGISTRY_ ones warn, sections take YAML, parts of a setting are refused", () => {
  const k8s = run([], { REGISTRY_SERVICE_HOST: "10.0.0.1", OTHER: "x" });
  assert.deepEqual(k8s.warnings, ["Ignoring unknown variable REGISTRY_SERVICE_HOST"]);
  // podman's and skopeo's credentials file variable is not Distribution's auth section
  const podman = run([], { REGISTRY_AUTH_FILE: "/run/user/1000/containers/auth.json" });
  assert.deepEqual(podman.warnings, ["Ignoring unknown variable REGISTRY_AUTH_FILE"]);
  const section = load([], { REGISTRY_HTTP: '{addr: ":6000", headers: {X-A: [b]}}' });
  assert.deepEqual([section.port, section.responseHeaders], [6000, { "X-A": ["b"] }]);
  fails(
    [],
    { REGISTRY_HTTP_HEADERS_X: "v" },
    /set REGISTRY_HTTP_HEADERS to the whole http\.headers value as YAML/,
  );
  fails(
    [],
    { REGISTRY_HTTP_HEADERS: "{a: [b" },
    /^Invalid YAML in REGISTRY_HTTP_HEADERS at line 1/,
  );
  assert.deepEqual(
    load([], { REGISTRY_REGISTRY_HTTP_TRUSTEDPROXIES: "10.0.0.1, 10.0.0.0/8" }).trustedProxies,
    ["10.0.0.1", "10.0.0.0/8"],
  );
  assert.equal(
    load(["--config", file("http:\n  secret: x\n")], { REGISTRY_HTTP_SECRET: "" }).httpSecret,
    "x",
  );
});

Deno.test("metrics without a debug listener are a warning", () => {
  const { warnings } = run([], { REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED: "true" });
  assert.match(warnings.join(), /needs http\.debug\.addr/);
});
