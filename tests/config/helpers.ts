/**
 * Helpers of the configuration tests: temporary configuration files, YAML for dotted keys,
 * loading with assertions, and a valid value for every setting.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Config, ConfigError, parseCommandLine } from "../../src/config/mod.ts";

/** The folder of the temporary configuration files (removed at exit). */
export const DIR = Deno.makeTempDirSync({ prefix: "config-test-" });
let files = 0;

/** Writes `yaml` to a new file and returns its path. */
export function file(yaml: string): string {
  const path = join(DIR, `config-${files++}.yml`);
  Deno.writeTextFileSync(path, yaml);
  return path;
}

/** The YAML text setting dotted keys to raw YAML values (flow style). */
export function yamlOf(entries: [key: string, value: string][]): string {
  type Tree = { [part: string]: Tree | string };
  const root: Tree = {};
  for (const [key, value] of entries) {
    const parts = key.split(".");
    let node = root;
    for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Tree;
    node[parts[parts.length - 1]] = value;
  }
  const render = (tree: Tree, depth: number): string =>
    Object.entries(tree).map(([k, v]) =>
      typeof v === "string"
        ? `${"  ".repeat(depth)}${k}: ${v}\n`
        : `${"  ".repeat(depth)}${k}:\n${render(v, depth + 1)}`
    ).join("");
  return render(root, 0);
}

/** The YAML text setting one dotted key. */
export const nested = (key: string, value: string) => yamlOf([[key, value]]);

/** Loads and expects the "run" action. */
export function run(args: string[], env: Record<string, string> = {}) {
  const result = parseCommandLine(args, env);
  assert.ok(result.action === "run", result.action);
  return result;
}

/** The configuration loaded from `args` and `env`. */
export const load = (args: string[], env: Record<string, string> = {}): Config =>
  run(args, env).config;

/** Expects a one-line ConfigError matching `message`. */
export function fails(args: string[], env: Record<string, string>, message: RegExp): void {
  assert.throws(() => parseCommandLine(args, env), (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    assert.ok(!error.message.endsWith("."), "no trailing period");
    return true;
  });
}

/** For each setting: a valid value (as YAML, also the variable's text) and what it becomes. */
export const CASES: Record<string, { yaml: string; get: (c: Config) => unknown; value: unknown }> =
  {
    "http.addr": { yaml: "10.1.2.3:6000", get: (c) => [c.host, c.port], value: ["10.1.2.3", 6000] },
    "http.host": {
      yaml: "https://reg.example.com/",
      get: (c) => c.publicUrl,
      value: "https://reg.example.com",
    },
    "http.secret": { yaml: "s3cret", get: (c) => c.httpSecret, value: "s3cret" },
    "http.headers": {
      yaml: "{X-Frame-Options: [DENY], X-A: [a, b]}",
      get: (c) => c.responseHeaders,
      value: { "X-Frame-Options": ["DENY"], "X-A": ["a", "b"] },
    },
    "http.draintimeout": { yaml: "45s", get: (c) => c.shutdownGraceMs, value: 45_000 },
    "http.debug.addr": {
      yaml: "127.0.0.1:5001",
      get: (c) => c.debugAddr,
      value: { host: "127.0.0.1", port: 5001 },
    },
    "http.debug.prometheus.enabled": { yaml: "true", get: (c) => c.metrics.enabled, value: true },
    "http.debug.prometheus.path": { yaml: "/m", get: (c) => c.metrics.path, value: "/m" },
    "log.level": { yaml: "debug", get: (c) => c.logLevel, value: "debug" },
    "log.formatter": { yaml: "json", get: (c) => c.logFormat, value: "json" },
    "log.accesslog.disabled": { yaml: "true", get: (c) => c.logRequests, value: false },
    "storage.filesystem.rootdirectory": { yaml: "/srv/r", get: (c) => c.dataDir, value: "/srv/r" },
    "storage.delete.enabled": { yaml: "false", get: (c) => c.deleteEnabled, value: false },
    "storage.maintenance.readonly.enabled": { yaml: "true", get: (c) => c.readOnly, value: true },
    "storage.maintenance.uploadpurging.enabled": {
      yaml: "false",
      get: (c) => c.uploadPurging,
      value: false,
    },
    "storage.maintenance.uploadpurging.age": {
      yaml: "168h",
      get: (c) => c.uploadMaxAgeMs,
      value: 604_800_000,
    },
    "storage.maintenance.uploadpurging.interval": {
      yaml: "10m",
      get: (c) => c.purgeIntervalMs,
      value: 600_000,
    },
    "storage.maintenance.uploadpurging.dryrun": {
      yaml: "true",
      get: (c) => c.uploadPurging,
      value: false,
    },
    "notifications.endpoints": {
      yaml: "[{name: a, url: 'http://h/e'}]",
      get: (c) => c.notifications.map((e) => [e.name, e.url]),
      value: [["a", "http://h/e"]],
    },
    "health.storagedriver.enabled": {
      yaml: "true",
      get: (c) => c.storageHealth.enabled,
      value: true,
    },
    "health.storagedriver.interval": {
      yaml: "30s",
      get: (c) => c.storageHealth.intervalMs,
      value: 30_000,
    },
    "health.storagedriver.threshold": {
      yaml: "5",
      get: (c) => c.storageHealth.threshold,
      value: 5,
    },
    "registry.server": { yaml: "deno", get: (c) => c.server, value: "deno" },
    "registry.automaticmount": { yaml: "false", get: (c) => c.automaticMount, value: false },
    "registry.limits.maxmanifestbytes": {
      yaml: "1000",
      get: (c) => c.maxManifestBytes,
      value: 1000,
    },
    "registry.limits.maxheaderbytes": { yaml: "2048", get: (c) => c.maxHeaderBytes, value: 2048 },
    "registry.limits.bodyidletimeout": { yaml: "5s", get: (c) => c.bodyIdleTimeoutMs, value: 5000 },
    "registry.limits.maxconnections": { yaml: "500", get: (c) => c.maxConnections, value: 500 },
    "http.tls.certificate": {
      yaml: "/etc/registry/tls.crt",
      get: (c) => c.tls?.certificate,
      value: "/etc/registry/tls.crt",
    },
    "http.tls.key": {
      yaml: "/etc/registry/tls.key",
      get: (c) => c.tls?.key,
      value: "/etc/registry/tls.key",
    },
    "registry.http.cors.origins": {
      yaml: "[https://ui.example.com, 'http://[::1]:8080']",
      get: (c) => c.cors.origins,
      value: ["https://ui.example.com", "http://[::1]:8080"],
    },
    "registry.http.cors.methods": {
      yaml: "[GET, head]",
      get: (c) => c.cors.methods,
      value: ["GET", "HEAD"],
    },
    "registry.http.cors.headers": {
      yaml: "Authorization, X-Custom",
      get: (c) => c.cors.headers,
      value: ["Authorization", "X-Custom"],
    },
    "registry.http.cors.maxage": { yaml: "1h", get: (c) => c.cors.maxAgeS, value: 3600 },
    "registry.http.trustedproxies": {
      yaml: "[10.0.0.0/8, '::1']",
      get: (c) => c.trustedProxies,
      value: ["10.0.0.0/8", "::1"],
    },
    "registry.health.minfreebytes": { yaml: "0", get: (c) => c.readyMinFreeBytes, value: 0 },
    "storage.gc.interval": { yaml: "off", get: (c) => c.gc.intervalMs, value: 0 },
    "storage.gc.grace": { yaml: "90s", get: (c) => c.gc.graceMs, value: 90_000 },
    "storage.gc.deleteorphanreferrers": {
      yaml: "true",
      get: (c) => c.gc.deleteOrphanReferrers,
      value: true,
    },
    "storage.gc.retention": {
      yaml: "[{repositories: ['team/**'], keeptags: 5, keeptagpatterns: ['v*'], " +
        "keeppulledwithin: 720h, untaggedafter: 168h}]",
      get: (c) => c.gc.retention,
      value: [{
        repositories: ["team/**"],
        keepTags: 5,
        keepTagPatterns: ["v*"],
        keepPulledWithinMs: 720 * 3_600_000,
        untaggedAfterMs: 168 * 3_600_000,
      }],
    },
    "auth.htpasswd.realm": { yaml: "My Realm", get: (c) => c.auth.realm, value: "My Realm" },
    "auth.htpasswd.path": {
      yaml: "/etc/htpasswd",
      get: (c) => c.auth.htpasswdPath,
      value: "/etc/htpasswd",
    },
    "registry.auth.policies": {
      yaml: "[{repositories: ['team/*'], users: [bob], actions: [pull, push]}]",
      get: (c) => c.auth.policies,
      value: [{
        repositories: ["team/*"],
        users: ["bob"],
        groups: [],
        anonymous: false,
        actions: ["pull", "push"],
      }],
    },
    "registry.auth.groups": {
      yaml: "{devs: [dan, eve]}",
      get: (c) => c.auth.groups,
      value: { devs: ["dan", "eve"] },
    },
    "registry.auth.admins": { yaml: "alice", get: (c) => c.auth.admins, value: ["alice"] },
    "registry.adminendpoints.allowremote": {
      yaml: "true",
      get: (c) => c.adminAllowRemote,
      value: true,
    },
    "registry.auth.faildelay": { yaml: "0", get: (c) => c.auth.failDelayMs, value: 0 },
    "auth.token.realm": {
      yaml: "https://r.example.com/token",
      get: (c) => c.auth.token.realm,
      value: "https://r.example.com/token",
    },
    "auth.token.service": {
      yaml: "r.example.com",
      get: (c) => c.auth.token.service,
      value: "r.example.com",
    },
    "auth.token.issuer": {
      yaml: "our-issuer",
      get: (c) => c.auth.token.issuer,
      value: "our-issuer",
    },
    "auth.token.rootcertbundle": {
      yaml: "/etc/registry/token-ca.pem",
      get: (c) => c.auth.token.rootCertBundle,
      value: "/etc/registry/token-ca.pem",
    },
    "auth.token.jwks": {
      yaml: "/etc/registry/jwks.json",
      get: (c) => c.auth.token.jwks,
      value: "/etc/registry/jwks.json",
    },
    "registry.auth.token.builtin": { yaml: "true", get: (c) => c.auth.token.builtin, value: true },
    "registry.auth.token.path": {
      yaml: "/auth/token",
      get: (c) => c.auth.token.path,
      value: "/auth/token",
    },
    "registry.auth.token.expiration": {
      yaml: "1h",
      get: (c) => c.auth.token.expirationMs,
      value: 3_600_000,
    },
    "registry.auth.token.signingkey": {
      yaml: "/etc/registry/token.pem",
      get: (c) => c.auth.token.signingKey,
      value: "/etc/registry/token.pem",
    },
    "registry.immutabletags": { yaml: "v*", get: (c) => c.immutableTags, value: ["v*"] },
    "storage.s3.accesskey": { yaml: "AKIA1", get: (c) => c.s3?.accessKey, value: "AKIA1" },
    "storage.s3.secretkey": {
      yaml: "s3cr3t-key",
      get: (c) => c.s3?.secretKey,
      value: "s3cr3t-key",
    },
    "storage.s3.region": { yaml: "eu-west-3", get: (c) => c.s3?.region, value: "eu-west-3" },
    "storage.s3.regionendpoint": {
      yaml: "http://10.0.0.5:7480/",
      get: (c) => c.s3?.regionEndpoint,
      value: "http://10.0.0.5:7480",
    },
    "storage.s3.bucket": { yaml: "images", get: (c) => c.s3?.bucket, value: "images" },
    "storage.s3.rootdirectory": {
      yaml: "/registry/v2/",
      get: (c) => c.s3?.rootDirectory,
      value: "registry/v2",
    },
    "storage.s3.secure": { yaml: "false", get: (c) => c.s3?.secure, value: false },
    "storage.s3.chunksize": {
      yaml: "16777216",
      get: (c) => c.s3?.chunkSize,
      value: 16 * 1024 * 1024,
    },
    "storage.s3.uploadmemory": {
      yaml: "0",
      get: (c) => c.s3?.uploadMemory,
      value: 0,
    },
    "storage.s3.forcepathstyle": { yaml: "true", get: (c) => c.s3 !== null, value: true },
    "storage.redirect.disable": { yaml: "true", get: (c) => c.redirectDisabled, value: true },
    "database.url": {
      yaml: "postgresql://u:p@10.0.0.6/reg",
      get: (c) => c.databaseUrl,
      value: "postgresql://u:p@10.0.0.6/reg",
    },
  };

/** The least that makes a valid scale-out configuration (variables). */
export const SCALE_OUT_ENV: Readonly<Record<string, string>> = {
  REGISTRY_STORAGE_S3_BUCKET: "base-bucket",
  REGISTRY_STORAGE_S3_REGION: "base-region",
  REGISTRY_STORAGE_S3_ACCESSKEY: "base-access",
  REGISTRY_STORAGE_S3_SECRETKEY: "base-secret",
  REGISTRY_DATABASE_URL: "postgres://reg:base-pw@db.example.com:5432/registry",
};

/** Whether a setting belongs to the scale-out mode (valid only with the others). */
export const isScaleOut = (key: string) => key.startsWith("storage.s3.") || key === "database.url";

/** The variables a case of `key` loads with: the scale-out base but its own variable. */
export function baseFor(key: string): Record<string, string> {
  if (!isScaleOut(key)) return {};
  const env = { ...SCALE_OUT_ENV };
  delete env[`REGISTRY_${key.toUpperCase().replaceAll(".", "_")}`];
  return env;
}

/** Settings that take any text (no variable value is invalid). */
export const TEXT = [
  "http.secret",
  "storage.filesystem.rootdirectory",
  "http.tls.certificate",
  "http.tls.key",
  "auth.htpasswd.realm",
  "auth.htpasswd.path",
  "registry.auth.token.signingkey",
  "auth.token.rootcertbundle",
  "auth.token.jwks",
  "storage.s3.accesskey",
  "storage.s3.secretkey",
  "storage.s3.region",
];

/** Settings with no effect on Config (checked for validation only). */
export const INERT = ["version", "http.net", "http.tls.minimumtls"];

globalThis.addEventListener("unload", () => {
  Deno.removeSync(DIR, { recursive: true });
});
