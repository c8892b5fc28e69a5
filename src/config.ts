/**
 * Configuration from flags and environment (flags win). No other module reads the
 * environment or the command line.
 */

import { resolve } from "node:path";
import { parseArgs } from "node:util";

/** The registry's settings, frozen. */
export interface Config {
  readonly host: string;
  readonly port: number;
  /** Absolute path of the storage root. */
  readonly dataDir: string;
  /** Largest accepted manifest body in bytes (413 above it). */
  readonly maxManifestBytes: number;
  /** Upload sessions untouched for this long are purged (milliseconds). */
  readonly uploadMaxAgeMs: number;
  /** How often stale sessions are looked for (milliseconds). */
  readonly purgeIntervalMs: number;
  /** Whether to write the access log (one line per request, at `info`). */
  readonly logRequests: boolean;
  /** The lowest level logged. */
  readonly logLevel: LogLevel;
  /** How log lines are written: JSON lines or `key=value` text. */
  readonly logFormat: "json" | "text";
  /** Largest accepted request head (all header lines) in bytes (431 above it). */
  readonly maxHeaderBytes: number;
  /** A request body that sends nothing for this long is cut (408), in milliseconds. */
  readonly bodyIdleTimeoutMs: number;
  /** On SIGTERM/SIGINT, in-flight requests get this long to finish (milliseconds). */
  readonly shutdownGraceMs: number;
  /** The HTTP server: ours on `Deno.listen` (`builtin`) or `Deno.serve` (`deno`). */
  readonly server: "builtin" | "deno";
  /**
   * A mount without `from` links the blob from any repository holding it (201) when on;
   * off, it opens a normal upload session (202).
   */
  readonly automaticMount: boolean;
  /** Whether DELETE of manifests, tags and blobs is allowed (405 UNSUPPORTED when not). */
  readonly deleteEnabled: boolean;
  /** Read-only mode: every write answers 405 UNSUPPORTED; reads work. */
  readonly readOnly: boolean;
  /** Whether stale upload sessions are purged (`uploadMaxAgeMs`, `purgeIntervalMs`). */
  readonly uploadPurging: boolean;
  /** Headers added to every response (`http.headers`). */
  readonly responseHeaders: Readonly<Record<string, readonly string[]>>;
  /** The externally visible base URL (`http.host`), for absolute URLs; null: relative ones. */
  readonly publicUrl: string | null;
  /** A shared secret (`http.secret`); never logged. */
  readonly httpSecret: string | null;
  /**
   * Addresses (IPs or CIDRs) of reverse proxies whose `X-Forwarded-For` and
   * `X-Forwarded-Proto` are believed.
   */
  readonly trustedProxies: readonly string[];
  /** The debug listener (`http.debug.addr`: `/metrics`, `/debug/health`), or null. */
  readonly debugAddr: { readonly host: string; readonly port: number } | null;
  /** Whether the debug listener serves Prometheus metrics, and where. */
  readonly metrics: { readonly enabled: boolean; readonly path: string };
  /** The storage health check (`health.storagedriver`). */
  readonly storageHealth: {
    readonly enabled: boolean;
    readonly intervalMs: number;
    readonly threshold: number;
  };
  /** `/readyz` fails when the data root's file system has less free space than this. */
  readonly readyMinFreeBytes: number;
  /** Where events go (`notifications.endpoints`). */
  readonly notifications: readonly NotificationEndpoint[];
}

/** Log levels, most severe first. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** One receiver of events, as Distribution's `notifications.endpoints` entries describe it. */
export interface NotificationEndpoint {
  readonly name: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  /** One delivery attempt may take this long. */
  readonly timeoutMs: number;
  /** Failures in a row before the endpoint is considered down (backing off). */
  readonly threshold: number;
  /** Wait between attempts once the endpoint is down. */
  readonly backoffMs: number;
  /** Events whose target has one of these media types are not sent. */
  readonly ignoredMediaTypes: readonly string[];
  /** Events with one of these actions (`push`, `pull`, `delete`) are not sent. */
  readonly ignoredActions: readonly string[];
  readonly disabled: boolean;
}

/** Defaults, used by tests as a base. */
export const DEFAULTS = {
  host: "127.0.0.1",
  port: 5000,
  dataDir: "./data",
  maxManifestBytes: 4 * 1024 * 1024,
  uploadMaxAgeMs: 24 * 60 * 60 * 1000,
  purgeIntervalMs: 60 * 60 * 1000,
  logRequests: false,
  maxHeaderBytes: 32 * 1024,
  bodyIdleTimeoutMs: 60 * 1000,
  shutdownGraceMs: 30 * 1000,
  server: "builtin",
  automaticMount: true,
  logLevel: "info",
  logFormat: "text",
  deleteEnabled: true,
  readOnly: false,
  uploadPurging: true,
  responseHeaders: {},
  publicUrl: null,
  httpSecret: null,
  trustedProxies: [],
  debugAddr: null,
  metrics: { enabled: false, path: "/metrics" },
  storageHealth: { enabled: false, intervalMs: 10_000, threshold: 3 },
  readyMinFreeBytes: 64 * 1024 * 1024,
  notifications: [],
} as const satisfies Omit<Config, "dataDir"> & { dataDir: string };

/** Text printed by `--help`. */
export const USAGE = `Usage: deno task start [options]

Options (environment variable in brackets; flags win):
  --host HOST                 address to listen on [REGISTRY_HOST] (default ${DEFAULTS.host})
  --port PORT                 port to listen on, 0 for any free port [REGISTRY_PORT] (default ${DEFAULTS.port})
  --data DIR                  storage root [REGISTRY_DATA_DIR] (default ${DEFAULTS.dataDir})
  --max-manifest-bytes N      largest manifest accepted [REGISTRY_MAX_MANIFEST_BYTES] (default ${DEFAULTS.maxManifestBytes})
  --upload-max-age SECONDS    purge upload sessions idle this long [REGISTRY_UPLOAD_MAX_AGE] (default ${
  DEFAULTS.uploadMaxAgeMs / 1000
})
  --max-header-bytes N        largest request head accepted [REGISTRY_MAX_HEADER_BYTES] (default ${DEFAULTS.maxHeaderBytes})
  --body-idle-timeout SECONDS cut a request body idle this long [REGISTRY_BODY_IDLE_TIMEOUT] (default ${
  DEFAULTS.bodyIdleTimeoutMs / 1000
})
  --shutdown-grace SECONDS    time in-flight requests get on SIGTERM [REGISTRY_SHUTDOWN_GRACE] (default ${
  DEFAULTS.shutdownGraceMs / 1000
})
  --automatic-mount on|off    a mount without "from" links the blob from any repository that
                              holds it [REGISTRY_AUTOMATIC_MOUNT] (default on)
  --log-requests              log one line per request [REGISTRY_LOG_REQUESTS=1]
  --server builtin|deno       HTTP server: the registry's own HTTP/1.1 server, or Deno.serve
                              (slow on chunked uploads in Deno 2.9) [REGISTRY_SERVER] (default builtin)
  --help                      print this text
`;

/** Thrown for a bad flag or variable; main prints it with the usage. */
export class ConfigError extends Error {}

function integer(value: string, what: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(`Invalid ${what} ${JSON.stringify(value)}: expected ${min}..${max}`);
  }
  return Number(value);
}

/**
 * Builds the configuration from command-line arguments and environment variables.
 * Returns "help" when `--help` was given; throws ConfigError on a bad value.
 */
export function loadConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Config | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: {
        host: { type: "string" },
        port: { type: "string" },
        data: { type: "string" },
        "max-manifest-bytes": { type: "string" },
        "upload-max-age": { type: "string" },
        "max-header-bytes": { type: "string" },
        "body-idle-timeout": { type: "string" },
        "shutdown-grace": { type: "string" },
        "log-requests": { type: "boolean" },
        server: { type: "string" },
        "automatic-mount": { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (parsed.help) return "help";
  const pick = (flag: string | undefined, name: string) => flag ?? env[name] ?? undefined;
  const port = pick(parsed.port, "REGISTRY_PORT");
  const manifest = pick(parsed["max-manifest-bytes"], "REGISTRY_MAX_MANIFEST_BYTES");
  const age = pick(parsed["upload-max-age"], "REGISTRY_UPLOAD_MAX_AGE");
  const server = pick(parsed.server, "REGISTRY_SERVER") ?? DEFAULTS.server;
  if (server !== "builtin" && server !== "deno") {
    throw new ConfigError(`Invalid server ${JSON.stringify(server)}: expected builtin or deno`);
  }
  const mountSetting = pick(parsed["automatic-mount"], "REGISTRY_AUTOMATIC_MOUNT") ?? "on";
  if (!["on", "off", "true", "false"].includes(mountSetting)) {
    throw new ConfigError(
      `Invalid automatic mount ${JSON.stringify(mountSetting)}: expected on or off`,
    );
  }
  const uploadMaxAgeMs = age === undefined
    ? DEFAULTS.uploadMaxAgeMs
    : integer(age, "upload max age", 1, 10 * 365 * 86400) * 1000;
  return Object.freeze({
    ...DEFAULTS,
    host: pick(parsed.host, "REGISTRY_HOST") ?? DEFAULTS.host,
    port: port === undefined ? DEFAULTS.port : integer(port, "port", 0, 65535),
    dataDir: resolve(pick(parsed.data, "REGISTRY_DATA_DIR") ?? DEFAULTS.dataDir),
    maxManifestBytes: manifest === undefined
      ? DEFAULTS.maxManifestBytes
      : integer(manifest, "max manifest bytes", 1, 1024 * 1024 * 1024),
    uploadMaxAgeMs,
    purgeIntervalMs: Math.min(DEFAULTS.purgeIntervalMs, uploadMaxAgeMs),
    logRequests: parsed["log-requests"] === true || env.REGISTRY_LOG_REQUESTS === "1",
    server,
    automaticMount: mountSetting === "on" || mountSetting === "true",
    ...limits(parsed, env),
  });
}

/** The request limits: header cap, body idle timeout and shutdown grace. */
function limits(
  parsed: Record<string, string | boolean | undefined>,
  env: Readonly<Record<string, string | undefined>>,
): Pick<Config, "maxHeaderBytes" | "bodyIdleTimeoutMs" | "shutdownGraceMs"> {
  const value = (flag: string, name: string) => {
    const given = parsed[flag];
    return typeof given === "string" ? given : env[name];
  };
  const header = value("max-header-bytes", "REGISTRY_MAX_HEADER_BYTES");
  const idle = value("body-idle-timeout", "REGISTRY_BODY_IDLE_TIMEOUT");
  const grace = value("shutdown-grace", "REGISTRY_SHUTDOWN_GRACE");
  return {
    // Deno.serve refuses request heads above about 64 KiB before the registry sees them.
    maxHeaderBytes: header === undefined
      ? DEFAULTS.maxHeaderBytes
      : integer(header, "max header bytes", 1024, 60 * 1024),
    bodyIdleTimeoutMs: idle === undefined
      ? DEFAULTS.bodyIdleTimeoutMs
      : integer(idle, "body idle timeout", 1, 24 * 3600) * 1000,
    shutdownGraceMs: grace === undefined
      ? DEFAULTS.shutdownGraceMs
      : integer(grace, "shutdown grace", 0, 3600) * 1000,
  };
}
