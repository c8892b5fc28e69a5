/**
 * The settings table: every setting declared once, with its configuration-file key (CNCF
 * Distribution's dotted key where Distribution has the setting, ours under `registry.` where
 * it does not: own_settings.ts), type, default, validation, help text, environment variable
 * (Distribution's scheme: `REGISTRY_` + the key upper-cased with `_` for `.`), and the
 * command-line flag and legacy variable that set it too. `--help`, the README's table,
 * `--print-config` and loading all read this table.
 */

import { AUTH_SETTINGS } from "./auth_settings.ts";
import { maskHeaders, parseEndpoints, showEndpoints } from "./endpoints.ts";
import { GC_SETTINGS } from "./gc_settings.ts";
import { OWN_SETTINGS } from "./own_settings.ts";
import { STORAGE_SETTINGS } from "./storage_settings.ts";
import { define, MASK, type Setting } from "./setting.ts";
import { type Config, DEFAULTS } from "./types.ts";
import {
  address,
  boolean,
  duration,
  formatAddress,
  formatDuration,
  headers,
  httpUrl,
  integer,
  invalid,
  maskUrl,
  oneOf,
  seconds,
  text,
} from "./values.ts";

export { envName, type Setting } from "./setting.ts";

const HOST = /^(?:[A-Za-z0-9.:-]+|\[[0-9A-Fa-f:.]+\])$/;

/** Distribution's settings that this registry implements, in the order of the docs. */
const DISTRIBUTION_SETTINGS: readonly Setting[] = [
  define<string>({
    key: "version",
    noEnv: true,
    type: "`0.1`",
    default: "`0.1`",
    help: "the configuration format (Distribution's); optional, and 0.1 when given",
    parse: (node, place) => {
      if (text(node, place, "0.1") !== "0.1") throw invalid(node, place, "0.1");
      return "0.1";
    },
    apply: () => {},
    show: () => "0.1",
  }),
  define<{ host?: string; port?: number }>({
    key: "http.addr",
    type: "host:port",
    default: `\`${DEFAULTS.host}:${DEFAULTS.port}\``,
    help: "where to listen; `:5000` is every IPv4 interface, `[::1]:5000` an IPv6 address",
    parse: address,
    apply: (d, v) => {
      if (v.host !== undefined) d.host = v.host;
      if (v.port !== undefined) d.port = v.port;
    },
    show: (c) => formatAddress(c.host, c.port),
    aliases: [
      {
        flag: "host",
        arg: "HOST",
        env: "REGISTRY_HOST",
        help: "address to listen on",
        parse: (node, place) => {
          const host = text(node, place, "a host name or IP address");
          if (!HOST.test(host)) throw invalid(node, place, "a host name or IP address");
          return { host: host.replace(/^\[(.*)\]$/, "$1") };
        },
      },
      {
        flag: "port",
        arg: "PORT",
        env: "REGISTRY_PORT",
        help: "port to listen on, 0 for any free port",
        parse: (node, place) => ({ port: integer(0, 65535)(node, place) }),
      },
    ],
  }),
  define<string>({
    key: "http.net",
    type: "`tcp`",
    default: "`tcp`",
    help: "the network to listen on; only `tcp` (Unix sockets are not implemented)",
    parse: (node, place) => oneOf(["tcp"])(node, place),
    apply: () => {},
    show: () => "tcp",
  }),
  define<string | null>({
    key: "http.host",
    type: "URL",
    default: "none",
    help: "the externally visible base URL, for absolute `Location` URLs; none: relative ones",
    parse: (node, place) =>
      node.kind === "scalar" && node.value === "" ? null : httpUrl(false)(node, place),
    apply: (d, v) => d.publicUrl = v,
    show: (c, mask) => c.publicUrl && mask ? maskUrl(c.publicUrl) : c.publicUrl,
  }),
  define<string | null>({
    key: "http.secret",
    type: "text",
    default: "none",
    help: "a shared secret for signing state given to clients; never logged or printed",
    secret: true,
    parse: (node, place) => {
      const value = text(node, place, "a secret (text)", true);
      return value === "" ? null : value;
    },
    apply: (d, v) => d.httpSecret = v,
    show: (c, mask) => c.httpSecret === null ? null : mask ? MASK : c.httpSecret,
  }),
  define<Record<string, string[]>>({
    key: "http.headers",
    type: "map of lists",
    default: "none",
    help: "headers added to every response, e.g. `X-Content-Type-Options: [nosniff]`",
    structured: true,
    parse: headers,
    apply: (d, v) => d.responseHeaders = v,
    show: (c, mask) => mask ? maskHeaders(c.responseHeaders) : c.responseHeaders,
  }),
  define<number>({
    key: "http.draintimeout",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.shutdownGraceMs)}\``,
    help: "on SIGTERM or SIGINT, requests in flight get this long to finish",
    parse: duration(0, 3_600_000),
    apply: (d, v) => d.shutdownGraceMs = v,
    show: (c) => formatDuration(c.shutdownGraceMs),
    aliases: [{
      flag: "shutdown-grace",
      arg: "SECONDS",
      env: "REGISTRY_SHUTDOWN_GRACE",
      help: "time in-flight requests get on SIGTERM",
      parse: seconds(0, 3600),
    }],
  }),
  define<string>({
    key: "http.tls.certificate",
    type: "path",
    default: "none",
    help: "PEM file of the certificate chain to serve HTTPS with (needs `http.tls.key`; " +
      "SIGHUP re-reads both)",
    parse: (node, place) => text(node, place, "a file path"),
    apply: (d, v) => d.tls = { certificate: v, key: d.tls?.key ?? "" },
    show: (c) => c.tls?.certificate ?? null,
  }),
  define<string>({
    key: "http.tls.key",
    type: "path",
    default: "none",
    help: "PEM file of the certificate's private key",
    parse: (node, place) => text(node, place, "a file path"),
    apply: (d, v) => d.tls = { certificate: d.tls?.certificate ?? "", key: v },
    show: (c) => c.tls?.key ?? null,
  }),
  define<string>({
    key: "http.tls.minimumtls",
    type: "`tls1.2`",
    default: "`tls1.2`",
    help: "the oldest TLS version accepted: always TLS 1.2 (Deno's); `tls1.0`/`tls1.1` " +
      "are accepted with a warning, `tls1.3` is refused",
    parse: (node, place, warn) => {
      const value = oneOf(["tls1.0", "tls1.1", "tls1.2", "tls1.3"])(node, place);
      if (value === "tls1.3") {
        throw invalid(node, place, "tls1.2 or lower (Deno.listenTls always accepts TLS 1.2)");
      }
      if (value !== "tls1.2") warn(`${place}: TLS 1.2 is the oldest version accepted`);
      return value;
    },
    apply: () => {},
    show: () => "tls1.2",
  }),
  define<{ host: string; port: number } | null>({
    key: "http.debug.addr",
    type: "host:port",
    default: "none",
    help: "the debug listener (`/metrics`, `/debug/health`); keep it private; none: off",
    parse: (node, place) =>
      node.kind === "scalar" && node.value === "" ? null : address(node, place),
    apply: (d, v) => d.debugAddr = v,
    show: (c) => c.debugAddr && formatAddress(c.debugAddr.host, c.debugAddr.port),
  }),
  define<boolean>({
    key: "http.debug.prometheus.enabled",
    type: "boolean",
    default: "`false`",
    help: "serve Prometheus metrics on the debug listener",
    parse: boolean,
    apply: (d, v) => d.metrics = { ...d.metrics, enabled: v },
    show: (c) => c.metrics.enabled,
  }),
  define<string>({
    key: "http.debug.prometheus.path",
    type: "path",
    default: `\`${DEFAULTS.metrics.path}\``,
    help: "the path of the metrics on the debug listener",
    parse: (node, place) => {
      const path = text(node, place, "an absolute path like /metrics");
      if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@\/-]*$/.test(path)) {
        throw invalid(node, place, "an absolute path like /metrics");
      }
      return path;
    },
    apply: (d, v) => d.metrics = { ...d.metrics, path: v },
    show: (c) => c.metrics.path,
  }),
  define<"error" | "warn" | "info" | "debug">({
    key: "log.level",
    type: "`error`, `warn`, `info` or `debug`",
    default: `\`${DEFAULTS.logLevel}\``,
    help: "the lowest level logged (Distribution's `panic` and `fatal` mean `error`)",
    parse: oneOf(["error", "warn", "info", "debug"], {
      panic: "error",
      fatal: "error",
      trace: "debug",
    }),
    apply: (d, v) => d.logLevel = v,
    show: (c) => c.logLevel,
  }),
  define<"json" | "text">({
    key: "log.formatter",
    type: "`text` or `json`",
    default: `\`${DEFAULTS.logFormat}\``,
    help: "log lines as `key=value` text or JSON (`logstash` is taken as `json`, with a warning)",
    parse: (node, place, warn) => {
      const format = oneOf(["text", "json", "logstash"])(node, place);
      if (format !== "logstash") return format;
      warn(`Taking logstash as json for ${place}: no @version and @timestamp fields`);
      return "json";
    },
    apply: (d, v) => d.logFormat = v,
    show: (c) => c.logFormat,
  }),
  define<boolean>({
    key: "log.accesslog.disabled",
    type: "boolean",
    default: "`false`",
    help: "whether the access log (one line per request, at `info`) is off",
    parse: boolean,
    apply: (d, v) => d.logRequests = !v,
    show: (c) => !c.logRequests,
    aliases: [{
      flag: "log-requests",
      env: "REGISTRY_LOG_REQUESTS",
      help: "log one line per request, the default (the variable: 1 or 0)",
      parse: (node, place) => {
        const value = (node.kind === "scalar" ? node.value ?? "" : "").toLowerCase();
        if (["1", "true", "on", "yes"].includes(value)) return false;
        if (["0", "false", "off", "no", ""].includes(value)) return true;
        throw invalid(node, place, "1 or 0");
      },
    }],
  }),
  define<string>({
    key: "storage.filesystem.rootdirectory",
    type: "path",
    default: `\`${DEFAULTS.dataDir}\``,
    help: "the storage root (relative to the working directory)",
    parse: (node, place) => text(node, place, "a directory path"),
    apply: (d, v) => d.dataDir = v,
    // (none with S3: the two drivers exclude each other)
    show: (c) => c.s3 === null ? c.dataDir : null,
    aliases: [{
      flag: "data",
      arg: "DIR",
      env: "REGISTRY_DATA_DIR",
      help: "storage root",
      parse: (node, place) => text(node, place, "a directory path"),
    }],
  }),
  define<boolean>({
    key: "storage.delete.enabled",
    type: "boolean",
    default: `\`${DEFAULTS.deleteEnabled}\``,
    help: "whether manifests, tags and blobs may be deleted (405 `UNSUPPORTED` when not)",
    parse: boolean,
    apply: (d, v) => d.deleteEnabled = v,
    show: (c) => c.deleteEnabled,
  }),
  define<boolean>({
    key: "storage.maintenance.readonly.enabled",
    type: "boolean",
    default: `\`${DEFAULTS.readOnly}\``,
    help: "read-only mode: every write answers 405 `UNSUPPORTED`; reads work",
    parse: boolean,
    apply: (d, v) => d.readOnly = v,
    show: (c) => c.readOnly,
  }),
  define<boolean>({
    key: "storage.maintenance.uploadpurging.enabled",
    type: "boolean",
    default: `\`${DEFAULTS.uploadPurging}\``,
    help: "whether idle upload sessions are purged",
    parse: boolean,
    apply: (d, v) => d.purgeEnabled = v,
    show: (c) => c.uploadPurging,
  }),
  define<number>({
    key: "storage.maintenance.uploadpurging.age",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.uploadMaxAgeMs)}\``,
    help: "upload sessions idle this long are purged",
    parse: duration(1000, 10 * 365 * 86_400_000),
    apply: (d, v) => d.uploadMaxAgeMs = v,
    show: (c) => formatDuration(c.uploadMaxAgeMs),
    aliases: [{
      flag: "upload-max-age",
      arg: "SECONDS",
      env: "REGISTRY_UPLOAD_MAX_AGE",
      help: "purge upload sessions idle this long",
      parse: seconds(1, 10 * 365 * 86400),
    }],
  }),
  define<number>({
    key: "storage.maintenance.uploadpurging.interval",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.purgeIntervalMs)}\`, or the age if shorter`,
    help: "how often idle upload sessions are looked for",
    parse: duration(1000, 10 * 365 * 86_400_000),
    apply: (d, v) => d.purgeIntervalMs = v,
    show: (c) => formatDuration(c.purgeIntervalMs),
  }),
  define<boolean>({
    key: "storage.maintenance.uploadpurging.dryrun",
    type: "boolean",
    default: "`false`",
    help: "`true` turns purging off (no dry-run report is written)",
    parse: boolean,
    apply: (d, v) => d.purgeDryRun = v,
    show: () => false,
  }),
  define<Config["notifications"]>({
    key: "notifications.endpoints",
    type: "list",
    default: "none",
    help: "where events are sent: name, url, headers, timeout (1s), threshold (10), " +
      "backoff (1s), ignoredmediatypes, ignore.mediatypes, ignore.actions, disabled",
    structured: true,
    parse: parseEndpoints,
    apply: (d, v) => d.notifications = v,
    show: (c, mask) => showEndpoints(c.notifications, mask),
  }),
  define<boolean>({
    key: "health.storagedriver.enabled",
    type: "boolean",
    default: `\`${DEFAULTS.storageHealth.enabled}\``,
    help: "check the storage periodically; `/debug/health` reports it",
    parse: boolean,
    apply: (d, v) => d.storageHealth = { ...d.storageHealth, enabled: v },
    show: (c) => c.storageHealth.enabled,
  }),
  define<number>({
    key: "health.storagedriver.interval",
    type: "duration",
    default: `\`${formatDuration(DEFAULTS.storageHealth.intervalMs)}\``,
    help: "time between two storage checks",
    parse: duration(100, 86_400_000),
    apply: (d, v) => d.storageHealth = { ...d.storageHealth, intervalMs: v },
    show: (c) => formatDuration(c.storageHealth.intervalMs),
  }),
  define<number>({
    key: "health.storagedriver.threshold",
    type: "integer",
    default: `\`${DEFAULTS.storageHealth.threshold}\``,
    help: "failed checks in a row before the storage is reported unhealthy (0 means 1)",
    parse: (node, place) => Math.max(1, integer(0, 1000)(node, place)),
    apply: (d, v) => d.storageHealth = { ...d.storageHealth, threshold: v },
    show: (c) => c.storageHealth.threshold,
  }),
];

/** Every setting, in the order of `--help` and the README. */
export const SETTINGS: readonly Setting[] = [
  ...DISTRIBUTION_SETTINGS,
  ...STORAGE_SETTINGS,
  ...GC_SETTINGS,
  ...AUTH_SETTINGS,
  ...OWN_SETTINGS,
];
