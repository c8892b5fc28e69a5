/**
 * Loading (src/config/load.ts): every key from the file, from its variable, and from its flag;
 * precedence file < environment < legacy variables < flags; every validation error naming its
 * source; empty values; the frozen result.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Config, DEFAULTS } from "../../src/config/mod.ts";
import { SETTINGS } from "../../src/config/settings.ts";
import {
  baseFor,
  CASES,
  DIR,
  fails,
  file,
  INERT,
  load,
  nested,
  run,
  SCALE_OUT_ENV,
  TEXT,
} from "./helpers.ts";

Deno.test("every setting has a case, and each case changes its setting from the default", () => {
  const defaults = load([]);
  for (const setting of SETTINGS) {
    if (INERT.includes(setting.key)) continue;
    const c = CASES[setting.key];
    assert.ok(c, `no case for ${setting.key}`);
    assert.notDeepEqual(c.get(defaults), c.value, setting.key);
  }
});

for (const [key, c] of Object.entries(CASES)) {
  const setting = SETTINGS.find((s) => s.key === key)!;
  Deno.test(`${key} from the file and from ${setting.env}`, () => {
    const base = baseFor(key);
    assert.deepEqual(c.get(load(["--config", file(nested(key, c.yaml))], base)), c.value);
    assert.deepEqual(c.get(load([], { ...base, [setting.env!]: c.yaml })), c.value);
  });
}

Deno.test("version and http.net take only 0.1 and tcp", () => {
  assert.equal(load(["--config", file("version: 0.1\nhttp:\n  net: tcp\n")]).port, 5000);
  fails(
    ["--config", file("version: 0.2\n")],
    {},
    /"0\.2" for .* key version \(line 1\): expected 0\.1/,
  );
  fails([], { REGISTRY_HTTP_NET: "unix" }, /"unix" for REGISTRY_HTTP_NET: expected one of tcp/);
});

Deno.test("each flag sets its key", () => {
  const cases: [string[], (c: Config) => unknown, unknown][] = [
    [["--host", "0.0.0.0"], (c) => c.host, "0.0.0.0"],
    [["--host", "[::1]"], (c) => c.host, "::1"],
    [["--port", "8080"], (c) => c.port, 8080],
    [["--data", "/srv/x"], (c) => c.dataDir, "/srv/x"],
    [["--max-manifest-bytes", "1000"], (c) => c.maxManifestBytes, 1000],
    [["--upload-max-age", "90"], (c) => c.uploadMaxAgeMs, 90_000],
    [["--max-header-bytes", "2048"], (c) => c.maxHeaderBytes, 2048],
    [["--body-idle-timeout", "5"], (c) => c.bodyIdleTimeoutMs, 5000],
    [["--shutdown-grace", "0"], (c) => c.shutdownGraceMs, 0],
    [["--log-requests"], (c) => c.logRequests, true],
    [["--server", "deno"], (c) => c.server, "deno"],
    [["--automatic-mount", "off"], (c) => c.automaticMount, false],
  ];
  for (const [args, get, value] of cases) assert.deepEqual(get(load(args)), value, args.join(" "));
});

Deno.test("precedence: file < Distribution variable < legacy variable < flag", () => {
  const path = file("http:\n  addr: 1.1.1.1:1000\n");
  assert.deepEqual([load(["--config", path]).host, load(["--config", path]).port], [
    "1.1.1.1",
    1000,
  ]);
  const env = { REGISTRY_HTTP_ADDR: "2.2.2.2:2000" };
  const fromEnv = load(["--config", path], env);
  assert.deepEqual([fromEnv.host, fromEnv.port], ["2.2.2.2", 2000]);
  const legacy = load(["--config", path], { ...env, REGISTRY_PORT: "3000" });
  assert.deepEqual([legacy.host, legacy.port], ["2.2.2.2", 3000]);
  const flag = load(["--config", path, "--port", "4000"], { ...env, REGISTRY_PORT: "3000" });
  assert.deepEqual([flag.host, flag.port], ["2.2.2.2", 4000]);
});

Deno.test("a flag or legacy variable changes only its part of http.addr", () => {
  const path = file("http:\n  addr: 0.0.0.0:5000\n");
  const c = load(["--config", path, "--port", "8080"]);
  assert.deepEqual([c.host, c.port], ["0.0.0.0", 8080]);
  const d = load(["--config", path], { REGISTRY_HOST: "127.0.0.2" });
  assert.deepEqual([d.host, d.port], ["127.0.0.2", 5000]);
});

Deno.test("precedence for the other legacy names: file < variable < flag", () => {
  const path = file(nested("registry.limits.maxmanifestbytes", "1000"));
  assert.equal(load(["--config", path]).maxManifestBytes, 1000);
  assert.equal(
    load(["--config", path], { REGISTRY_MAX_MANIFEST_BYTES: "2000" }).maxManifestBytes,
    2000,
  );
  assert.equal(
    load(["--config", path, "--max-manifest-bytes", "3000"], {
      REGISTRY_MAX_MANIFEST_BYTES: "2000",
    })
      .maxManifestBytes,
    3000,
  );
  const data = file(nested("storage.filesystem.rootdirectory", "/from/file"));
  assert.equal(load(["--config", data], { REGISTRY_DATA_DIR: "/from/env" }).dataDir, "/from/env");
  assert.equal(load(["--config", data, "--data", "/from/flag"]).dataDir, "/from/flag");
});

Deno.test("--config wins over REGISTRY_CONFIGURATION_PATH, which works alone", () => {
  const a = file("http:\n  addr: :1111\n");
  const b = file("http:\n  addr: :2222\n");
  assert.equal(load([], { REGISTRY_CONFIGURATION_PATH: a }).port, 1111);
  assert.equal(load(["--config", b], { REGISTRY_CONFIGURATION_PATH: a }).port, 2222);
});

Deno.test(":5000 listens on 0.0.0.0 and [::1]:5000 on ::1", () => {
  const all = load(["--config", file("http:\n  addr: :5000\n")]);
  assert.deepEqual([all.host, all.port], ["0.0.0.0", 5000]);
  const v6 = load([], { REGISTRY_HTTP_ADDR: "[::1]:5001" });
  assert.deepEqual([v6.host, v6.port], ["::1", 5001]);
});

Deno.test("the purge interval defaults to an hour or the age; dry run turns purging off", () => {
  assert.equal(load([]).purgeIntervalMs, 3_600_000);
  const short = file(nested("storage.maintenance.uploadpurging.age", "10m"));
  assert.equal(load(["--config", short]).purgeIntervalMs, 600_000);
  const dry = file(
    "storage:\n  maintenance:\n    uploadpurging:\n      enabled: true\n      dryrun: true\n",
  );
  assert.equal(load(["--config", dry]).uploadPurging, false);
  assert.equal(
    load(["--config", dry], { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN: "false" })
      .uploadPurging,
    true,
  );
});

Deno.test("log levels: Distribution's panic and fatal are error; logstash is json with a warning", () => {
  assert.equal(load([], { REGISTRY_LOG_LEVEL: "panic" }).logLevel, "error");
  assert.equal(load([], { REGISTRY_LOG_LEVEL: "FATAL" }).logLevel, "error");
  const result = run([], { REGISTRY_LOG_FORMATTER: "logstash" });
  assert.equal(result.config.logFormat, "json");
  assert.match(result.warnings.join("\n"), /logstash as json for REGISTRY_LOG_FORMATTER/);
  fails([], { REGISTRY_LOG_LEVEL: "verbose" }, /expected one of error, warn, info, debug/);
});

Deno.test("every setting's validation error names the file key and line, or the variable", () => {
  for (const setting of SETTINGS) {
    const bad = setting.structured ? "not-a-valid-value" : "{a: b}";
    const path = file(nested(setting.key, bad));
    const line = setting.key.split(".").length;
    fails(["--config", path], {}, new RegExp(`${path} key ${setting.key}[^ ]* \\(line ${line}\\)`));
    if (setting.env && !TEXT.includes(setting.key)) {
      fails([], { [setting.env]: bad }, new RegExp(`for ${setting.env}\\b`));
    }
  }
});

Deno.test("errors from flags and legacy variables name them", () => {
  fails(["--port", "x"], {}, /^Invalid value "x" for --port: expected an integer in 0\.\.65535$/);
  fails([], { REGISTRY_PORT: "x" }, /^Invalid value "x" for REGISTRY_PORT: /);
  fails(["--upload-max-age", "1h"], {}, /for --upload-max-age: expected an integer/);
  fails(
    [],
    { REGISTRY_HTTP_ADDR: "nope" },
    /^Invalid value "nope" for REGISTRY_HTTP_ADDR: expected host:port/,
  );
});

Deno.test("a secret's invalid value is not echoed", () => {
  const path = file("http:\n  secret: {a: supersecret}\n");
  fails(
    ["--config", path],
    {},
    /^Invalid value for .* key http\.secret \(line 2\): expected a secret/,
  );
});

Deno.test("an empty file or a key without value keeps the defaults", () => {
  assert.deepEqual(load(["--config", file("")]), load([]));
  assert.deepEqual(load(["--config", file("http:\n  addr:\n  secret: ~\nstorage:\n")]), load([]));
});

Deno.test("the configuration is deeply frozen", () => {
  const c = load(["--config", file("http:\n  headers:\n    X: [a]\n")]);
  assert.ok(
    Object.isFrozen(c) && Object.isFrozen(c.responseHeaders) &&
      Object.isFrozen(c.responseHeaders.X),
  );
  assert.ok(Object.isFrozen(c.metrics) && Object.isFrozen(c.storageHealth));
});

Deno.test("the defaults without any source are DEFAULTS", () => {
  const c = load([]);
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    if (key !== "dataDir") assert.deepEqual(c[key], DEFAULTS[key], key);
  }
});

Deno.test("argument errors are one line each", () => {
  fails(["--nope"], {}, /^Unknown option --nope$/);
  fails(["extra"], {}, /^Unexpected argument "extra"$/);
  fails(["--port"], {}, /^Option --port needs a value$/);
  fails(["--log-requests=yes"], {}, /^Option --log-requests takes no value$/);
  fails(
    ["--config", join(DIR, "missing.yml")],
    {},
    /^Cannot read configuration file .*missing\.yml: no such file$/,
  );
});

Deno.test("the scale-out mode: storage.s3 with database.url, each refused without the other", () => {
  const c = load([], SCALE_OUT_ENV);
  assert.deepEqual(c.s3, {
    accessKey: "base-access",
    secretKey: "base-secret",
    region: "base-region",
    regionEndpoint: null,
    bucket: "base-bucket",
    rootDirectory: "",
    secure: true,
    chunkSize: 10 * 1024 * 1024,
    uploadMemory: 16 * 1024 * 1024,
  });
  assert.equal(c.databaseUrl, SCALE_OUT_ENV.REGISTRY_DATABASE_URL);
  assert.equal(c.redirectDisabled, false);
  const without = (name: string) => {
    const env: Record<string, string> = { ...SCALE_OUT_ENV };
    delete env[name];
    return env;
  };
  fails(
    [],
    without("REGISTRY_DATABASE_URL"),
    /^storage\.s3 needs database\.url \(REGISTRY_DATABASE_URL\): replicas/,
  );
  fails(
    [],
    { REGISTRY_DATABASE_URL: SCALE_OUT_ENV.REGISTRY_DATABASE_URL },
    /^database\.url is only used with storage\.s3 \(the scale-out mode\)/,
  );
  fails([], without("REGISTRY_STORAGE_S3_BUCKET"), /^storage\.s3 needs storage\.s3\.bucket$/);
  fails(
    [],
    without("REGISTRY_STORAGE_S3_SECRETKEY"),
    /^storage\.s3 needs storage\.s3\.secretkey \(credentials from the instance/,
  );
  fails(
    [],
    { REGISTRY_STORAGE: "s3" },
    /^storage\.s3 needs storage\.s3\.bucket, storage\.s3\.region, /,
  );
  fails(["--config", file("storage: s3\n")], {}, /^storage\.s3 needs storage\.s3\.bucket/);
  for (const extra of [["--data", "/srv/r"], []]) {
    const env = extra.length ? SCALE_OUT_ENV : { ...SCALE_OUT_ENV, REGISTRY_DATA_DIR: "/srv/r" };
    fails(extra, env, /^storage\.s3 and storage\.filesystem\.rootdirectory .* are both set/);
  }
  fails(
    [],
    { ...SCALE_OUT_ENV, REGISTRY_STORAGE_S3_FORCEPATHSTYLE: "false" },
    /expected true \(virtual-host addressing is not implemented\)/,
  );
  fails(
    [],
    { ...SCALE_OUT_ENV, REGISTRY_STORAGE_S3_CHUNKSIZE: "1024" },
    /REGISTRY_STORAGE_S3_CHUNKSIZE/,
  );
  fails(
    ["--config", file("storage:\n  s3:\n    encrypt: true\n")],
    SCALE_OUT_ENV,
    /^Unsupported .* key storage\.s3\.encrypt \(line 3\): server-side encryption/,
  );
  const warned = run(["--config", file("storage:\n  s3:\n    v4auth: true\n")], SCALE_OUT_ENV);
  assert.match(warned.warnings.join("\n"), /Ignoring .* key storage\.s3\.v4auth/);
});

Deno.test("a bad database.url is refused without echoing it", () => {
  const url = "mysql://root:hunter2@db/x";
  assert.throws(
    () => load([], { ...SCALE_OUT_ENV, REGISTRY_DATABASE_URL: url }),
    (error: Error) => {
      assert.match(error.message, /REGISTRY_DATABASE_URL: expected a postgres/);
      assert.ok(!error.message.includes("hunter2"), error.message);
      return true;
    },
  );
});
