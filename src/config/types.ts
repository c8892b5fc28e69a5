/**
 * The configuration's shape: the `Config` every module reads, its defaults, and the error a
 * bad setting raises. The settings table (settings.ts) says where each field comes from.
 */

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
  /**
   * The most connections the built-in server serves at once (at the limit one idle for 5 s is
   * closed for a new one, else the new one waits); 0 for a quarter of the open-file limit,
   * 64 to 1024 (`connectionLimit` in src/serve.ts).
   */
  readonly maxConnections: number;
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
  /** HTTPS: PEM files of the certificate chain and its key (`http.tls.*`); null: plain HTTP. */
  readonly tls: { readonly certificate: string; readonly key: string } | null;
  /** CORS for browser UIs (`registry.http.cors.*`); no origins: off. */
  readonly cors: CorsConfig;
  /** Access control: htpasswd authentication and the policies (off without a file). */
  readonly auth: AuthConfig;
  /** Tag patterns (`*` any characters) whose tags cannot be moved to another digest. */
  readonly immutableTags: readonly string[];
  /**
   * With access control off, whether the admin endpoints (`/admin/…`) answer clients that are
   * not on this machine (`registry.adminendpoints.allowremote`); off: loopback clients only.
   */
  readonly adminAllowRemote: boolean;
  /** Garbage collection (`storage.gc.*`). */
  readonly gc: GcConfig;
  /**
   * The S3 driver (`storage.s3.*`); null: the filesystem driver over `dataDir`. Set, the
   * registry runs in the scale-out mode, with `databaseUrl`.
   */
  readonly s3: S3Config | null;
  /** The PostgreSQL database of the scale-out mode (`database.url`); a secret (password). */
  readonly databaseUrl: string | null;
  /** Whether blob GETs are streamed rather than redirected (`storage.redirect.disable`). */
  readonly redirectDisabled: boolean;
}

/** The S3 driver's settings (`storage.s3.*`, Distribution's keys). */
export interface S3Config {
  readonly accessKey: string;
  /** Never logged or printed. */
  readonly secretKey: string;
  readonly region: string;
  /** The server, a host or a URL; null: AWS's endpoint of the region. */
  readonly regionEndpoint: string | null;
  readonly bucket: string;
  /** A prefix of every object name ("" for none). */
  readonly rootDirectory: string;
  /** HTTPS to an endpoint given without a scheme. */
  readonly secure: boolean;
  /** Bytes buffered per write to the bucket (and the multipart part size). */
  readonly chunkSize: number;
  /** Memory for upload bytes not yet in the bucket, shared by all uploads; past it, files. */
  readonly uploadMemory: number;
}

/** Garbage collection's settings (`storage.gc.*`). */
export interface GcConfig {
  /** Time between scheduled collections in milliseconds; 0: no schedule. */
  readonly intervalMs: number;
  /** Nothing touched more recently than this (milliseconds) is deleted. */
  readonly graceMs: number;
  /** Whether referrers whose subject is gone are deleted (kept otherwise). */
  readonly deleteOrphanReferrers: boolean;
  /** Retention rules; the first whose glob matches a repository applies to it. */
  readonly retention: readonly RetentionRule[];
}

/** One retention rule (`storage.gc.retention` entry). */
export interface RetentionRule {
  /** Repository globs: `*` within one path component, `**` across components. */
  readonly repositories: readonly string[];
  /** Keep the N most recently pushed tags; null: no count rule. */
  readonly keepTags: number | null;
  /** Keep tags matching these patterns (`*` any characters). */
  readonly keepTagPatterns: readonly string[];
  /** Keep tags and manifests pulled within this many milliseconds; null: no pull rule. */
  readonly keepPulledWithinMs: number | null;
  /** Delete untagged manifests pushed longer ago than this (milliseconds); null: keep them. */
  readonly untaggedAfterMs: number | null;
}

/** Access control's settings (`auth.htpasswd.*`, `registry.auth.*`). */
export interface AuthConfig {
  /** The realm of the `Basic` challenge (`auth.htpasswd.realm`). */
  readonly realm: string;
  /** The htpasswd file (`auth.htpasswd.path`); null: authentication is off. */
  readonly htpasswdPath: string | null;
  /** Who may do what where; the first that allows wins, default deny. */
  readonly policies: readonly AccessPolicy[];
  /** Group name → its users. */
  readonly groups: Readonly<Record<string, readonly string[]>>;
  /** Users allowed everything. */
  readonly admins: readonly string[];
  /** The first failed attempt's delay for a client address (doubling, capped at 10×; 0: off). */
  readonly failDelayMs: number;
  /** Token authentication (`auth.token.*`, `registry.auth.token.*`). */
  readonly token: TokenAuthConfig;
}

/**
 * Token authentication: the built-in issuer is on when `builtin` is set, or `realm` is given
 * (naming our own token endpoint) without external keys; an external issuer is trusted when
 * `rootCertBundle` or `jwks` is set (then `realm` is its token server). Registry routes then
 * need a `Bearer` token of a trusted issuer.
 */
export interface TokenAuthConfig {
  /** The token endpoint's absolute URL (`auth.token.realm`); null: derived from the request. */
  readonly realm: string | null;
  /** The audience of the tokens (`auth.token.service`). */
  readonly service: string;
  /** The issuer of the tokens (`auth.token.issuer`). */
  readonly issuer: string;
  /** Whether the registry issues tokens itself (`registry.auth.token.builtin`). */
  readonly builtin: boolean;
  /** The token endpoint's path (`registry.auth.token.path`). */
  readonly path: string;
  /** How long an access token lasts (`registry.auth.token.expiration`, at least 60 s). */
  readonly expirationMs: number;
  /** A PEM (PKCS #8) ES256 key; null: a key generated in the data root. */
  readonly signingKey: string | null;
  /** PEM certificates of an external issuer (`auth.token.rootcertbundle`); null: none. */
  readonly rootCertBundle: string | null;
  /** A JSON Web Key Set file of an external issuer (`auth.token.jwks`); null: none. */
  readonly jwks: string | null;
}

/** One access policy (`registry.auth.policies` entry). */
export interface AccessPolicy {
  /** Repository globs: `*` within one path component, `**` across components. */
  readonly repositories: readonly string[];
  readonly users: readonly string[];
  readonly groups: readonly string[];
  /** Whether requests without credentials (and so every user) get these actions. */
  readonly anonymous: boolean;
  readonly actions: readonly ("pull" | "push" | "delete")[];
}

/** CORS settings (`registry.http.cors.*`). */
export interface CorsConfig {
  /** Origins allowed (`https://ui.example.com`, or `*` for any); empty: CORS is off. */
  readonly origins: readonly string[];
  /** Methods a preflight allows. */
  readonly methods: readonly string[];
  /** Request headers a preflight allows. */
  readonly headers: readonly string[];
  /** How long a browser may cache a preflight's answer, in seconds. */
  readonly maxAgeS: number;
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
  logRequests: true,
  maxHeaderBytes: 32 * 1024,
  bodyIdleTimeoutMs: 60 * 1000,
  maxConnections: 0,
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
  tls: null,
  cors: {
    origins: [],
    methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    headers: [
      "Authorization",
      "Content-Type",
      "Content-Range",
      "Range",
      "Docker-Content-Digest",
      "X-Registry-UI",
    ],
    maxAgeS: 600,
  },
  auth: {
    realm: "Registry Realm",
    htpasswdPath: null,
    policies: [],
    groups: {},
    admins: [],
    failDelayMs: 1000,
    token: {
      realm: null,
      service: "registry",
      issuer: "registry-token-issuer",
      builtin: false,
      path: "/token",
      expirationMs: 5 * 60_000,
      signingKey: null,
      rootCertBundle: null,
      jwks: null,
    },
  },
  immutableTags: [],
  adminAllowRemote: false,
  gc: {
    intervalMs: 60 * 60 * 1000,
    graceMs: 60 * 60 * 1000,
    deleteOrphanReferrers: false,
    retention: [],
  },
  s3: null,
  databaseUrl: null,
  redirectDisabled: false,
} as const satisfies Omit<Config, "dataDir"> & { dataDir: string };

/** A bad flag, variable or file key: one line naming where the value came from. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
