/**
 * Configuration (`loadConfig`) through the flags and legacy variables that predate the
 * configuration file: the defaults, every setting from its flag and from its variable, flags
 * winning over the environment, `--automatic-mount on|off`, `--help`, and a ConfigError for
 * every invalid value (with fast-check properties for the numeric settings).
 */

import assert from "node:assert/strict";
import { resolve } from "node:path";
import fc from "fast-check";
import { type Config, ConfigError, DEFAULTS, loadConfig, USAGE } from "../../src/config/mod.ts";

function load(args: string[], env: Record<string, string> = {}): Config {
  const config = loadConfig(args, env);
  assert.notEqual(config, "help");
  return config as Config;
}

/**
 * Every setting: its flag, its variable, a valid raw value and what it becomes, and another
 * valid raw value (for the variable when the flag must win).
 */
const SETTINGS: {
  key: keyof Config;
  flag: string;
  env: string;
  raw: string;
  value: unknown;
  other: string;
}[] = [
  {
    key: "host",
    flag: "host",
    env: "REGISTRY_HOST",
    raw: "0.0.0.0",
    value: "0.0.0.0",
    other: "10.0.0.1",
  },
  {
    key: "port",
    flag: "port",
    env: "REGISTRY_PORT",
    raw: "8080",
    value: 8080,
    other: "9999",
  },
  {
    key: "dataDir",
    flag: "data",
    env: "REGISTRY_DATA_DIR",
    raw: "/srv/registry",
    value: "/srv/registry",
    other: "/elsewhere",
  },
  {
    key: "maxManifestBytes",
    flag: "max-manifest-bytes",
    env: "REGISTRY_MAX_MANIFEST_BYTES",
    raw: "1000",
    value: 1000,
    other: "2000",
  },
  {
    key: "uploadMaxAgeMs",
    flag: "upload-max-age",
    env: "REGISTRY_UPLOAD_MAX_AGE",
    raw: "90",
    value: 90_000,
    other: "120",
  },
  {
    key: "maxHeaderBytes",
    flag: "max-header-bytes",
    env: "REGISTRY_MAX_HEADER_BYTES",
    raw: "2048",
    value: 2048,
    other: "4096",
  },
  {
    key: "bodyIdleTimeoutMs",
    flag: "body-idle-timeout",
    env: "REGISTRY_BODY_IDLE_TIMEOUT",
    raw: "5",
    value: 5000,
    other: "7",
  },
  {
    key: "shutdownGraceMs",
    flag: "shutdown-grace",
    env: "REGISTRY_SHUTDOWN_GRACE",
    raw: "0",
    value: 0,
    other: "9",
  },
  {
    key: "server",
    flag: "server",
    env: "REGISTRY_SERVER",
    raw: "deno",
    value: "deno",
    other: "builtin",
  },
  {
    key: "automaticMount",
    flag: "automatic-mount",
    env: "REGISTRY_AUTOMATIC_MOUNT",
    raw: "off",
    value: false,
    other: "on",
  },
];

Deno.test("without flags or variables every setting has its default", () => {
  assert.deepEqual(load([]), { ...DEFAULTS, dataDir: resolve(DEFAULTS.dataDir) });
});

Deno.test("the defaults are the documented ones", () => {
  assert.equal(DEFAULTS.host, "127.0.0.1");
  assert.equal(DEFAULTS.port, 5000);
  assert.equal(DEFAULTS.server, "builtin");
  assert.equal(DEFAULTS.automaticMount, true);
  assert.equal(DEFAULTS.logRequests, true, "the access log is on by default");
  assert.equal(DEFAULTS.uploadMaxAgeMs, 86_400_000);
  assert.equal(DEFAULTS.purgeIntervalMs, 3_600_000);
});

Deno.test("the configuration is frozen", () => {
  assert.ok(Object.isFrozen(load([])));
});

for (const setting of SETTINGS) {
  Deno.test(`--${setting.flag} sets ${setting.key}`, () => {
    assert.deepEqual(load([`--${setting.flag}`, setting.raw])[setting.key], setting.value);
    assert.deepEqual(load([`--${setting.flag}=${setting.raw}`])[setting.key], setting.value);
  });

  Deno.test(`${setting.env} sets ${setting.key}`, () => {
    assert.deepEqual(load([], { [setting.env]: setting.raw })[setting.key], setting.value);
  });

  Deno.test(`--${setting.flag} wins over ${setting.env}`, () => {
    const config = load([`--${setting.flag}`, setting.raw], { [setting.env]: setting.other });
    assert.deepEqual(config[setting.key], setting.value);
  });
}

Deno.test("a relative data directory is made absolute", () => {
  assert.equal(load(["--data", "rel/dir"]).dataDir, resolve("rel/dir"));
  assert.equal(load([], { REGISTRY_DATA_DIR: "./x" }).dataDir, resolve("x"));
});

Deno.test("the access log: on by default; REGISTRY_LOG_REQUESTS=0 turns it off, 1 or --log-requests on", () => {
  assert.equal(load([]).logRequests, true);
  assert.equal(load(["--log-requests"]).logRequests, true);
  assert.equal(load([], { REGISTRY_LOG_REQUESTS: "1" }).logRequests, true);
  assert.equal(load([], { REGISTRY_LOG_REQUESTS: "true" }).logRequests, true);
  assert.equal(load([], { REGISTRY_LOG_REQUESTS: "0" }).logRequests, false);
  assert.equal(load([], { REGISTRY_LOG_ACCESSLOG_DISABLED: "true" }).logRequests, false);
  assert.throws(() => load([], { REGISTRY_LOG_REQUESTS: "maybe" }), ConfigError);
});

Deno.test("--automatic-mount takes on or off (and true or false)", () => {
  assert.equal(load(["--automatic-mount", "on"]).automaticMount, true);
  assert.equal(load(["--automatic-mount", "off"]).automaticMount, false);
  assert.equal(load(["--automatic-mount=true"]).automaticMount, true);
  assert.equal(load(["--automatic-mount=false"]).automaticMount, false);
  assert.equal(load([], { REGISTRY_AUTOMATIC_MOUNT: "off" }).automaticMount, false);
  assert.equal(
    load(["--automatic-mount", "on"], { REGISTRY_AUTOMATIC_MOUNT: "off" }).automaticMount,
    true,
  );
});

Deno.test("the purge interval is an hour, or the upload max age when shorter", () => {
  assert.equal(load([]).purgeIntervalMs, 3_600_000);
  assert.equal(load(["--upload-max-age", "60"]).purgeIntervalMs, 60_000);
  assert.equal(load(["--upload-max-age", "7200"]).purgeIntervalMs, 3_600_000);
});

Deno.test("--help returns help, whatever else is given", () => {
  assert.equal(loadConfig(["--help"], {}), "help");
  assert.equal(loadConfig(["--port", "nope", "--help"], { REGISTRY_PORT: "x" }), "help");
});

Deno.test("the usage text names every flag and variable", () => {
  for (const setting of SETTINGS) {
    assert.ok(USAGE.includes(`--${setting.flag}`), setting.flag);
    assert.ok(USAGE.includes(setting.env), setting.env);
  }
  assert.ok(USAGE.includes("--log-requests") && USAGE.includes("REGISTRY_LOG_REQUESTS"));
  assert.ok(USAGE.includes("--help"));
});

const INVALID: [string, string[]][] = [
  ["port", ["abc", "-1", "65536", "1.5", "0x10", " 80", "", "+80", "1e3"]],
  ["max-manifest-bytes", ["0", "1073741825", "1k", ""]],
  ["upload-max-age", ["0", "315360001", "1.5", ""]],
  ["max-header-bytes", ["1023", "61441", "32k"]],
  ["body-idle-timeout", ["0", "86401", "-5"]],
  ["shutdown-grace", ["3601", "-1", "1s"]],
  ["server", ["nginx", "Builtin", ""]],
  ["automatic-mount", ["yes", "ON", "1", ""]],
];

for (const [flag, values] of INVALID) {
  const env = SETTINGS.find((s) => s.flag === flag)!.env;
  Deno.test(`an invalid --${flag} or ${env} is a ConfigError`, () => {
    for (const value of values) {
      assert.throws(
        () => loadConfig([`--${flag}=${value}`], {}),
        ConfigError,
        `--${flag}=${value}`,
      );
      assert.throws(() => loadConfig([], { [env]: value }), ConfigError, `${env}=${value}`);
    }
  });
}

Deno.test("an invalid variable is refused unless a flag replaces it", () => {
  assert.throws(() => loadConfig([], { REGISTRY_PORT: "x" }), ConfigError);
  assert.equal(load(["--port", "80"], { REGISTRY_PORT: "x" }).port, 80);
});

Deno.test("an unknown flag, a positional argument or a flag without value is a ConfigError", () => {
  for (const args of [["--nope"], ["extra"], ["--port"], ["-p", "80"], ["--log-requests=yes"]]) {
    assert.throws(() => loadConfig(args, {}), ConfigError, args.join(" "));
  }
});

Deno.test("a ConfigError names the bad value and the accepted range", () => {
  assert.throws(() => loadConfig(["--port", "70000"], {}), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /70000/);
    assert.match(error.message, /0\.\.65535/);
    return true;
  });
});

Deno.test("property: every port 0..65535 is accepted as given, every larger one refused", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 65535 }), (port) => {
      assert.equal(load(["--port", String(port)]).port, port);
    }),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 65536, max: 2 ** 40 }), (port) => {
      assert.throws(() => loadConfig([], { REGISTRY_PORT: String(port) }), ConfigError);
    }),
    { numRuns: 100 },
  );
});

Deno.test("property: a numeric setting that is not all digits is refused", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...INVALID.slice(0, 6).map(([flag]) => flag)),
      fc.string({ minLength: 1, maxLength: 8 }).filter((s) => !/^[0-9]+$/.test(s)),
      (flag, value) => {
        assert.throws(() => loadConfig([`--${flag}=${value}`], {}), ConfigError);
      },
    ),
    { numRuns: 300 },
  );
});
