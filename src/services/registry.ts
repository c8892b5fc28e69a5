/**
 * Wires the stores and services of one registry. Two modes:
 *
 * - the filesystem (the default): one data root, the data-root lock that makes this process
 *   the only writer, the format check, the cache layer that single ownership makes valid, and
 *   an in-process lock manager;
 * - the scale-out mode (`storage.s3` with `database.url`): any number of replicas over one
 *   bucket and one PostgreSQL database. Blobs, upload data, the token signing key and the
 *   activity journal are objects of the bucket; repository metadata, upload sessions (their
 *   repository, start time and hash state) and the sizes of stored blobs are in the database;
 *   locks are its advisory locks, so they hold across replicas; collections take one more
 *   advisory lock, so one replica sweeps at a time; each replica has its own event queues in
 *   the bucket and adopts those of replicas gone (`replica_events.ts`). Nothing is cached (another replica may change anything at any
 *   time), and nothing is on the replica's own disk.
 */

import { type Config, DEFAULTS } from "../config/mod.ts";
import { type EventSink, NO_EVENTS } from "../events/sink.ts";
import { Collector, type CollectorDeps } from "../gc/collector.ts";
import { Activity } from "../storage/activity.ts";
import { type BlobStore, DriverBlobStore } from "../storage/blobs.ts";
import { CachedBlobStore, CachedMetadataStore } from "../storage/cache.ts";
import type { StorageDriver } from "../storage/driver.ts";
import { FsDriver } from "../storage/drivers/fs.ts";
import { InstrumentedDriver } from "../storage/drivers/instrumented.ts";
import { canonicalRoot, ensureDir } from "../storage/drivers/fs_files.ts";
import { lockRoot, type RootLock } from "../storage/drivers/fs_lock.ts";
import { checkFormat } from "../storage/format.ts";
import { AREAS } from "../storage/keys.ts";
import { KeyedMutex, type LockManager } from "../storage/lock.ts";
import { LocalMetadataStore } from "../storage/metadata/local.ts";
import { PostgresMetadataStore } from "../storage/metadata/postgres.ts";
import { connect, type Sql } from "../storage/postgres/client.ts";
import { PostgresLockManager, tryExclusive } from "../storage/postgres/locks.ts";
import { BlobSizes, SizedBlobStore } from "../storage/postgres/blobs.ts";
import { PostgresStates } from "../storage/postgres/states.ts";
import { PostgresUploadStore } from "../storage/postgres/uploads.ts";
import { S3Driver, type StateStore } from "../storage/drivers/s3.ts";
import {
  adoptQueues,
  holdReplicaId,
  ReplicaEventsDriver,
  type ReplicaHold,
} from "./replica_events.ts";
import type { S3Config } from "../config/mod.ts";
import type { MetadataStore } from "../storage/metadata/metadata.ts";
import { DriverUploadStore, type UploadStore } from "../storage/uploads.ts";
import { immutableMatcher } from "../auth/policy.ts";
import { RepositoryDeleter } from "../maintenance/repositories.ts";
import { BlobService, type LinkedSize } from "./blobs.ts";
import { ListingService } from "./listings.ts";
import { ManifestService } from "./manifests.ts";
import { UploadService } from "./uploads.ts";

/** Every service of a registry, plus the configuration the routes need. */
export interface Services {
  readonly config: Config;
  readonly blobs: BlobService;
  readonly uploads: UploadService;
  readonly manifests: ManifestService;
  readonly listings: ListingService;
  /** Repository deletion (the admin endpoint's), under the same locks as the services. */
  readonly repositories: RepositoryDeleter;
  /** Blob touches and manifest pulls (garbage collection's grace window and retention). */
  readonly activity: Activity;
  /** The garbage collector. */
  readonly gc: Collector;
  /** The driver under the stores (timed and counted when metrics are on: health, metrics). */
  readonly driver: StorageDriver;
  /** The lock manager the services share (advisory locks of the database when scaled out). */
  readonly locks: LockManager;
  /**
   * The scale-out mode's database, or null on the filesystem: `check` fails when it cannot be
   * reached (readiness).
   */
  readonly database: { check(): Promise<void> } | null;
  /** Where the data is, for the start line (`/srv/registry`, `s3://bucket/root`). */
  readonly where: string;
  /**
   * Releases the data root (its lock), or closes the database connections; the services must
   * not be used afterwards.
   */
  close(): void;
}

/** Options of `createServices` beyond the configuration. */
export interface ServiceOptions {
  /** The clock (tests). */
  readonly now?: () => Date;
  /** Force a SHA-256 backend (tests). */
  readonly hashBackend?: "native" | "portable";
  /**
   * A driver replacing the filesystem one over `config.dataDir` (tests: the memory driver, or
   * a driver injecting faults). The caller guarantees this process is its only writer.
   */
  readonly driver?: StorageDriver;
  /** The lock manager of the services (tests: one that tells when a lock is asked for). */
  readonly locks?: LockManager;
  /** Told when the S3 driver could not spill upload bytes to a temporary file (to log it). */
  readonly onSpillFailure?: (error: unknown) => void;
  /**
   * Called at named points of a garbage collection (tests: interleave a request at an exact
   * point of a sweep).
   */
  readonly gcProbe?: (phase: string, subject: string) => Promise<void> | void;
  /** Stores replacing the ones over the driver (tests inject faults this way). */
  readonly stores?: {
    readonly blobs?: BlobStore;
    readonly uploads?: UploadStore;
    readonly meta?: MetadataStore;
  };
  /**
   * Makes the sink the services report events to, over the opened driver (the app: the event
   * dispatcher of `notifications.endpoints`; default: none).
   */
  readonly eventSink?: (driver: StorageDriver) => Promise<EventSink>;
  /**
   * The scale-out mode: a pool on the database replacing one opened on `config.databaseUrl`
   * (tests); the services close it with theirs.
   */
  readonly sql?: Sql;
}

/** The advisory lock a collection holds in the scale-out mode. */
export const COLLECTION_LOCK = "gc:collection";

/** The S3 driver of `storage.s3`, the states of its upload data in `states` when given. */
export function s3Driver(
  s3: S3Config,
  onSpillFailure?: (error: unknown) => void,
  states?: StateStore,
): S3Driver {
  return new S3Driver({
    onSpillFailure,
    ...(states ? { states } : {}),
    accesskey: s3.accessKey,
    secretkey: s3.secretKey,
    region: s3.region,
    ...(s3.regionEndpoint !== null ? { regionendpoint: s3.regionEndpoint } : {}),
    bucket: s3.bucket,
    rootdirectory: s3.rootDirectory,
    secure: s3.secure,
    chunksize: s3.chunkSize,
    uploadmemory: s3.uploadMemory,
    forcepathstyle: true,
  });
}

/** Where `storage.s3` keeps the data, for messages: `s3://bucket/root`. */
export function s3Where(s3: S3Config): string {
  return `s3://${s3.bucket}${s3.rootDirectory === "" ? "" : `/${s3.rootDirectory}`}`;
}

/**
 * Opens the data root (creating it, taking its lock, checking its format) and builds the
 * services over it. Throws StartupError when another process holds the root or its format is
 * newer; OS errors when it is unusable.
 */
export async function createServices(
  config: Config,
  options: ServiceOptions = {},
): Promise<Services> {
  if (config.s3 !== null) return await createScaleOutServices(config, config.s3, options);
  let driver = options.driver;
  let rootLock: RootLock | null = null;
  if (!driver) {
    // Canonical, so that the driver can refuse any symbolic link planted under the root.
    const root = await canonicalRoot(config.dataDir);
    rootLock = await lockRoot(root);
    try {
      for (const area of Object.values(AREAS)) await ensureDir(`${root}/${area}`);
    } catch (error) {
      rootLock.release();
      throw error;
    }
    driver = new FsDriver(root);
  }
  let events: EventSink = NO_EVENTS;
  try {
    await checkFormat(driver, config.dataDir);
    if (options.eventSink) events = await options.eventSink(driver);
  } catch (error) {
    rootLock?.release();
    throw error;
  }
  if (config.metrics.enabled) driver = new InstrumentedDriver(driver); // storage metrics
  // This process is the only writer (the root lock, or the caller's word for an injected
  // driver): the cache layer is valid.
  const blobs = options.stores?.blobs ?? new CachedBlobStore(new DriverBlobStore(driver));
  const meta = options.stores?.meta ??
    new CachedMetadataStore(new LocalMetadataStore(driver));
  const uploads = options.stores?.uploads ?? new DriverUploadStore(driver);
  const locks: LockManager = options.locks ?? new KeyedMutex();
  const clock = options.now;
  const now = clock ? () => clock().getTime() : Date.now;
  // The activity journal is read by the first collection or compaction (see `Activity.load`).
  const activity = new Activity(driver, { now });
  try {
    await activity.countJournal();
  } catch (error) {
    rootLock?.release();
    throw error;
  }
  return {
    ...assemble({ config, options, driver, blobs, meta, uploads, locks, events, activity, now }),
    database: null,
    where: config.dataDir,
    close: () => rootLock?.release(),
  };
}

/**
 * The scale-out mode: the S3 driver (or `options.driver`), the PostgreSQL metadata store and
 * lock manager (two pools: a lock holder keeps a connection for as long as it holds, and must
 * never starve the store's queries), no cache, no root lock, a shared activity journal, and
 * collections one replica at a time.
 */
async function createScaleOutServices(
  config: Config,
  s3: S3Config,
  options: ServiceOptions,
): Promise<Services> {
  const where = s3Where(s3);
  const sql = options.sql ?? connect(config.databaseUrl!, { max: 10 });
  // The states of upload data are rows (an acknowledged PATCH stores one with a query).
  let driver: StorageDriver = options.driver ??
    s3Driver(s3, options.onSpillFailure, new PostgresStates(sql));
  const lockSql = connect(config.databaseUrl!, { max: 20 });
  let hold: ReplicaHold | null = null;
  const close = () => {
    void sql.end({ timeout: 5 }).catch(() => {});
    void (async () => {
      await hold?.release().catch(() => {});
      await lockSql.end({ timeout: 5 });
    })().catch(() => {});
  };
  let meta: MetadataStore;
  let events: EventSink = NO_EVENTS;
  const clock = options.now;
  const now = clock ? () => clock().getTime() : Date.now;
  const activity = new Activity(driver, { now, shared: true });
  const locks: LockManager = options.locks ?? new PostgresLockManager(lockSql);
  try {
    meta = options.stores?.meta ?? await PostgresMetadataStore.open(sql); // migrates
    // Two replicas starting on a new bucket record the format once.
    await locks.run("startup:format", () => checkFormat(driver, where));
    if (options.eventSink && config.notifications.length > 0) {
      // Event queues of its own (replica_events.ts), with those of gone replicas adopted.
      hold = await holdReplicaId(lockSql);
      await adoptQueues(driver, lockSql, hold.id);
      events = await options.eventSink(new ReplicaEventsDriver(driver, hold.id));
    }
    await activity.countJournal();
  } catch (error) {
    close();
    throw error;
  }
  if (config.metrics.enabled) driver = new InstrumentedDriver(driver);
  // Blob sizes are rows of the database (written around the bytes, see postgres/blobs.ts):
  // a blob HEAD is one query, with no request to the bucket. The one-query look-up joins the
  // links of the database's metadata, so it is used only when both stores are these.
  const sizes = new BlobSizes(sql);
  const blobs = options.stores?.blobs ?? new SizedBlobStore(new DriverBlobStore(driver), sizes);
  const linkedSize: LinkedSize | undefined =
    options.stores?.blobs === undefined && options.stores?.meta === undefined
      ? (name, digest) => sizes.linked(name, digest)
      : undefined;
  // Sessions are rows (their data in the bucket): a PATCH saves its state with one query.
  const uploads = options.stores?.uploads ?? new PostgresUploadStore(sql, driver);
  const parts = { config, options, driver, blobs, meta, uploads, locks, events, activity, now };
  return {
    ...assemble({ ...parts, linkedSize }, {
      exclusive: (fn) => tryExclusive(lockSql, COLLECTION_LOCK, fn),
    }),
    database: {
      async check() {
        await sql`select 1`;
      },
    },
    where,
    close,
  };
}

/** The stores, locks and trackers of one registry, in either mode. */
interface Parts {
  readonly config: Config;
  readonly options: ServiceOptions;
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly meta: MetadataStore;
  readonly uploads: UploadStore;
  readonly locks: LockManager;
  readonly events: EventSink;
  readonly activity: Activity;
  readonly now: () => number;
  /** The blob service's one-step size of a linked blob, when the stores have one. */
  readonly linkedSize?: LinkedSize;
}

/** The services over the parts (both modes build them alike). */
function assemble(
  parts: Parts,
  gc: Pick<CollectorDeps, "exclusive"> = {},
): Omit<Services, "database" | "where" | "close"> {
  const { config, options, driver, blobs, meta, uploads, locks, events, activity, now } = parts;
  const uploadService = new UploadService({ uploads, blobs, meta, locks, events, activity }, {
    maxAgeMs: config.uploadMaxAgeMs,
    ...(options.now ? { now: options.now } : {}),
    ...(options.hashBackend ? { backend: options.hashBackend } : {}),
  });
  return {
    config,
    driver,
    locks,
    blobs: new BlobService({
      blobs,
      meta,
      locks,
      events,
      activity,
      linkedSize: parts.linkedSize,
    }),
    uploads: uploadService,
    manifests: new ManifestService({ blobs, meta, locks, events, activity }, {
      immutableTag: immutableMatcher(config.immutableTags ?? []),
    }),
    listings: new ListingService({ meta }),
    repositories: new RepositoryDeleter({ meta, locks, events }),
    activity,
    gc: new Collector({
      driver,
      blobs,
      meta,
      locks,
      uploads: uploadService,
      activity,
      config: config.gc ?? DEFAULTS.gc,
      now,
      ...gc,
      ...(options.gcProbe ? { probe: options.gcProbe } : {}),
    }),
  };
}
