/**
 * The keys of CNCF Distribution's config.yml that this registry does not implement: the ones it
 * refuses (start fails, exit 2) because ignoring them would weaken security, lose data or serve
 * the wrong routes, and the ones it ignores with a warning because they are cosmetic or only
 * matter to Distribution's internals. A key covers everything under it. To implement one, drop
 * its line here and add its settings to settings.ts.
 */

/** A Distribution key this registry does not implement, and why it matters. */
export interface Unsupported {
  /** The dotted key; it covers every key under it. */
  readonly key: string;
  /** Why it is refused or ignored (lower case, no trailing period). */
  readonly why: string;
}

const DRIVER = "only the filesystem and s3 storage drivers are implemented";

/** Keys whose presence stops the registry from starting. */
export const REFUSED: readonly Unsupported[] = [
  {
    key: "validation.manifests.urls",
    why: "manifest URL allow and deny lists are not implemented; ignoring them would accept " +
      "the foreign layer URLs they deny",
  },
  {
    key: "auth.token.signingalgorithms",
    why: "the accepted algorithms are fixed (ES*, RS*, PS*, EdDSA; never none or HS*); " +
      "ignoring a narrower list would accept algorithms it leaves out",
  },
  {
    key: "auth.silly",
    why: "the silly authenticator is a development stub; ignoring it would let anyone push " +
      "and delete",
  },
  {
    key: "http.tls.clientcas",
    why: "client certificates are not offered by Deno.listenTls (Deno 2.9); without them " +
      "any client could connect (verify them in a TLS proxy)",
  },
  {
    key: "http.tls.letsencrypt",
    why: "Let's Encrypt is not implemented; the registry would serve without the expected " +
      "certificate (use certbot and http.tls.certificate)",
  },
  {
    key: "http.prefix",
    why: "serving under a path prefix is not implemented; every route would be wrong",
  },
  { key: "proxy", why: "pull-through caching is not implemented" },
  {
    key: "middleware",
    why: "middleware is not implemented; requests would bypass what it enforces",
  },
  {
    key: "storage.s3.encrypt",
    why: "server-side encryption is not implemented; ignoring it would store objects unencrypted",
  },
  { key: "storage.s3.keyid", why: "server-side encryption with KMS keys is not implemented" },
  {
    key: "storage.s3.sessiontoken",
    why: "temporary credentials are not implemented; use storage.s3.accesskey and secretkey",
  },
  { key: "storage.s3aws", why: DRIVER },
  { key: "storage.azure", why: DRIVER },
  { key: "storage.gcs", why: DRIVER },
  { key: "storage.swift", why: DRIVER },
  { key: "storage.oss", why: DRIVER },
  { key: "storage.inmemory", why: DRIVER },
];

/** Keys that are ignored with one warning at start. */
export const IGNORED: readonly Unsupported[] = [
  {
    key: "auth.token.autoredirect",
    why: "the token realm is never rewritten; set auth.token.realm to the URL clients use",
  },
  { key: "auth.token.autoredirectpath", why: "the token endpoint is registry.auth.token.path" },
  { key: "loglevel", why: "deprecated in Distribution; use log.level" },
  { key: "log.fields", why: "extra log fields are not implemented" },
  { key: "log.hooks", why: "log hooks are not implemented" },
  { key: "log.reportcaller", why: "caller reporting is not implemented" },
  { key: "log.accesslog", why: "only log.accesslog.disabled is implemented" },
  { key: "hooks", why: "log hooks are not implemented" },
  { key: "storage.cache", why: "metadata is always cached in memory" },
  { key: "storage.s3.v4auth", why: "requests are always signed with AWS Signature Version 4" },
  { key: "storage.s3.accelerate", why: "transfer acceleration is not implemented" },
  { key: "storage.s3.usedualstack", why: "dual-stack endpoints are not implemented" },
  { key: "storage.s3.skipverify", why: "TLS certificates of the S3 server are always verified" },
  { key: "storage.s3.storageclass", why: "objects get the bucket's default storage class" },
  { key: "storage.s3.objectacl", why: "objects get the bucket's default ACL (private)" },
  { key: "storage.s3.loglevel", why: "S3 requests are not logged separately" },
  { key: "storage.s3.multipartcopychunksize", why: "copies use storage.s3.chunksize parts" },
  { key: "storage.s3.multipartcopymaxconcurrency", why: "copies run one part at a time" },
  { key: "storage.s3.multipartcopythresholdsize", why: "copies use storage.s3.chunksize" },
  { key: "storage.tag", why: "tag lookups need no concurrency limit on the filesystem" },
  { key: "storage.filesystem.maxthreads", why: "file operations use Deno's own thread pool" },
  {
    key: "http.tls.ciphersuites",
    why: "Deno's TLS (rustls) offers only modern AEAD cipher suites, which cannot be narrowed",
  },
  { key: "http.http2", why: "HTTP/2 is not implemented; HTTP/1.1 is served" },
  { key: "http.h2c", why: "HTTP/2 is not implemented; HTTP/1.1 is served" },
  {
    key: "http.relativeurls",
    why: "Location URLs are relative unless http.host or a trusted proxy gives the origin",
  },
  { key: "reporting", why: "error reporting services are not implemented" },
  { key: "redis", why: "Redis caching is not implemented; metadata is cached in memory" },
  {
    key: "validation",
    why: "manifest URL validation is not implemented; foreign layer URLs are accepted",
  },
  { key: "compatibility", why: "schema1 manifests are not supported at all" },
  { key: "catalog", why: "the catalog page size is not configurable" },
  { key: "policy", why: "repository class policies need token authentication" },
  { key: "notifications.events", why: "event content is not configurable" },
  { key: "health.file", why: "file health checks are not implemented" },
  { key: "health.http", why: "HTTP health checks are not implemented" },
  { key: "health.tcp", why: "TCP health checks are not implemented" },
];

/** The refused or ignored entry covering `key`, if any. */
export function coveredBy(list: readonly Unsupported[], key: string): Unsupported | undefined {
  return list.find((u) => key === u.key || key.startsWith(`${u.key}.`));
}
