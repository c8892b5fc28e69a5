/**
 * The scale-out mode's settings: the S3 driver (Distribution's `storage.s3.*` keys), pulls
 * redirected to presigned URLs or not (Distribution's `storage.redirect.disable`), and the
 * PostgreSQL database that replicas share (`database.url`, ours). `load.ts` checks that they
 * come together (`scaleOutProblem`).
 */

import { define, MASK, type Setting } from "./setting.ts";
import type { Config, S3Config } from "./types.ts";
import { boolean, integer, invalid, text } from "./values.ts";

const MIB = 1024 * 1024;

/** The S3 settings before any is given (filled one key at a time). */
const S3_START: S3Config = {
  accessKey: "",
  secretKey: "",
  region: "",
  regionEndpoint: null,
  bucket: "",
  rootDirectory: "",
  secure: true,
  chunkSize: 10 * MIB,
  uploadMemory: 16 * MIB,
};

type Draft = { s3: S3Config | null };

function setS3(d: Draft, fields: Partial<S3Config>): void {
  d.s3 = { ...(d.s3 ?? S3_START), ...fields };
}

/** A PostgreSQL URL with its password (and any query value) hidden. */
export function maskDatabaseUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/i, `$1:${MASK}@`)
    .replace(/\?.*$/, (query) => query.replace(/=([^&#]*)/g, "=***"));
}

/** The settings of the scale-out mode. */
export const STORAGE_SETTINGS: readonly Setting[] = [
  define<string>({
    key: "storage.s3.accesskey",
    type: "text",
    default: "none",
    help: "the S3 access key id; any `storage.s3` key selects the S3 driver (the scale-out " +
      "mode, with `database.url`)",
    parse: (node, place) => text(node, place, "an access key id"),
    apply: (d, v) => setS3(d, { accessKey: v }),
    show: (c) => c.s3?.accessKey ?? null,
  }),
  define<string>({
    key: "storage.s3.secretkey",
    type: "text",
    default: "none",
    help: "the S3 secret key; never logged or printed",
    secret: true,
    parse: (node, place) => text(node, place, "a secret key (text)", true),
    apply: (d, v) => setS3(d, { secretKey: v }),
    show: (c, mask) => c.s3 === null ? null : mask ? MASK : c.s3.secretKey,
  }),
  define<string>({
    key: "storage.s3.region",
    type: "text",
    default: "none",
    help: "the bucket's region (signs every request; any name the server accepts)",
    parse: (node, place) => text(node, place, "a region name"),
    apply: (d, v) => setS3(d, { region: v }),
    show: (c) => c.s3?.region ?? null,
  }),
  define<string>({
    key: "storage.s3.regionendpoint",
    type: "host[:port] or URL",
    default: "none",
    help: "the S3 server (Ceph RGW, MinIO…): `http://10.0.0.5:7480` or `s3.example.com`; " +
      "none: AWS's endpoint of the region",
    parse: (node, place) => {
      const value = text(node, place, "a host or an http(s) URL");
      if (!/^(?:https?:\/\/)?[A-Za-z0-9.:[\]-]+\/?$/.test(value)) {
        throw invalid(node, place, "a host or an http(s) URL without a path");
      }
      return value.replace(/\/$/, "");
    },
    apply: (d, v) => setS3(d, { regionEndpoint: v }),
    show: (c) => c.s3?.regionEndpoint ?? null,
  }),
  define<string>({
    key: "storage.s3.bucket",
    type: "text",
    default: "none",
    help: "the bucket holding blobs, upload data and state, the token signing key, the " +
      "event queues and the activity journal",
    parse: (node, place) => {
      const value = text(node, place, "a bucket name");
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(value)) {
        throw invalid(node, place, "a bucket name (3 to 63 of a-z, 0-9, . and -)");
      }
      return value;
    },
    apply: (d, v) => setS3(d, { bucket: v }),
    show: (c) => c.s3?.bucket ?? null,
  }),
  define<string>({
    key: "storage.s3.rootdirectory",
    type: "path",
    default: "none",
    help: "a prefix of every object name, to share a bucket; none: the bucket's top",
    parse: (node, place) => {
      const value = text(node, place, "an object name prefix").replace(/^\/+|\/+$/g, "");
      if (
        value !== "" &&
        !/^[A-Za-z0-9_][A-Za-z0-9._:-]*(?:\/[A-Za-z0-9_][A-Za-z0-9._:-]*)*$/.test(value)
      ) {
        throw invalid(node, place, "a prefix of parts made of A-Z, a-z, 0-9, _ . : -");
      }
      return value;
    },
    apply: (d, v) => setS3(d, { rootDirectory: v }),
    show: (c) => c.s3 === null ? null : c.s3.rootDirectory,
  }),
  define<boolean>({
    key: "storage.s3.secure",
    type: "boolean",
    default: "`true`",
    help: "HTTPS to a `regionendpoint` given without a scheme (`false`: HTTP)",
    parse: boolean,
    apply: (d, v) => setS3(d, { secure: v }),
    show: (c) => c.s3?.secure ?? null,
  }),
  define<number>({
    key: "storage.s3.chunksize",
    type: "integer",
    default: "`10485760`",
    help: "bytes of upload data buffered before they are written to the bucket; the part " +
      "size of multipart copies (at least 5 MiB)",
    parse: integer(5 * MIB, 5 * 1024 * MIB),
    apply: (d, v) => setS3(d, { chunkSize: v }),
    show: (c) => c.s3?.chunkSize ?? null,
  }),
  define<number>({
    key: "storage.s3.uploadmemory",
    type: "integer",
    default: "`16777216`",
    help: "bytes of memory for upload data not yet written to the bucket, shared by " +
      "all uploads; past it each upload keeps them in a temporary file (`TMPDIR`), " +
      "unlinked at once (in memory all the same, with a warning, when none can be made)",
    parse: integer(0, 1024 * 1024 * MIB),
    apply: (d, v) => setS3(d, { uploadMemory: v }),
    show: (c) => c.s3?.uploadMemory ?? null,
  }),
  define<boolean>({
    key: "storage.s3.forcepathstyle",
    type: "`true`",
    default: "`true`",
    help: "path-style addressing (`endpoint/bucket/key`), the only style implemented; " +
      "`false` is refused",
    parse: (node, place) => {
      if (!boolean(node, place)) {
        throw invalid(node, place, "true (virtual-host addressing is not implemented)");
      }
      return true;
    },
    apply: (d) => setS3(d, {}),
    show: (c) => c.s3 === null ? null : true,
  }),
  define<boolean>({
    key: "storage.redirect.disable",
    type: "boolean",
    default: "`false`",
    help: "with S3, `true` streams blob GETs through the registry (with `Range`) instead of " +
      "answering 307 to a presigned URL of the bucket",
    parse: boolean,
    apply: (d, v) => d.redirectDisabled = v,
    show: (c) => c.redirectDisabled,
  }),
  define<string | null>({
    key: "database.url",
    type: "URL",
    default: "none",
    help: "the PostgreSQL database of the scale-out mode (`postgres://user:pw@host:5432/db`): " +
      "repository metadata, locks and collection coordination; only with `storage.s3`; " +
      "the password is never printed",
    secret: true,
    parse: (node, place) => {
      const value = text(node, place, "a postgres:// URL", true);
      if (value === "") return null;
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw invalid(node, place, "a postgres:// or postgresql:// URL", true);
      }
      if (!["postgres:", "postgresql:"].includes(url.protocol) || !url.host) {
        throw invalid(node, place, "a postgres:// or postgresql:// URL with a host", true);
      }
      return value;
    },
    apply: (d, v) => d.databaseUrl = v,
    show: (c, mask) =>
      c.databaseUrl === null ? null : mask ? maskDatabaseUrl(c.databaseUrl) : c.databaseUrl,
  }),
];

/**
 * Why the scale-out settings cannot be used together as given (one line), or null. `explicit`
 * holds the keys set by a file, a variable or a flag; `s3Named` whether `storage: s3` (or an
 * empty `storage.s3`) named the driver without keys.
 */
export function scaleOutProblem(
  config: Pick<Config, "s3" | "databaseUrl">,
  explicit: ReadonlySet<string>,
  s3Named: boolean,
): string | null {
  const s3 = config.s3;
  if (s3 === null && !s3Named) {
    if (config.databaseUrl !== null) {
      return "database.url is only used with storage.s3 (the scale-out mode); the " +
        "filesystem mode keeps its metadata in the data root: remove database.url or add " +
        "storage.s3";
    }
    return null;
  }
  if (explicit.has("storage.filesystem.rootdirectory")) {
    return "storage.s3 and storage.filesystem.rootdirectory (or --data, REGISTRY_DATA_DIR) " +
      "are both set: choose one storage driver";
  }
  const missing = (["bucket", "region", "accesskey", "secretkey"] as const).filter((key) =>
    s3 === null ||
    (key === "bucket"
        ? s3.bucket
        : key === "region"
        ? s3.region
        : key === "accesskey"
        ? s3.accessKey
        : s3.secretKey) === ""
  );
  if (missing.length > 0) {
    return `storage.s3 needs ${missing.map((k) => `storage.s3.${k}`).join(", ")}` +
      (missing.some((k) => k.endsWith("key"))
        ? " (credentials from the instance or the environment are not implemented)"
        : "");
  }
  if (config.databaseUrl === null) {
    return "storage.s3 needs database.url (REGISTRY_DATABASE_URL): replicas over one bucket " +
      "share repository metadata, locks and collection coordination through PostgreSQL";
  }
  return null;
}
